package pki_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

func TestBuildPlan(t *testing.T) {
	other := genPKI(t, nil)
	corruptPEM := []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	cases := []struct {
		name     string
		gen      func(*pkigen.Options)
		mutate   func(files, secret map[string][]byte) (map[string][]byte, map[string][]byte)
		strategy pki.Strategy
		skew     time.Duration
		noClock  bool // the API server's time is unknown
		maxSkew  time.Duration
		want     pki.Decision
		refusal  string     // substring of the refusal
		warning  string     // substring of a warning
		codes    []pki.Code // each in Why or Warnings
	}{
		{name: "healthy", want: pki.DecideNothing},
		{name: "leaves expired", gen: expiredLeaves, want: pki.DecideLeaves},
		{name: "leaves due within renew-before", gen: func(o *pkigen.Options) { o.K0sIssued = now.Add(-300 * day) }, want: pki.DecideLeaves},
		{name: "leaves due but renew-before is shorter", gen: func(o *pkigen.Options) { o.K0sIssued = now.Add(-200 * day) }, want: pki.DecideNothing},
		{name: "CA expired under auto: full", gen: expiredCA, want: pki.DecideFull},
		{name: "CA expired under leaves: refused", gen: expiredCA, strategy: pki.StrategyLeaves, want: pki.DecideRefuse, refusal: "CA is expired"},
		{name: "CA due: warning, leaves only", gen: func(o *pkigen.Options) {
			o.CAIssued = now.Add(-10*pkigen.Year + 60*day)
			o.K0sIssued = now.Add(-400 * day)
		}, want: pki.DecideLeaves, warning: "CA rotation"},
		{name: "CA due under full: full", gen: func(o *pkigen.Options) { o.CAIssued = now.Add(-10*pkigen.Year + 60*day) },
			strategy: pki.StrategyFull, want: pki.DecideFull},
		{name: "full strategy, nothing due: nothing", strategy: pki.StrategyFull, want: pki.DecideNothing},
		{name: "k0s's own CA (vcluster < v0.19)", gen: func(o *pkigen.Options) { o.CACN = "kubernetes-ca"; o.K0sIssued = now.Add(-400 * day) }, want: pki.DecideNothing},
		{name: "CA key missing everywhere: full", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			delete(f, "ca.key")
			delete(s, "ca.key")
			return f, s
		}, want: pki.DecideFull},
		{name: "CA key missing, leaves strategy: refused", strategy: pki.StrategyLeaves, mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			delete(f, "ca.key")
			delete(s, "ca.key")
			return f, s
		}, want: pki.DecideRefuse, refusal: "ca.key is missing"},
		// Issue 18: a repair held back for the clock blocks the start (refused, exit 3) only when
		// the start fails anyway, something expired by both clocks; else nothing, and a warning.
		{name: "clock skew: leaves not yet valid, nothing expired: held", gen: func(o *pkigen.Options) { o.K0sIssued = now.Add(2 * time.Hour) },
			want: pki.DecideNothing, codes: []pki.Code{pki.CodeRepairHeld, pki.CodeNotYetValid}},
		// cfssl back-dates NotBefore by 5 minutes: issued 7 minutes ahead is 2 minutes from the future.
		{name: "leaves not yet valid by less than --max-clock-skew: held", gen: func(o *pkigen.Options) { o.K0sIssued = now.Add(7 * time.Minute) },
			want: pki.DecideNothing, codes: []pki.Code{pki.CodeRepairHeld, pki.CodeNotYetValid}},
		{name: "everything from the future: held, never a reset", gen: func(o *pkigen.Options) { o.CAIssued = now.Add(2 * time.Hour); o.K0sIssued = now.Add(2 * time.Hour) },
			want: pki.DecideNothing, codes: []pki.Code{pki.CodeRepairHeld, pki.CodeNotYetValid}},
		{name: "leaves only due, clock skew against the API server: held", gen: func(o *pkigen.Options) { o.K0sIssued = now.Add(-300 * day) },
			skew: time.Hour, want: pki.DecideNothing, codes: []pki.Code{pki.CodeRepairHeld, pki.CodeClockSkew}},
		{name: "leaves expired by this node's clock only: held", gen: expiredLeaves, skew: 40 * day,
			want: pki.DecideNothing, codes: []pki.Code{pki.CodeRepairHeld, pki.CodeClockSkew}},
		{name: "clock skew against the API server, leaves expired by both clocks: refused", gen: expiredLeaves, skew: time.Hour, want: pki.DecideRefuse, refusal: "off the API server's"},
		{name: "clock skew, node behind, leaves expired by both clocks: refused", gen: expiredLeaves, skew: -time.Hour, want: pki.DecideRefuse, refusal: "off the API server's"},
		{name: "CA from the future, leaves expired by both clocks: refused", gen: func(o *pkigen.Options) {
			o.CAIssued = now.Add(2 * time.Hour)
			o.K0sIssued = now.Add(-400 * day)
		}, want: pki.DecideRefuse, refusal: "so this start fails anyway"},
		{name: "full strategy, leaves only due, API server time unknown: held", gen: func(o *pkigen.Options) { o.K0sIssued = now.Add(-300 * day) },
			strategy: pki.StrategyFull, noClock: true, want: pki.DecideNothing, codes: []pki.Code{pki.CodeRepairHeld, pki.CodeNoClock}},
		{name: "small clock skew is fine", gen: expiredLeaves, skew: time.Minute, want: pki.DecideLeaves},
		{name: "corrupt k0s leaf in the Secret: leaves", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			s["server.crt"] = corruptPEM
			return f, s
		}, want: pki.DecideLeaves},
		{name: "partial k0s set in the Secret: leaves", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			delete(s, "ccm.conf")
			delete(f, "ccm.conf")
			return f, s
		}, want: pki.DecideLeaves},
		// A broken kept file never blocks a needed leaf repair (it would block every start).
		{name: "corrupt kept file and expired leaves: leaves, warned", gen: expiredLeaves, mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			s["apiserver.crt"] = corruptPEM
			return f, s
		}, want: pki.DecideLeaves, warning: "apiserver.crt is corrupt"},
		{name: "kept key mismatch and expired leaves: leaves, warned", gen: expiredLeaves, mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			s["sa.pub"] = other.Files["sa.pub"]
			return f, s
		}, want: pki.DecideLeaves, warning: "sa.pub is key-mismatch"},
		{name: "CA expired, API server time unknown: refused", gen: expiredCA, noClock: true, want: pki.DecideRefuse, refusal: "clock reference"},
		{name: "CA expired, --max-clock-skew 0: refused", gen: expiredCA, maxSkew: -1, want: pki.DecideRefuse, refusal: "clock reference"},
		{name: "leaves expired, API server time unknown: leaves", gen: expiredLeaves, noClock: true, want: pki.DecideLeaves},
		{name: "Secret's ca.key broken, disk's good: never a reset", gen: expiredLeaves, mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			s["ca.key"] = []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
			return f, s
		}, want: pki.DecideLeaves, warning: "holds a good CA"},
		{name: "Secret's ca.key empty, disk's good: never a reset", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			s["ca.key"] = []byte{}
			return f, s
		}, want: pki.DecideNothing, warning: "holds a good CA"},
		{name: "ca.key broken in Secret and on disk: full", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			f["ca.key"] = []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
			s["ca.key"] = f["ca.key"]
			return f, s
		}, want: pki.DecideFull},
		{name: "front-proxy-ca missing both halves: not a reset", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			for _, k := range []string{"front-proxy-ca.crt", "front-proxy-ca.key"} {
				delete(f, k)
				delete(s, k)
			}
			return f, s
		}, want: pki.DecideNothing, warning: "k0s generates a new front-proxy-ca"},
		{name: "only unknown files, no Secret: nothing (vcluster generates a PKI)", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			return map[string][]byte{"notes.txt": []byte("hello")}, nil
		}, want: pki.DecideNothing},
		{name: "corrupt kept file alone: nothing, warned", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			s["apiserver.crt"] = corruptPEM
			return f, s
		}, want: pki.DecideNothing, warning: "apiserver.crt is corrupt"},
		{name: "Secret deleted, disk expired: leaves from disk", gen: expiredLeaves, mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			return f, nil
		}, want: pki.DecideLeaves, warning: "rebuilds it from the disk"},
		{name: "first start: no files", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			return map[string][]byte{}, nil
		}, want: pki.DecideNothing},
		{name: "healthy Secret, empty volume (emptyDir): nothing, judged from the Secret", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			return map[string][]byte{}, s
		}, want: pki.DecideNothing, warning: "judged from Secret"},
		{name: "expired Secret, empty volume (emptyDir): leaves, Secret only", gen: expiredLeaves, mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			return map[string][]byte{}, s
		}, want: pki.DecideLeaves, warning: "judged from Secret"},
		{name: "expired CA in the Secret, empty volume: full, Secret only", gen: expiredCA, mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			return map[string][]byte{}, s
		}, want: pki.DecideFull},
		{name: "half of etcd/jwt: k0s makes a new pair, leaves repaired", gen: expiredLeaves, mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			f["etcd/jwt.key"] = f["sa.key"] // found by the e2e harness: a crash between k0s's two writes
			return f, s
		}, want: pki.DecideLeaves},
		{name: "half of sa and expired leaves: leaves, warned", gen: expiredLeaves, mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			delete(f, "sa.pub")
			delete(s, "sa.pub")
			return f, s
		}, want: pki.DecideLeaves, warning: "sa.pub is missing"},
		{name: "expired etcd leaves are ignored: k0s re-issues them at every start", mutate: func(f, s map[string][]byte) (map[string][]byte, map[string][]byte) {
			exp := genPKI(t, expiredLeaves) // expired, and signed by a foreign etcd CA on top
			for _, k := range []string{"etcd/server.crt", "etcd/server.key", "etcd/peer.crt", "etcd/peer.key"} {
				f[k] = exp.Files[k]
				s[pki.SecretKey(k)] = exp.Files[k]
			}
			return f, s
		}, want: pki.DecideNothing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := genPKI(t, c.gen)
			files, secret := clone(p.Files), p.SecretData()
			if c.mutate != nil {
				files, secret = c.mutate(files, secret)
			}
			dir := writePKI(t, files)
			strategy := c.strategy
			if strategy == "" {
				strategy = pki.StrategyAuto
			}
			maxSkew := 5 * time.Minute
			if c.maxSkew != 0 {
				maxSkew = max(c.maxSkew, 0)
			}
			plan := pki.BuildPlan(inspect(t, dir, secret), pki.Policy{Strategy: strategy, Secret: pki.SecretRef{Namespace: "ns", Name: "vc-certs"},
				ClockSkew: c.skew, ClockKnown: !c.noClock, MaxClockSkew: maxSkew})
			if plan.Decision != c.want {
				t.Fatalf("decision %s, want %s; why %q; refusal %v", plan.Decision, c.want, plan.Why, plan.Refusal)
			}
			if c.refusal != "" && (plan.Refusal == nil || !strings.Contains(plan.Refusal.Text, c.refusal)) {
				t.Errorf("refusal %v does not say %q", plan.Refusal, c.refusal)
			}
			if c.warning != "" && !slices.ContainsFunc(plan.Warnings, func(w pki.Finding) bool { return strings.Contains(w.Text, c.warning) }) {
				t.Errorf("warnings %q do not say %q", plan.Warnings, c.warning)
			}
			for _, code := range c.codes {
				if _, ok := plan.Has(code); !ok {
					t.Errorf("no finding %s in why %q, warnings %q", code, plan.Why, plan.Warnings)
				}
			}
			if plan.Decision != pki.DecideRefuse && plan.Refusal != nil {
				t.Errorf("a %s plan carries a refusal: %v", plan.Decision, plan.Refusal)
			}
			// A plan that repairs nothing may still set the Secret's kubeconfig servers for
			// vcluster's syncer (pkigen writes k0s's https://localhost:6443 into all of them).
			for _, st := range plan.Steps {
				if (c.want == pki.DecideNothing && st.Action != pki.ActionSetConfServer) || c.want == pki.DecideRefuse {
					t.Errorf("a %s plan has a %s step for %s", c.want, st.Action, st.Path)
				}
			}
			if len(plan.Why) == 0 {
				t.Error("the plan does not say why")
			}
			checkSteps(t, plan, files, secret)
		})
	}
}

// TestBuildPlanSplitPoints covers the two paths between classify and decide that the table
// above does not reach: a CA entry that cannot be read (classify warns, decide must not count it
// as a dead CA) and a full reset that cannot keep sa.key/sa.pub (decide's steps warn).
func TestBuildPlanSplitPoints(t *testing.T) {
	pol := pki.Policy{Strategy: pki.StrategyAuto, Secret: pki.SecretRef{Namespace: "ns", Name: "vc-certs"}, ClockKnown: true, MaxClockSkew: 5 * time.Minute}
	t.Run("unreadable ca.crt on disk: unjudged, leaves repaired, never a reset", func(t *testing.T) {
		// The Secret lacks ca.crt too, so the start uses the disk's entry: a directory.
		p := genPKI(t, expiredLeaves)
		files, secret := clone(p.Files), p.SecretData()
		delete(files, "ca.crt")
		delete(secret, "ca.crt")
		dir := writePKI(t, files)
		if err := os.Mkdir(filepath.Join(dir, "ca.crt"), 0o700); err != nil {
			t.Fatal(err)
		}
		plan := pki.BuildPlan(inspect(t, dir, secret), pol)
		if w, ok := plan.Has(pki.CodeCAUnjudged); plan.Decision != pki.DecideLeaves || !ok || w.Path != "ca.crt" || !slices.Contains(plan.Warnings, w) {
			t.Fatalf("decision %s, ca-unjudged %v in warnings %q; want leaves and a ca-unjudged warning for ca.crt", plan.Decision, ok, plan.Warnings)
		}
		if _, dead := plan.Has(pki.CodeCADead); dead {
			t.Errorf("an unreadable CA counted as dead: why %q", plan.Why)
		}
	})
	t.Run("full reset without sa.pub: tokens break, said", func(t *testing.T) {
		p := genPKI(t, expiredCA)
		files, secret := clone(p.Files), p.SecretData()
		delete(files, "sa.pub")
		delete(secret, "sa.pub")
		plan := pki.BuildPlan(inspect(t, writePKI(t, files), secret), pol)
		if _, ok := plan.Has(pki.CodeSANotKept); plan.Decision != pki.DecideFull || !ok || !strings.HasSuffix(plan.Breaks, "every service-account token too") {
			t.Fatalf("decision %s, sa-not-kept %v, breaks %q", plan.Decision, ok, plan.Breaks)
		}
		if slices.ContainsFunc(plan.Steps, func(s pki.Step) bool { return s.Action == pki.ActionRestoreFile }) {
			t.Errorf("a restore-file step without a whole sa pair: %v", plan.Steps)
		}
	})
}

// checkSteps verifies what a plan touches: exactly the 14 k0s files for leaves, never one half of
// a pair, and the whole dir plus the Secret for full.
func checkSteps(t *testing.T, plan pki.Plan, files, secret map[string][]byte) {
	t.Helper()
	var removed, keys []string
	var moved, deleted bool
	for _, s := range plan.Steps {
		switch s.Action {
		case pki.ActionRemoveFile:
			removed = append(removed, s.Path)
			if want := files[s.Path]; string(s.Data) != string(want) {
				t.Errorf("remove-file %s carries other bytes than the file holds", s.Path)
			}
		case pki.ActionRemoveSecretKeys:
			keys = append(keys, s.Keys...)
		case pki.ActionMovePKI:
			moved = true
		case pki.ActionDeleteSecret:
			deleted = true
		}
	}
	switch plan.Decision {
	case pki.DecideLeaves:
		var wantFiles, wantKeys []string
		for _, p := range pki.K0sLeafFiles {
			if _, ok := files[p]; ok {
				wantFiles = append(wantFiles, p)
			}
			if _, ok := secret[p]; ok {
				wantKeys = append(wantKeys, p)
			}
		}
		if !slices.Equal(removed, wantFiles) || !slices.Equal(keys, wantKeys) || moved || deleted {
			t.Errorf("leaves plan removes files %v keys %v (moved %v, deleted %v); want files %v keys %v", removed, keys, moved, deleted, wantFiles, wantKeys)
		}
	case pki.DecideFull:
		if moved != (len(files) > 0) || deleted != (secret != nil) || len(removed) > 0 || plan.Breaks == "" {
			t.Errorf("full plan: moved %v deleted %v removed %v breaks %q", moved, deleted, removed, plan.Breaks)
		}
	}
}

func TestParseStrategy(t *testing.T) {
	for _, s := range []string{"auto", "leaves", "full"} {
		if _, err := pki.ParseStrategy(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := pki.ParseStrategy("all"); err == nil || !strings.Contains(err.Error(), "auto|leaves|full") {
		t.Errorf("ParseStrategy(all) = %v", err)
	}
}
