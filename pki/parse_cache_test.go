package pki_test

import (
	"bytes"
	"testing"

	"github.com/certguard/certguard/pki"
)

// A CertParser gives ParseCertPEM's result for every input, whether it saw the bytes before,
// equal bytes in another slice, or bytes that differ by one.
func TestCertParserSameAsParseCertPEM(t *testing.T) {
	p := genPKI(t, nil)
	var inputs [][]byte
	for _, data := range p.Files {
		inputs = append(inputs, data, bytes.Clone(data))
		if len(data) > 100 {
			bad := bytes.Clone(data)
			bad[len(bad)/2] ^= 1
			inputs = append(inputs, bad, data[:len(data)/2])
		}
	}
	inputs = append(inputs, nil, []byte{}, []byte("garbage"), nil)
	var parser pki.CertParser
	for range 2 {
		for _, data := range inputs {
			got, gotErr := parser.ParseCertPEM(data)
			want, wantErr := pki.ParseCertPEM(data)
			if (got == nil) != (want == nil) || got != nil && !bytes.Equal(got.Raw, want.Raw) || (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
				t.Fatalf("CertParser: %v, %v; ParseCertPEM: %v, %v", got != nil, gotErr, want != nil, wantErr)
			}
		}
	}
}

// ParseKubeconfigCerts is ParseKubeconfig without KeyMatches, on every kubeconfig of the
// differential corpus.
func TestParseKubeconfigCerts(t *testing.T) {
	common, edge := kubeconfigCorpus(t, false)
	var parser pki.CertParser
	for _, data := range append(common, edge...) {
		got, gotErr := parser.ParseKubeconfigCerts(data)
		want, wantErr := pki.ParseKubeconfig(data)
		if want != nil {
			for i := range want.Users {
				want.Users[i].KeyMatches = nil
			}
		}
		_, scanned := pki.ScanKubeconfig(data) // else error texts may vary between runs (sameAsBefore)
		if d := diffKubeconfig(got, gotErr, want, wantErr, scanned); d != "" {
			t.Fatalf("%s\ninput: %q", d, data)
		}
	}
}
