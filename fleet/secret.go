package fleet

import (
	"slices"
	"strings"
	"time"
	"unique"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/watch"
)

// Secret is one vcluster certificate Secret reduced to what the service serves: the dates Fleet
// judges and, per certificate, its x509_cert_* label set already rendered. It holds no
// certificate or key bytes: the informer hands the Secret to Parse as it arrives and keeps only
// this (measured at 10,000 Secrets: the whole Secrets were most of the process's memory).
//
// A label set is stored in parts: what every vcluster's PKI shares (subject and issuer fields,
// the key name) is interned with unique.Make, so 10,000 Secrets of 30 certificates keep each of
// those strings once; the serial number and the Secret's name are the Secret's own.
type Secret struct {
	key   string // "<namespace>/<name>"
	facts pki.FleetFacts
	// secretLabels is `secret_name="…",secret_namespace="…",`; sourceName is the x509_source_up
	// label value, "<namespace>/<name>".
	secretLabels string
	certs        []certSeries
}

// certSeries is one certificate: its label set is pre + key + the Secret's secretLabels +
// serial + post, all rendered `name="value",`.
type certSeries struct {
	pre, key, post      unique.Handle[string]
	serial              string
	notBefore, notAfter int64 // Unix seconds: certificates carry whole seconds
}

// Parse reduces a certificate Secret to what the service keeps. It is pure, and it is where the
// certificates are parsed, once per change of the Secret.
func Parse(s *pki.Secret) *Secret {
	out := &Secret{key: s.Namespace + "/" + s.Name, facts: pki.ReadFleet(s)}
	out.secretLabels = `secret_name="` + escapeLabel(watch.LabelValue(s.Name)) + `",secret_namespace="` + escapeLabel(watch.LabelValue(s.Namespace)) + `",`
	// The statuses in this report are never read (they depend on the scrape's time); the zero
	// time and renew-before are only there to fill them. The report is dropped here: it holds
	// the Secret's bytes.
	r := pki.Inspect(pki.Store{}, pki.FromSecret(s), time.Time{}, 0)
	for _, f := range r.Files {
		if f.Cert == nil {
			continue
		}
		names, values := watch.SecretCertLabels(s.Namespace, s.Name, pki.SecretKey(f.Path), f.Cert)
		out.certs = append(out.certs, splitLabels(names, values, f.Cert))
	}
	return out
}

// labelOrder is the order the text exposition writes the exporter's labels in: sorted by name,
// as client_golang sorts a metric's label pairs.
var labelOrder = func() []int {
	names, _ := watch.SecretCertLabels("", "", "", &pki.CertInfo{})
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(names[a], names[b]) })
	return idx
}()

// splitLabels renders a certificate's label pairs in exposition order, split around the four
// that are the Secret's or the certificate's own (secret_key, secret_name, secret_namespace,
// serial_number: adjacent once sorted).
func splitLabels(names, values []string, c *pki.CertInfo) certSeries {
	var pre, post strings.Builder
	cs := certSeries{notBefore: c.NotBefore.Unix(), notAfter: c.NotAfter.Unix()}
	b := &pre
	for _, i := range labelOrder {
		pair := names[i] + `="` + escapeLabel(values[i]) + `",`
		switch names[i] {
		case "secret_key":
			cs.key = unique.Make(pair)
		case "secret_name", "secret_namespace":
		case "serial_number":
			cs.serial = pair
			b = &post
		default:
			b.WriteString(pair)
		}
	}
	cs.pre, cs.post = unique.Make(pre.String()), unique.Make(post.String())
	return cs
}

// escapeLabel escapes a label value as the text exposition format does.
func escapeLabel(v string) string {
	if !strings.ContainsAny(v, "\\\"\n") {
		return v
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}
