package pki_test

import (
	"testing"

	"github.com/certguard/certguard/pki"
)

// TestFormatOf: the layout's extensions, and nothing guessed from a name that only contains one.
func TestFormatOf(t *testing.T) {
	cases := map[string]pki.Format{"ca.crt": pki.FormatCert, "etcd/peer.key": pki.FormatKey, "sa.pub": pki.FormatPublicKey,
		"admin.conf": pki.FormatKubeconfig, "konnectivity.conf": pki.FormatKubeconfig, "admin.conf.bak": pki.FormatOther,
		"conf": pki.FormatOther, "etcd.conf/x": pki.FormatOther, "": pki.FormatOther}
	for p, want := range cases {
		if got := pki.FormatOf(p); got != want {
			t.Errorf("FormatOf(%q) = %s, want %s", p, got, want)
		}
	}
	if f := (pki.File{Path: "scheduler.conf"}); f.Format() != pki.FormatKubeconfig {
		t.Errorf("File.Format of %s = %s", f.Path, f.Format())
	}
}
