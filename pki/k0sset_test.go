package pki_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

// TestK0sSetAllOrNone holds the invariant vcluster's UpdateSecretWithK0sCerts needs: the Secret
// holds all 14 k0s files or none. A partial set (some keys removed by hand, or a half-finished
// tool) makes secretIsUpToDate false at every start, and initialize() fails with "it was already
// updated" every 5 s until the pod is killed, even when every certificate is healthy.
func TestK0sSetAllOrNone(t *testing.T) {
	cases := []struct {
		name string
		keep func(k string) bool // which k0s keys the Secret keeps
		want pki.Decision
	}{
		{name: "all 14 in the Secret", keep: func(string) bool { return true }, want: pki.DecideNothing},
		{name: "none in the Secret (after a repair)", keep: func(string) bool { return false }, want: pki.DecideNothing},
		{name: "7 of 14 in the Secret, all on disk", keep: func(k string) bool { return slices.Index(pki.K0sLeafFiles, k) < 7 }, want: pki.DecideLeaves},
		{name: "only server.crt in the Secret", keep: func(k string) bool { return k == "server.crt" }, want: pki.DecideLeaves},
		{name: "all but ccm.conf in the Secret", keep: func(k string) bool { return k != "ccm.conf" }, want: pki.DecideLeaves},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := genPKI(t, nil) // every certificate healthy
			secret := p.SecretData()
			for _, k := range pki.K0sLeafFiles {
				if !c.keep(k) {
					delete(secret, pki.SecretKey(k))
				}
			}
			dir := writePKI(t, p.Files)
			plan := pki.BuildPlan(inspect(t, dir, secret), pki.Policy{Strategy: pki.StrategyAuto,
				Secret: pki.SecretRef{Namespace: "ns", Name: "vc-certs"}, ClockKnown: true, MaxClockSkew: 5 * time.Minute})
			if plan.Decision != c.want {
				t.Fatalf("decision %s, want %s; why %q", plan.Decision, c.want, plan.Why)
			}
			if c.want != pki.DecideLeaves {
				return
			}
			if _, ok := plan.Has(pki.CodeK0sPartial); !ok {
				t.Errorf("no %s finding: %q", pki.CodeK0sPartial, plan.Why)
			}
			checkSteps(t, plan, p.Files, secret)

			// Applied, the Secret holds none of the 14 and the disk none either: k0s re-issues
			// them under the same CA and vcluster adds all 14 back in one update.
			f := &fixture{dir: dir, backup: dir + ".old", data: secret}
			f.secret = pkigen.NewMemorySecret("ns", "vc-certs", secret)
			f.secret.Clock = func() time.Time { return now }
			f.before = manifest(t, dir)
			out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
			if err != nil || !out.Applied {
				t.Fatalf("repair: applied %v, %v", out.Applied, err)
			}
			got := f.secretData(t)
			for _, k := range pki.K0sLeafFiles {
				if _, ok := got[pki.SecretKey(k)]; ok {
					t.Errorf("Secret still holds %s", k)
				}
				if _, ok := manifest(t, dir)[k]; ok {
					t.Errorf("disk still holds %s", k)
				}
			}
			f.assertNothingLost(t)
		})
	}
}
