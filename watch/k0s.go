package watch

import (
	"slices"

	"github.com/certguard/certguard/pki"
)

// withoutStale leaves out of the Secret's report the copies eff judged stale (pki.DriftStale):
// on k0s ≥ v1.35.1 nothing reads them, so their x509_cert_* series would only raise
// CertguardCertificateExpired for a cluster that serves fresh certificates. The disk's series
// of the same files, which k0s serves, stay.
func withoutStale(secret, eff *pki.Report) *pki.Report {
	stale := func(f pki.File) bool {
		e, ok := eff.File(f.Path)
		return ok && e.Drift == pki.DriftStale
	}
	if !slices.ContainsFunc(secret.Files, stale) {
		return secret
	}
	out := *secret
	out.Files = slices.DeleteFunc(slices.Clone(secret.Files), stale)
	return &out
}
