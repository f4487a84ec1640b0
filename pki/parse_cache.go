package pki

import (
	"bytes"
	"crypto/x509"
	"hash/maphash"
)

// CertParser parses certificates, each distinct PEM once. One vcluster Secret holds several of
// its certificates two or three times (admin.conf embeds admin.crt, and fleet's facts read the
// k0s leaves its series read too): 31 ParseCertPEM a Secret for 20 distinct certificates, a
// third of fleet serve's parsing. The result for given bytes is ParseCertPEM's, the same
// *x509.Certificate for equal bytes, to be read only. The zero value is ready. It keeps the
// bytes it was given (to compare them), which must not change while it is used: it lives as
// long as one Secret's parse. Not for concurrent use.
type CertParser struct {
	seed maphash.Seed
	seen map[uint64][]parsedCert
}

type parsedCert struct {
	pem  []byte
	cert *x509.Certificate
	err  error
}

// ParseCertPEM is ParseCertPEM, once for each distinct data.
func (p *CertParser) ParseCertPEM(data []byte) (*x509.Certificate, error) {
	if p.seen == nil {
		p.seed, p.seen = maphash.MakeSeed(), map[uint64][]parsedCert{}
	}
	h := maphash.Bytes(p.seed, data)
	for _, c := range p.seen[h] {
		if bytes.Equal(c.pem, data) {
			return c.cert, c.err
		}
	}
	c, err := ParseCertPEM(data)
	p.seen[h] = append(p.seen[h], parsedCert{pem: data, cert: c, err: err})
	return c, err
}

// ParseKubeconfigCerts is ParseKubeconfig without the key checks (every KeyMatches is nil), for
// callers that show the certificates only, parsing them through p.
func (p *CertParser) ParseKubeconfigCerts(data []byte) (*Kubeconfig, error) {
	return parseKubeconfig(data, p.ParseCertPEM, false)
}
