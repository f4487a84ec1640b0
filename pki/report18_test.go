package pki_test

import (
	"slices"
	"testing"

	"github.com/certguard/certguard/pki"
)

// TestExpirationListsAMismatchedSAPub (issue 18): sa.pub that does not match sa.key made check
// exit 4, but `check -o json` left it out (it has no certificate), so the JSON said nothing was
// wrong. Every file that is not ok is listed, with its status.
func TestExpirationListsAMismatchedSAPub(t *testing.T) {
	p, other := genPKI(t, nil), genPKI(t, nil)
	files, secret := clone(p.Files), p.SecretData()
	files["sa.pub"], secret["sa.pub"] = other.Files["sa.pub"], other.Files["sa.pub"]
	info := pki.Expiration(inspect(t, writePKI(t, files), secret))
	i := slices.IndexFunc(info.Certificates, func(e pki.ExpirationEntry) bool { return e.Name == "sa.pub" })
	if i < 0 {
		t.Fatalf("sa.pub is not listed: %+v", info.Certificates)
	}
	if e := info.Certificates[i]; e.Status != pki.StatusKeyMismatch {
		t.Errorf("sa.pub listed as %s, want %s", e.Status, pki.StatusKeyMismatch)
	}
}
