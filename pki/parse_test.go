package pki_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

// ParseKeyPEM reads keys structurally: it must find the same public key crypto/x509 does, for
// every encoding k0s and vcluster write, and reject what crypto/x509 rejects structurally.
func TestParseKeyPEMMatchesCryptoX509(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	cases := map[string]struct {
		pem  []byte
		want crypto.PublicKey
	}{
		"RSA PKCS#1": {pkigen.KeyPEM(rsaKey), &rsaKey.PublicKey},
		"EC SEC 1":   {pkigen.KeyPEM(ecKey), &ecKey.PublicKey},
		"EC P-384":   {pkigen.KeyPEM(p384), &p384.PublicKey},
		"RSA PKCS#8": {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), &rsaKey.PublicKey},
		"EC, no pub": {ecWithoutPublic(t, ecKey), &ecKey.PublicKey},
	}
	for name, c := range cases {
		got, err := pki.ParseKeyPEM(c.pem)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(c.want) {
			t.Errorf("%s: public key differs from crypto/x509's", name)
		}
	}
	der := x509.MarshalPKCS1PrivateKey(rsaKey)
	for name, bad := range map[string][]byte{
		"truncated RSA": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der[:len(der)/2]}),
		"trailing data": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: append(der, 0)}),
		"EC garbage":    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x01}}),
		"certificate":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	} {
		if k, err := pki.ParseKeyPEM(bad); err == nil {
			t.Errorf("%s: accepted as %T", name, k)
		}
	}
}

// ecWithoutPublic re-encodes an EC key without its optional public key, which forces the full
// parse (a scalar multiplication) to find it.
func ecWithoutPublic(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	// SEC 1: SEQUENCE { version, privateKey, [0] curve, [1] publicKey }; drop [1], the last element.
	i := len(der) - (2 + 2 + 1 + 65) // [1] { BIT STRING { unused-bits byte, 65-byte point } }
	body := der[2:i]
	out := append([]byte{0x30, byte(len(body))}, body...)
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: out})
}
