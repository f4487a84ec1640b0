package exporter

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/certguard/certguard/pki"
)

// CertLabels are x509-certificate-exporter v4's label slots of the x509_cert_* series, all
// emitted, empty when they do not apply, so its dashboards and alerts work unchanged.
var CertLabels = []string{
	"filename", "filepath", "embedded_kind", "embedded_key", "serial_number",
	"subject_C", "subject_ST", "subject_L", "subject_O", "subject_OU", "subject_CN",
	"issuer_C", "issuer_ST", "issuer_L", "issuer_O", "issuer_OU", "issuer_CN",
	"secret_namespace", "secret_name", "secret_key", "discriminator",
}

// sourceLabels are the label slots of x509_source_up.
var sourceLabels = []string{"source_kind", "source_name"}

// SourceKind is a source_kind label value.
type SourceKind string

// Source kinds as x509-certificate-exporter writes them in source_kind (its pkg/cert KindFile,
// KindKubeconfig, KindKubeSecret): its alerts and dashboards select on them.
const (
	KindFile       SourceKind = "file"
	KindKubeconfig SourceKind = "kubeconfig"
	KindKubeSecret SourceKind = "kube-secret"
)

// Embedded kinds of a certificate in a kubeconfig, as the exporter's kubeconfig source names
// them in embedded_kind: certificate-authority-data and client-certificate-data.
const (
	EmbeddedCluster = "cluster"
	EmbeddedUser    = "user"
)

// Cert is what the series of one certificate show.
type Cert struct {
	Serial              string
	Subject, Issuer     pkix.Name
	NotBefore, NotAfter time.Time
}

// FromInfo is the series' view of a certificate pki read.
func FromInfo(c *pki.CertInfo) Cert {
	return Cert{c.Serial, c.SubjectName, c.IssuerName, c.NotBefore, c.NotAfter}
}

// FromX509 is the series' view of a parsed certificate.
func FromX509(c *x509.Certificate) Cert {
	return Cert{c.SerialNumber.String(), c.Subject, c.Issuer, c.NotBefore, c.NotAfter}
}

// Location is where a certificate was read: a file (and, in a kubeconfig, which embedded
// certificate), or a Secret's key.
type Location struct {
	Filename, Path                   string
	EmbeddedKind, EmbeddedKey        string
	SecretNamespace, SecretName, Key string
}

// Labels are the values of CertLabels for a certificate read at a location, in that order, not
// yet made valid (SendCert does that).
func Labels(c Cert, at Location) []string {
	return []string{at.Filename, at.Path, at.EmbeddedKind, at.EmbeddedKey, c.Serial,
		first(c.Subject.Country), first(c.Subject.Province), first(c.Subject.Locality), first(c.Subject.Organization), first(c.Subject.OrganizationalUnit), c.Subject.CommonName,
		first(c.Issuer.Country), first(c.Issuer.Province), first(c.Issuer.Locality), first(c.Issuer.Organization), first(c.Issuer.OrganizationalUnit), c.Issuer.CommonName,
		at.SecretNamespace, at.SecretName, at.Key, ""}
}

// SecretCertLabels are the label names and values of the x509_cert_* series of a certificate in
// a Secret's key, exactly as CollectSecretCerts sends them (x509-certificate-exporter's
// kube-secret source), values made valid UTF-8. certguard fleet serve renders them itself, once
// per change, rather than building four metrics per certificate at every scrape.
func SecretCertLabels(ns, name, key string, c *pki.CertInfo) (names, values []string) {
	l := Labels(FromInfo(c), Location{SecretNamespace: ns, SecretName: name, Key: key})
	for i := range l {
		l[i] = LabelValue(l[i])
	}
	return CertLabels, l
}

// first is the exporter's reading of a multi-valued RDN (pkg/registry/labels.go dnValue): its
// first value, not all of them joined.
func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// LabelValue makes s valid UTF-8: a file name is any bytes but '/' and NUL, and Prometheus
// panics on (MustNewConstMetric) or refuses an invalid label value. Each invalid byte becomes
// \xNN, so two names that differ in those bytes stay apart.
func LabelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
