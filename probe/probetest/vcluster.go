package probetest

import (
	"testing"
	"time"

	"github.com/certguard/certguard/pki/pkigen"
)

// Vcluster is what the served-certificate tests serve and store: a vcluster's PKI, the leaf its
// syncer makes in memory under ca.crt (CN kube-apiserver, 365 days: docs/served.md), and a second
// PKI whose certificates are "not the stored ones".
type Vcluster struct {
	PKI, Other           *pkigen.PKI
	SyncerCrt, SyncerKey []byte
}

// NewVcluster generates one.
func NewVcluster(t testing.TB) Vcluster {
	t.Helper()
	var v Vcluster
	var err error
	if v.PKI, err = pkigen.Generate(pkigen.Options{}); err != nil {
		t.Fatal(err)
	}
	if v.Other, err = pkigen.Generate(pkigen.Options{}); err != nil {
		t.Fatal(err)
	}
	v.SyncerCrt, v.SyncerKey, err = v.PKI.Issue(v.PKI.CAs["ca"], pkigen.Leaf{CN: []string{"kube-apiserver"}, Server: true, Issued: time.Now(), Lifetime: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
