package probe

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
)

// Endpoint names one of the two TLS endpoints of a vcluster k0s pod (docs/served.md).
type Endpoint string

const (
	// EndpointAPIServer is k0s's kube-apiserver in the pod (127.0.0.1:6443): it serves
	// server.crt, which is stored (pki dir, and the Secret's key server.crt).
	EndpointAPIServer Endpoint = "apiserver"
	// EndpointSyncer is the syncer's proxy (pod :8443, the vcluster's Service :443): it serves a
	// leaf it makes in memory from ca.crt/ca.key and never stores.
	EndpointSyncer Endpoint = "syncer"
)

// Stored files a served leaf is held against, by path in the pki dir (the Secret's keys for
// these two are the same).
const (
	StoredServerCert = "server.crt"
	StoredCA         = "ca.crt"
)

// Mismatch tells whether the leaf an endpoint serves is not the stored one, and whether that
// could be judged at all (known false: nothing stored to hold it against). For the API server
// the stored leaf is server.crt, compared byte for byte (DER); for the syncer, whose leaf is
// never stored, it is whether a certificate of the stored ca.crt signed it.
func Mismatch(e Endpoint, served *x509.Certificate, stored map[string][]byte) (mismatch, known bool) {
	if served == nil {
		return false, false
	}
	switch e {
	case EndpointAPIServer:
		certs := pemCerts(stored[StoredServerCert])
		if len(certs) == 0 {
			return false, false
		}
		return !bytes.Equal(certs[0].Raw, served.Raw), true
	case EndpointSyncer:
		cas := pemCerts(stored[StoredCA])
		if len(cas) == 0 {
			return false, false
		}
		for _, ca := range cas {
			if served.CheckSignatureFrom(ca) == nil {
				return false, true
			}
		}
		return true, true
	}
	return false, false
}

// pemCerts are the certificates of a PEM bundle, in order; what does not parse is left out (pki's
// report already says why the file is broken).
func pemCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// IssuedBy judges the syncer's served leaf when only the stored CA's subject key ID is known
// (the fleet keeps no certificate bytes): mismatch when the leaf's authority key ID names
// another key. Go's x509 and cfssl both write the authority key ID from the CA's subject key ID;
// a leaf or CA without one cannot be judged.
func IssuedBy(served Leaf, caKeyID []byte) (mismatch, known bool) {
	if len(caKeyID) == 0 || len(served.AuthorityKeyID) == 0 {
		return false, false
	}
	return !bytes.Equal(served.AuthorityKeyID, caKeyID), true
}
