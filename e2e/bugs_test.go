package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/certguard/certguard/pki"
)

// TestEtcdJWTHalfMissing_LeavesExpired_RepairBoots is the regression test of a bug this harness
// found in certguard (fixed: etcd/jwt is now a pair k0s renews by itself, pki/layout.go).
//
// k0s's Etcd.setupCerts (pkg/component/controller/etcd.go) calls CreateKeyPair("etcd/jwt"), which
// writes a new pair whenever either half is missing (pkg/certificate/manager.go CreateKeyPair);
// nothing depends on the old pair (etcd's JWT auth tokens live 10 minutes, and vcluster does not
// enable etcd auth). CreateKeyPair writes jwt.key, then jwt.pub: a pod killed between the two
// leaves jwt.key alone, and the next start is where certguard runs.
//
// certguard treated etcd/jwt like sa.* (RoleKeyPair, pki/layout.go) and, when the k0s leaves were
// due at the same time, refused the leaf repair with exit 3 ("k0s does not regenerate it, so a
// leaf repair would not make the cluster boot"): the init container fails, the pod never starts,
// and the advice given (restore a backup or --strategy full) would replace the CA for nothing.
// The "by-hand" subtest shows that the leaf repair certguard refuses does make this cluster boot.
func TestEtcdJWTHalfMissing_LeavesExpired_RepairBoots(t *testing.T) {
	t.Parallel()
	halfJWT := func(t *testing.T) *scenario {
		s := newScenario(t, expiredLeaves())
		// The pair k0s made at an earlier start, then the crash between its two writes.
		if err := s.node.CreateKeyPair("etcd/jwt"); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(s.node.PKIDir(), "etcd", "jwt.pub")); err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("by-hand", func(t *testing.T) {
		t.Parallel()
		s := halfJWT(t)
		data := s.secretData()
		for _, f := range pki.K0sLeafFiles {
			delete(data, pki.SecretKey(f))
			if err := os.Remove(filepath.Join(s.node.PKIDir(), f)); err != nil {
				t.Fatal(err)
			}
		}
		s.putSecret(data)
		s.boot()
	})
	t.Run("certguard", func(t *testing.T) {
		t.Parallel()
		s := halfJWT(t)
		r := s.certguard(certguardBin, nil)
		if r.Code != 0 || decision(r) != pki.DecideLeaves {
			t.Fatalf("CERTGUARD BUG: with etcd/jwt.pub missing (k0s regenerates the pair) and the k0s leaves expired, "+
				"certguard exits %d with decision %q instead of repairing the leaves; the pod stays blocked in its init container:\n%s",
				r.Code, decision(r), r.Stderr)
		}
		s.boot()
	})
}
