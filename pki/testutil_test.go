package pki_test

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
)

// now is the fixed reference time of every test in this package.
var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// genPKI generates a vcluster v0.25 + k0s PKI; mutate picks lifetimes.
func genPKI(t testing.TB, mutate func(*pkigen.Options)) *pkigen.PKI {
	t.Helper()
	o := pkigen.Options{Now: now}
	if mutate != nil {
		mutate(&o)
	}
	p, err := pkigen.Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// expiredLeaves makes the k0s leaves expire 35 days before now: the #2628 state.
func expiredLeaves(o *pkigen.Options) { o.K0sIssued = now.Add(-400 * day) }

// expiredCA makes the CAs (and so everything) expire a day before now.
func expiredCA(o *pkigen.Options) {
	o.CAIssued = now.Add(-10*pkigen.Year - day)
	o.K0sIssued = now.Add(-400 * day)
}

// writePKI writes files into dir/pki and returns the pki dir.
func writePKI(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pkigen.WriteDir(dir, files); err != nil {
		t.Fatal(err)
	}
	return dir
}

func stores(t testing.TB, dir string, secret map[string][]byte) (pki.Store, pki.Store) {
	t.Helper()
	disk, err := pki.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s *pki.Secret
	if secret != nil {
		s = &pki.Secret{Namespace: "ns", Name: "vc-certs", UID: "u", ResourceVersion: "1", Data: secret}
	}
	return disk, pki.FromSecret(s)
}

func inspect(t testing.TB, dir string, secret map[string][]byte) *pki.Report {
	t.Helper()
	d, s := stores(t, dir, secret)
	return pki.Inspect(d, s, now, 120*day)
}

// manifest is the SHA-256 of every file under dir, by relative path.
func manifest(t testing.TB, dir string) map[string]string {
	t.Helper()
	m, err := pkigentest.Manifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
