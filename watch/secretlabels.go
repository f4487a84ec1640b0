package watch

import "github.com/certguard/certguard/pki"

// SecretCertLabels are the label names and values of the x509_cert_* series of a certificate in
// a Secret's key, exactly as CollectSecretCerts sends them (x509-certificate-exporter's
// kube-secret source), values made valid UTF-8. certguard fleet serve renders them itself, once
// per change, rather than building four metrics per certificate at every scrape.
func SecretCertLabels(ns, name, key string, c *pki.CertInfo) (names, values []string) {
	l := labels(fromInfo(c), location{ns: ns, name: name, key: key}, "", "")
	for i := range l {
		l[i] = labelValue(l[i])
	}
	return certLabels, l
}

// LabelValue makes a label value valid UTF-8 as every series of the sidecar does.
func LabelValue(s string) string { return labelValue(s) }
