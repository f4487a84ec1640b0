package pki_test

import (
	"testing"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

// The parsers face whatever a volume or a Secret holds: they must never panic, and bad bytes
// must come back as an error, never as a certificate.

func FuzzParseCertPEM(f *testing.F) {
	p := genPKI(f, nil)
	for _, s := range [][]byte{nil, []byte("garbage"), p.Files["ca.crt"], p.Files["server.crt"][:200], p.Files["server.key"],
		[]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := pki.ParseCertPEM(data)
		if (c == nil) == (err == nil) {
			t.Fatalf("ParseCertPEM: cert %v and err %v", c != nil, err)
		}
	})
}

func FuzzParseKeyPEM(f *testing.F) {
	p := genPKI(f, func(o *pkigen.Options) {})
	for _, s := range [][]byte{nil, []byte("garbage"), p.Files["sa.key"], p.Files["ca.crt"], p.Files["ca.key"][:60]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := pki.ParseKeyPEM(data)
		if (k == nil) == (err == nil) {
			t.Fatalf("ParseKeyPEM: key %v and err %v", k != nil, err)
		}
	})
}

func FuzzParseKubeconfig(f *testing.F) {
	p := genPKI(f, nil)
	for _, s := range [][]byte{nil, []byte("{]"), []byte("users: [{user: {client-certificate-data: AAAA}}]"), p.Files["ccm.conf"], p.Files["admin.conf"][:300]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kc, err := pki.ParseKubeconfig(data)
		if (kc == nil) == (err == nil) {
			t.Fatalf("ParseKubeconfig: %v and err %v", kc != nil, err)
		}
		if kc != nil && (len(kc.Users) == 0 || kc.Users[0].Cert == nil) {
			t.Fatal("a kubeconfig without a client certificate was accepted")
		}
	})
}

// Inspect as a whole must turn any bytes into rows, never panic.
func FuzzInspect(f *testing.F) {
	p := genPKI(f, nil)
	f.Add(p.Files["server.crt"], p.Files["server.key"], p.Files["ccm.conf"])
	f.Add([]byte("x"), []byte{}, []byte("{]"))
	f.Fuzz(func(t *testing.T, crt, key, conf []byte) {
		secret := p.SecretData()
		secret["server.crt"], secret["server.key"], secret["ccm.conf"] = crt, key, conf
		r := pki.Inspect(pki.Store{Source: pki.SourceDisk, Present: true, Files: p.Files}, pki.FromSecret(&pki.Secret{Data: secret}), now, 120*day)
		if len(r.Files) == 0 {
			t.Fatal("no rows")
		}
		_ = pki.BuildPlan(r, pki.Policy{Strategy: pki.StrategyAuto})
	})
}
