package pki_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"k8s.io/client-go/tools/clientcmd"
)

// k0sConf is a kubeconfig as k0s writes it (cluster "local", server https://localhost:6443).
func k0sConf(t *testing.T, server string) []byte {
	t.Helper()
	p := genPKI(t, nil)
	return pkigen.Kubeconfig(server, p.Files["ca.crt"], p.Files["admin.crt"], p.Files["admin.key"])
}

func TestSetConfServer(t *testing.T) {
	k0s := k0sConf(t, pki.K0sServer)
	cases := []struct {
		name    string
		data    []byte
		changed bool
		why     string // substring of the reason certguard keeps it; "" when it does not
		// want is the expected result, written by hand from the input: the one line changed.
		want []byte
	}{
		{name: "k0s's kubeconfig", data: k0s, changed: true,
			want: bytes.Replace(k0s, []byte("    server: https://localhost:6443\n"), []byte("    server: https://127.0.0.1:6443\n"), 1)},
		{name: "quoted server", data: bytes.Replace(k0s, []byte("server: https://localhost:6443"), []byte(`server: "https://localhost:6443"`), 1), changed: true,
			want: bytes.Replace(k0s, []byte("    server: https://localhost:6443\n"), []byte("    server: https://127.0.0.1:6443\n"), 1)},
		{name: "already the syncer's", data: k0sConf(t, pki.SyncerServer)},
		{name: "no cluster", data: []byte("apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user: {token: x}\n")},
		{name: "another server", data: k0sConf(t, "https://my-vc.team-a:443"), why: `its server is "https://my-vc.team-a:443"`},
		{name: "another port", data: k0sConf(t, "https://localhost:8443"), why: "not k0s's"},
		{name: "two clusters", data: bytes.Replace(k0s, []byte("contexts:\n"),
			[]byte("- name: other\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n"), 1), why: "2 clusters"},
		{name: "not YAML", data: []byte("clusters: [\n"), why: "does not decode"},
		{name: "binary", data: []byte{0, 1, 2, 0xff}, why: "does not decode"},
		{name: "JSON kubeconfig", data: []byte(`{"apiVersion":"v1","kind":"Config","clusters":[{"name":"local","cluster":{"server":"https://localhost:6443"}}]}`),
			why: "one plain YAML line"},
		{name: "server with a comment", data: bytes.Replace(k0s, []byte("server: https://localhost:6443"), []byte("server: https://localhost:6443 # k0s"), 1),
			why: "one plain YAML line"},
		{name: "server in flow style", data: []byte("apiVersion: v1\nkind: Config\nclusters:\n- {name: local, cluster: {server: \"https://localhost:6443\"}}\n"),
			why: "one plain YAML line"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			next, changed, why := pki.SetConfServer(c.data)
			if changed != c.changed || (c.why == "") != (why == "") || !strings.Contains(why, c.why) {
				t.Fatalf("changed %v why %q; want changed %v why %q", changed, why, c.changed, c.why)
			}
			if !changed {
				if next != nil {
					t.Error("bytes returned for an unchanged kubeconfig")
				}
				return
			}
			if !bytes.Equal(next, c.want) {
				t.Errorf("the result differs from the input with the one server line changed")
			}
			// It decodes with client-go's clientcmd, and the syncer's check then changes nothing.
			cfg, err := clientcmd.Load(next)
			if err != nil {
				t.Fatalf("the result does not decode with clientcmd: %v", err)
			}
			for name, cl := range cfg.Clusters {
				if cl.Server != "https://127.0.0.1:6443" {
					t.Errorf("cluster %s: server %q", name, cl.Server)
				}
			}
			if again, changed, why := pki.SetConfServer(next); changed || why != "" || again != nil {
				t.Errorf("a second pass changes it again (%v, %q)", changed, why)
			}
		})
	}
}

func FuzzSetConfServer(f *testing.F) {
	f.Add([]byte(nil))
	f.Add([]byte("clusters: [\n"))
	f.Add(pkigen.Kubeconfig(pki.K0sServer, []byte("ca"), []byte("crt"), []byte("key")))
	f.Add([]byte("apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    server: https://localhost:6443\n    server: https://localhost:6443\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		next, changed, why := pki.SetConfServer(data) // must never panic
		if !changed {
			return
		}
		if why != "" {
			t.Fatalf("changed with a reason to keep it: %q", why)
		}
		cfg, err := clientcmd.Load(next)
		if err != nil || len(cfg.Clusters) != 1 {
			t.Fatalf("a changed kubeconfig does not decode to one cluster: %v", err)
		}
		for _, cl := range cfg.Clusters {
			if cl.Server != pki.SyncerServer {
				t.Fatalf("server %q", cl.Server)
			}
		}
	})
}

// confSteps returns the Secret keys a plan sets the server of.
func confSteps(p pki.Plan) []string {
	var out []string
	for _, st := range p.Steps {
		if st.Action == pki.ActionSetConfServer {
			out = append(out, st.Keys...)
		}
	}
	return out
}

func TestBuildPlanConfServers(t *testing.T) {
	// pkigen writes k0s's server into all five kubeconfigs: the Secret as vcluster rebuilds it
	// from the disk (the "delete the Secret" advice of loft-sh/vcluster#1766).
	all := []string{"admin.conf", "ccm.conf", "controller-manager.conf", "konnectivity.conf", "scheduler.conf"}
	cases := []struct {
		name   string
		gen    func(*pkigen.Options)
		mutate func(s map[string][]byte)
		want   pki.Decision
		keys   []string // the keys set, in order
		kept   []string // the keys warned about with conf-server-kept
	}{
		{name: "healthy: all five", want: pki.DecideNothing, keys: all},
		{name: "after the syncer rewrote them: none", mutate: func(s map[string][]byte) {
			for _, k := range all {
				s[k] = bytes.Replace(s[k], []byte(pki.K0sServer), []byte(pki.SyncerServer), 1)
			}
		}, want: pki.DecideNothing},
		{name: "leaf repair: not the two it removes", gen: expiredLeaves, want: pki.DecideLeaves,
			keys: []string{"admin.conf", "controller-manager.conf", "scheduler.conf"}},
		{name: "full reset: none (the Secret is deleted)", gen: expiredCA, want: pki.DecideFull},
		{name: "a malformed kubeconfig is left alone and named", mutate: func(s map[string][]byte) {
			s["admin.conf"] = []byte("clusters: [\n")
		}, want: pki.DecideNothing, keys: []string{"ccm.conf", "controller-manager.conf", "konnectivity.conf", "scheduler.conf"}, kept: []string{"admin.conf"}},
		{name: "an extra file named *.conf that is no kubeconfig", mutate: func(s map[string][]byte) {
			s["notes.conf"] = []byte("# my notes\nkey = value\n")
		}, want: pki.DecideNothing, keys: all, kept: []string{"notes.conf"}},
		{name: "an empty kubeconfig value", mutate: func(s map[string][]byte) {
			s["scheduler.conf"] = []byte{}
		}, want: pki.DecideNothing, keys: []string{"admin.conf", "ccm.conf", "controller-manager.conf", "konnectivity.conf"}, kept: []string{"scheduler.conf"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := genPKI(t, c.gen)
			secret := p.SecretData()
			if c.mutate != nil {
				c.mutate(secret)
			}
			plan := pki.BuildPlan(inspect(t, writePKI(t, p.Files), secret), pki.Policy{Strategy: pki.StrategyAuto,
				Secret: pki.SecretRef{Namespace: "ns", Name: "vc-certs"}, ClockKnown: true, MaxClockSkew: 5 * time.Minute})
			if plan.Decision != c.want {
				t.Fatalf("decision %s, want %s", plan.Decision, c.want)
			}
			if got := confSteps(plan); !slices.Equal(got, c.keys) {
				t.Errorf("sets %v, want %v", got, c.keys)
			}
			var kept []string
			for _, w := range plan.Warnings {
				if w.Code == pki.CodeConfServerKept {
					kept = append(kept, w.Path)
				}
			}
			if !slices.Equal(kept, c.kept) {
				t.Errorf("conf-server-kept warnings for %v, want %v", kept, c.kept)
			}
			for _, k := range c.keys {
				if !slices.ContainsFunc(plan.Why, func(f pki.Finding) bool { return f.Code == pki.CodeConfServer && f.Path == k }) {
					t.Errorf("no %s finding for %s", pki.CodeConfServer, k)
				}
			}
			// The conf steps come after every other step: the repair's own Secret write first.
			if i := slices.IndexFunc(plan.Steps, func(s pki.Step) bool { return s.Action == pki.ActionSetConfServer }); i >= 0 &&
				slices.ContainsFunc(plan.Steps[i:], func(s pki.Step) bool { return s.Action != pki.ActionSetConfServer }) {
				t.Error("a set-conf-server step comes before another step")
			}
		})
	}
}

// syncerServers returns, for each *.conf key of the Secret, whether its servers are all the
// syncer's: what vcluster's updateKubeconfigInSecret checks.
func syncerServers(t *testing.T, data map[string][]byte) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for k, v := range data {
		if !strings.HasSuffix(k, ".conf") {
			continue
		}
		cfg, err := clientcmd.Load(v)
		if err != nil {
			t.Fatalf("%s does not decode: %v", k, err)
		}
		ok := true
		for _, c := range cfg.Clusters {
			ok = ok && c.Server == pki.SyncerServer
		}
		out[k] = ok
	}
	return out
}

func TestRepairSetsConfServers(t *testing.T) {
	f := newFixture(t, nil)
	out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || !out.Applied || out.Plan.Decision != pki.DecideNothing || out.Backup == "" {
		t.Fatalf("Run = decision %s applied %v backup %q, %v", out.Plan.Decision, out.Applied, out.Backup, err)
	}
	data := f.secretData(t)
	for k, ok := range syncerServers(t, data) {
		if !ok {
			t.Errorf("%s still points elsewhere than %s", k, pki.SyncerServer)
		}
	}
	for k, v := range f.data {
		if !strings.HasSuffix(k, ".conf") && !bytes.Equal(data[k], v) {
			t.Errorf("Secret key %s changed", k)
		}
	}
	if got := manifest(t, f.dir); !maps.Equal(got, f.before) {
		t.Error("the pki dir changed")
	}
	f.assertNothingLost(t) // the old values are in the backup's secret.json
	if _, err := os.Stat(filepath.Join(out.Backup, "done")); err != nil {
		t.Errorf("the backup is not marked done: %v", err)
	}

	// The next start finds nothing to do: no write, no new backup.
	backups, _ := filepath.Glob(filepath.Join(f.backup, "*"))
	out, err = f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || out.Applied || out.Plan.HasDestructive() {
		t.Fatalf("second run: applied %v steps %d, %v", out.Applied, len(out.Plan.Steps), err)
	}
	if again, _ := filepath.Glob(filepath.Join(f.backup, "*")); len(again) != len(backups) {
		t.Errorf("the second run left a backup: %v", again)
	}
}

// TestRepairConfServersCrashSafe kills the run at every stage of a conf-only plan: the next run
// finishes it, nothing is lost, and the Secret ends with the syncer's servers.
func TestRepairConfServersCrashSafe(t *testing.T) {
	stages := []string{"during-backup", "after-backup", "after-step-0", "after-step-2", "after-step-4"}
	for _, stage := range stages {
		t.Run(stage, func(t *testing.T) {
			f := newFixture(t, nil)
			kill := errors.New("killed at " + stage)
			_, err := f.repair(pki.StrategyAuto, func(name string) error {
				if name == stage {
					return kill
				}
				return nil
			}).Run(context.Background())
			if !errors.Is(err, kill) {
				t.Fatalf("the failpoint %s did not stop the run: %v", stage, err)
			}
			f.assertNothingLost(t)
			if _, err := f.repair(pki.StrategyAuto, nil).Run(context.Background()); err != nil {
				t.Fatalf("the next run: %v", err)
			}
			for k, ok := range syncerServers(t, f.secretData(t)) {
				if !ok {
					t.Errorf("%s not set after the next run", k)
				}
			}
			f.assertNothingLost(t)
		})
	}
}

// refusing is a Secret whose every SetKeys fails (an admission webhook, a 403, an immutable
// Secret): the conf steps are optional and must never fail the start.
type refusing struct {
	*pkigen.MemorySecret
	dryRunToo bool
}

func (r *refusing) SetKeys(ctx context.Context, s *pki.Secret, set map[string][]byte, dryRun bool) error {
	if !dryRun || r.dryRunToo {
		return errors.New("test: admission webhook denied the request")
	}
	return r.MemorySecret.SetKeys(ctx, s, set, dryRun)
}

func TestRepairConfServersNeverBlock(t *testing.T) {
	for _, c := range []struct {
		name string
		gen  func(*pkigen.Options)
		dry  bool
	}{{"refused at the dry run", nil, true}, {"refused at the write", nil, false}, {"refused at the write, leaf repair", expiredLeaves, false}} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.gen)
			r := f.repair(pki.StrategyAuto, nil)
			r.Exec.Secrets = &refusing{MemorySecret: f.secret, dryRunToo: c.dry}
			out, err := r.Run(context.Background())
			if err != nil {
				t.Fatalf("the run failed: %v", err)
			}
			data := f.secretData(t)
			for k, v := range f.data {
				if strings.HasSuffix(k, ".conf") && data[k] != nil && !bytes.Equal(data[k], v) {
					t.Errorf("%s changed although every write was refused", k)
				}
			}
			if c.gen != nil && (out.Plan.Decision != pki.DecideLeaves || data["server.crt"] != nil) {
				t.Errorf("the leaf repair did not go ahead: %s", out.Plan.Decision)
			}
			f.assertNothingLost(t)
		})
	}
}
