package pki_test

import (
	"testing"

	"github.com/certguard/certguard/pki"
)

// TestRewrittenAtBoot: a k0s leaf on disk is written anew at boot only by a k0s that re-signs its
// leaves (≥ v1.35.1) or when it is gone; k0s's kubeconfigs and etcd leaves always are; vcluster's
// own leaves and controller-manager.conf never are.
func TestRewrittenAtBoot(t *testing.T) {
	old, renews := &pki.Report{}, &pki.Report{K0s: pki.K0s{Version: "v1.35.1+k0s.0", RenewsLeaves: true}}
	for _, c := range []struct {
		f          pki.File
		old, renew bool
	}{
		{pki.File{Path: "server.crt", Role: pki.RoleK0sLeaf, OnDisk: true, InSecret: true}, false, true},
		{pki.File{Path: "server.crt", Role: pki.RoleK0sLeaf}, true, true},
		{pki.File{Path: "ccm.conf", Role: pki.RoleK0sLeaf, OnDisk: true}, true, true},
		{pki.File{Path: "admin.conf", Role: pki.RoleKubeconfig, OnDisk: true}, true, true},
		{pki.File{Path: "controller-manager.conf", Role: pki.RoleKubeconfig, OnDisk: true}, false, false},
		{pki.File{Path: "etcd/peer.crt", Role: pki.RoleK0sRenewed, OnDisk: true}, true, true},
		{pki.File{Path: "apiserver.crt", Role: pki.RoleVclusterLeaf, OnDisk: true}, false, false},
		{pki.File{Path: "ca.crt", Role: pki.RoleCA, OnDisk: true}, false, false},
	} {
		if got := old.RewrittenAtBoot(c.f); got != c.old {
			t.Errorf("%s (%s) under k0s < v1.35.1: %v, want %v", c.f.Path, c.f.Role, got, c.old)
		}
		if got := renews.RewrittenAtBoot(c.f); got != c.renew {
			t.Errorf("%s (%s) under k0s v1.35.1: %v, want %v", c.f.Path, c.f.Role, got, c.renew)
		}
	}
}
