package fleet

import (
	"testing"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
)

// BenchmarkParse reduces one vcluster certificate Secret (RSA-2048 vcluster v0.25 + k0s PKI, 43
// keys) as the informer does on each LIST page: what fleet serve's first sync spends beside the
// wire, per vcluster.
func BenchmarkParse(b *testing.B) {
	p, err := pkigen.Generate(pkigen.Options{Key: pkigentest.RSA})
	if err != nil {
		b.Fatal(err)
	}
	s := &pki.Secret{Namespace: "ns", Name: "vc-certs", Data: p.SecretData()}
	for b.Loop() {
		if Parse(s) == nil {
			b.Fatal("not followed")
		}
	}
}
