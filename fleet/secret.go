package fleet

import (
	"crypto/x509"
	"encoding/hex"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"unique"

	"github.com/certguard/certguard/exporter"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/restart"
)

// Secret is one vcluster certificate Secret reduced to what the service serves: the dates Judge
// judges and, per certificate, its x509_cert_* label set already rendered. It holds no
// certificate or key bytes: the informer hands the Secret to Parse as it arrives and keeps only
// this (measured at 10,000 Secrets: the whole Secrets were most of the process's memory).
//
// A label set is stored in parts: what every vcluster's PKI shares (subject and issuer fields,
// the key name) is interned with unique.Make, so 10,000 Secrets of 30 certificates keep each of
// those strings once; the serial number and the Secret's name are the Secret's own.
type Secret struct {
	key             string // "<namespace>/<name>"
	namespace, name string
	facts           Facts
	// record is the restart record and verdict; data fingerprints the Secret's data (a verdict
	// holds while it is unchanged); uid spreads its due time.
	record    restart.Record
	data, uid string
	// caFingerprint and caKeyID identify a certificate Secret's ca.crt (SHA-256 of its DER, and
	// its subject key ID in hex), to attribute kubeconfig Secrets to it.
	caFingerprint, caKeyID string
	// kubeconfig is set for a kubeconfig Secret instead of a certificate Secret.
	kubeconfig *kubeconfigSecret
	// secretLabels is `secret_name="…",secret_namespace="…",`; sourceName is the x509_source_up
	// label value, "<namespace>/<name>".
	secretLabels string
	certs        []certSeries
	// serials are the certificates' serial numbers (escaped) end to end, which each certSeries
	// indexes: one string a Secret rather than one a certificate. A scrape reads them all
	// four times; 300,000 strings spread over the heap at 10,000 vclusters made half of its
	// CPU cache misses.
	serials string
}

// certSeries is one certificate: its label set is labels.pre + labels.key + the Secret's
// secretLabels + `serial_number="` + its serial + `",` + labels.post, rendered `name="value",`.
type certSeries struct {
	labels              unique.Handle[labelParts]
	serialAt, serialEnd uint32 // its serial is the Secret's serials[serialAt:serialEnd]
	notBefore, notAfter int64  // Unix seconds: certificates carry whole seconds
}

// serial is c's serial number, escaped.
func (s *Secret) serial(c *certSeries) string { return s.serials[c.serialAt:c.serialEnd] }

// seriesBuilder collects a Secret's certificate series while it is parsed; done stores them.
type seriesBuilder struct {
	certs   []certSeries
	serials []byte
}

// add adds the series of a certificate read from the Secret's key.
func (b *seriesBuilder) add(s *Secret, key string, c *x509.Certificate) {
	info := &pki.CertInfo{Serial: c.SerialNumber.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter, SubjectName: c.Subject, IssuerName: c.Issuer}
	names, values := exporter.SecretCertLabels(s.namespace, s.name, key, info)
	cs, serial := splitLabels(names, values, info)
	cs.serialAt = uint32(len(b.serials))
	b.serials = append(b.serials, serial...)
	cs.serialEnd = uint32(len(b.serials))
	b.certs = append(b.certs, cs)
}

func (b *seriesBuilder) done(s *Secret) { s.certs, s.serials = b.certs, string(b.serials) }

// Parse picks the Secrets the service follows, vcluster certificate Secrets (pki.IsCertSecret)
// and kubeconfig Secrets (parseKubeconfig), and reduces each to what the service keeps; nil for
// any other Secret. It is pure, and it is where the certificates are parsed, once per change of
// the Secret.
func Parse(s *pki.Secret) *Secret {
	if pki.IsCertSecret(s.Name, s.Labels, func(k string) bool { _, ok := s.Data[k]; return ok }) {
		return parseCertSecret(s)
	}
	return parseKubeconfig(s)
}

func newSecret(s *pki.Secret) *Secret {
	return &Secret{key: s.Namespace + "/" + s.Name, namespace: s.Namespace, name: s.Name,
		secretLabels: `secret_name="` + escapeLabel(exporter.LabelValue(s.Name)) + `",secret_namespace="` + escapeLabel(exporter.LabelValue(s.Namespace)) + `",`}
}

func parseCertSecret(s *pki.Secret) *Secret {
	out := newSecret(s)
	// One parser for the whole Secret: its facts and its series read the same certificates, and
	// four of its five kubeconfigs embed a certificate it also holds as a key.
	var parser pki.CertParser
	out.facts = readFacts(s, parser.ParseCertPEM)
	out.record, out.data, out.uid = restart.ReadRecord(s.Annotations), dataFingerprint(s.Data), s.UID
	// The certificates pki.Inspect would show for the Secret alone, in its order (by path),
	// without what Inspect adds to them and the series do not show (signature and key checks:
	// 95% of its cost, measured 1.06 ms a Secret).
	paths := make([]string, 0, len(s.Data))
	for k, v := range s.Data {
		if f := pki.FormatOf(pki.FilePath(k)); len(v) > 0 && (f == pki.FormatCert || f == pki.FormatKubeconfig) {
			paths = append(paths, pki.FilePath(k)) // an empty key is corrupt for Inspect: no certificate
		}
	}
	series := seriesBuilder{certs: make([]certSeries, 0, len(paths))}
	slices.Sort(paths)
	for _, p := range paths {
		var c *x509.Certificate
		data := s.Data[pki.SecretKey(p)]
		switch pki.FormatOf(p) {
		case pki.FormatCert:
			c, _ = parser.ParseCertPEM(data)
		case pki.FormatKubeconfig:
			if kc, err := parser.ParseKubeconfigCerts(data); err == nil {
				c = kc.Users[0].Cert
			}
		}
		if c == nil {
			continue // not a certificate, or corrupt: no series, as in the sidecar
		}
		if p == "ca.crt" {
			out.caFingerprint, out.caKeyID = pki.Fingerprint(c), hex.EncodeToString(c.SubjectKeyId)
		}
		series.add(out, pki.SecretKey(p), c)
	}
	series.done(out)
	return out
}

// labelParts are the parts of a certificate's label set that many vclusters share: the pairs
// before secret_key, secret_key itself, and those after serial_number (without the last comma).
type labelParts struct{ pre, key, post string }

// labelOrder is the order the text exposition writes the exporter's labels in: sorted by name,
// as client_golang sorts a metric's label pairs.
var labelOrder = func() []int {
	names, _ := exporter.SecretCertLabels("", "", "", &pki.CertInfo{})
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(names[a], names[b]) })
	return idx
}()

// splitLabels renders a certificate's label pairs in exposition order, split around the four
// that are the Secret's or the certificate's own (secret_key, secret_name, secret_namespace,
// serial_number: adjacent once sorted); serial is the serial number's, escaped.
func splitLabels(names, values []string, c *pki.CertInfo) (cs certSeries, serial string) {
	var pre, post strings.Builder
	var key string
	cs = certSeries{notBefore: c.NotBefore.Unix(), notAfter: c.NotAfter.Unix()}
	// Each part sized once (escaping may add a few bytes): the parts are kept, interned.
	size, b := 0, &pre
	for _, i := range labelOrder {
		switch names[i] {
		case "secret_key", "secret_name", "secret_namespace":
		case "serial_number":
			pre.Grow(size)
			size = 0
		default:
			size += len(names[i]) + len(values[i]) + 4
		}
	}
	post.Grow(size)
	for _, i := range labelOrder {
		switch names[i] {
		case "secret_key":
			key = names[i] + `="` + escapeLabel(values[i]) + `",`
		case "secret_name", "secret_namespace":
		case "serial_number":
			serial = escapeLabel(values[i])
			b = &post
		default:
			// Written in pieces: a concatenation per label was a tenth of Parse's CPU.
			b.WriteString(names[i])
			b.WriteString(`="`)
			b.WriteString(escapeLabel(values[i]))
			b.WriteString(`",`)
		}
	}
	cs.labels = unique.Make(labelParts{pre: pre.String(), key: key, post: strings.TrimSuffix(post.String(), ",")})
	return cs, serial
}

// escapeLabel escapes a label value as the text exposition format does.
func escapeLabel(v string) string {
	if !strings.ContainsAny(v, "\\\"\n") {
		return v
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

// dataFingerprint identifies a Secret's data (keys and values, in key order): a verdict made on
// it is void once any key changes. 64 bits of FNV: a collision keeps a verdict that should have
// lapsed, which blocks (the safe side), never a restart.
func dataFingerprint(data map[string][]byte) string {
	h := fnv.New64a()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write(data[k])
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
