package pki_test

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

func TestParseK0sVersion(t *testing.T) {
	cases := []struct {
		in     string
		renews bool
		bad    bool
	}{
		{in: "v1.35.1+k0s.0", renews: true},
		{in: "v1.35.1-k0s.0", renews: true}, // the image tag: "-k0s.0" is no pre-release
		{in: "1.35.1", renews: true},
		{in: "v1.35.1-rc.0+k0s.0", renews: true}, // the first tag with e9260d20
		{in: "v1.36.3+k0s.2", renews: true},
		{in: "v1.37.0-alpha.1+k0s.0", renews: true},
		{in: "v2.0.0", renews: true},
		{in: "v1.35.0"},
		{in: "v1.34.10+k0s.0"}, // not backported
		{in: "v1.33.13+k0s.1"},
		{in: "v1.30.2-k0s.0"}, // vcluster v0.20–v0.25's default
		{in: "v1.29.1-k0s.0"}, // vcluster v0.19's default
		{in: "", bad: true},
		{in: "latest", bad: true},
		{in: "1.35", bad: true},
		{in: "v1.35.1k0s", bad: true},
	}
	for _, c := range cases {
		k, err := pki.ParseK0sVersion(c.in)
		if (err != nil) != c.bad {
			t.Errorf("%q: err %v, want error %v", c.in, err, c.bad)
			continue
		}
		if k.RenewsLeaves != c.renews {
			t.Errorf("%q: RenewsLeaves %v, want %v", c.in, k.RenewsLeaves, c.renews)
		}
		if !c.bad && k.Version != c.in {
			t.Errorf("%q: Version %q", c.in, k.Version)
		}
	}
}

func TestK0sFromImage(t *testing.T) {
	cases := []struct {
		image   string
		ok      bool
		version string
		renews  bool
	}{
		{image: "k0sproject/k0s:v1.35.1-k0s.0", ok: true, version: "v1.35.1-k0s.0", renews: true},
		{image: "docker.io/k0sproject/k0s:v1.30.2-k0s.0", ok: true, version: "v1.30.2-k0s.0"},
		{image: "registry.local:5000/mirror/k0s:v1.36.1-k0s.0@sha256:0123abcd", ok: true, version: "v1.36.1-k0s.0", renews: true},
		{image: "k0sproject/k0s@sha256:0123abcd"}, // a digest alone says no version
		{image: "k0sproject/k0s:latest"},
		{image: "registry.local:5000/k0s"},
		{image: "ghcr.io/loft-sh/vcluster:0.25.0"},
		{image: "ghcr.io/certguard/certguard:v1.35.1"},
		{image: "example.com/k0s-mirror:v1.35.1-k0s.0"}, // another name: unknown, set --k0s-version
	}
	for _, c := range cases {
		k, ok := pki.K0sFromImage(c.image)
		if ok != c.ok || k.Version != c.version || k.RenewsLeaves != c.renews {
			t.Errorf("%q: %+v %v, want version %q renews %v ok %v", c.image, k, ok, c.version, c.renews, c.ok)
		}
	}
}

// k0sAfterBoot is the state k0s ≥ v1.35.1 leaves behind on vcluster ≤ v0.25 (seen on the real
// binaries, issue 18 §3): the Secret keeps the k0s leaves of the first boot, here expired 35 days
// ago, while the pki dir holds the ones k0s signed at the last start, under the same CA.
func k0sAfterBoot(t *testing.T, gen func(*pkigen.Options)) (files, secret map[string][]byte) {
	t.Helper()
	if gen == nil {
		gen = expiredLeaves
	}
	p := genPKI(t, gen)
	fresh, err := pkigen.New(pkigen.Options{Now: now, K0sIssued: now.Add(-time.Hour)}).IssueK0sLeaves(p.CAs["ca"], p.Files["ca.crt"])
	if err != nil {
		t.Fatal(err)
	}
	files = maps.Clone(p.Files)
	maps.Copy(files, fresh)
	return files, p.SecretData()
}

var (
	k0s1351 = pki.K0s{Version: "v1.35.1+k0s.0", RenewsLeaves: true}
	k0s1302 = pki.K0s{Version: "v1.30.2-k0s.0"}
)

// TestK0sRenews_SecretStale_NoRepair: on k0s ≥ v1.35.1 the Secret's aged copies are reported
// stale, the disk's are judged, and nothing is repaired; on an older or unknown k0s the same
// state is the leaf repair it always was (on main, before pki/k0s.go, every case planned it).
func TestK0sRenews_SecretStale_NoRepair(t *testing.T) {
	files, secret := k0sAfterBoot(t, nil)
	dir := writePKI(t, files)
	for _, c := range []struct {
		name string
		k0s  pki.K0s
		want pki.Decision
	}{
		{"unknown", pki.K0s{}, pki.DecideLeaves},
		{"v1.30.2", k0s1302, pki.DecideLeaves},
		{"v1.35.1", k0s1351, pki.DecideNothing},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := inspect(t, dir, secret)
			r.SetK0s(c.k0s)
			p := pki.BuildPlan(r, pki.Policy{Strategy: pki.StrategyAuto, ClockKnown: true, MaxClockSkew: 5 * time.Minute})
			if p.Decision != c.want {
				t.Fatalf("decision %s, want %s: %v", p.Decision, c.want, p.Why)
			}
			f, _ := r.File("server.crt")
			if c.want == pki.DecideLeaves {
				if f.Status != pki.StatusExpired || f.Drift != pki.DriftDiffers || f.Source != pki.SourceSecret {
					t.Errorf("server.crt judged %s/%s from %s, want expired/differs from the Secret", f.Status, f.Drift, f.Source)
				}
				return
			}
			for _, st := range p.Steps {
				if st.Action != pki.ActionSetConfServer { // the syncer's kubeconfig servers are another matter
					t.Errorf("step %s %s, want none but set-conf-server", st.Action, st.Path)
				}
			}
			if _, ok := p.Has(pki.CodeSecretStale); !ok {
				t.Errorf("no %s finding: %v", pki.CodeSecretStale, p.Why)
			}
			var stale []string
			for _, f := range r.Files {
				if f.Drift == pki.DriftStale {
					stale = append(stale, f.Path)
					if f.Status != pki.StatusOK || f.Source != pki.SourceDisk {
						t.Errorf("%s: %s from %s, want ok from the disk", f.Path, f.Status, f.Source)
					}
				}
			}
			if !slices.Equal(stale, pki.K0sLeafFiles) {
				t.Errorf("stale %v, want the 14 k0s files %v", stale, pki.K0sLeafFiles)
			}
			if e := pki.Expiration(r); e.K0s != c.k0s {
				t.Errorf("check -o json names k0s %+v, want %+v", e.K0s, c.k0s)
			}
		})
	}
}

// TestK0sRenews_Limits: what k0s ≥ v1.35.1 does not fix is still judged as before.
func TestK0sRenews_Limits(t *testing.T) {
	pol := pki.Policy{Strategy: pki.StrategyAuto, ClockKnown: true, MaxClockSkew: 5 * time.Minute}
	cases := []struct {
		name   string
		gen    func(*pkigen.Options)
		mutate func(files, secret map[string][]byte)
		want   pki.Decision
		code   pki.Code
	}{
		// k0s cannot sign a leaf that verifies under a dead CA.
		{name: "CA expired: full reset", gen: expiredCA, want: pki.DecideFull, code: pki.CodeCADead},
		// A new volume: vcluster writes the Secret's expired copies, k0s re-signs them.
		{name: "Secret only: nothing", mutate: func(f, s map[string][]byte) { clear(f) }, want: pki.DecideNothing, code: pki.CodeK0sRenews},
		// Without ca.key k0s warns "no ca.key found, not renewing".
		{name: "no ca.key: refused like today", mutate: func(f, s map[string][]byte) { delete(f, "ca.key"); delete(s, "ca.key") }, want: pki.DecideFull, code: pki.CodeCADead},
		// vcluster loops on a Secret with some of the 14 k0s keys, whatever k0s does.
		{name: "partial set: leaves", mutate: func(f, s map[string][]byte) { delete(f, "ccm.conf"); delete(s, "ccm.conf") }, want: pki.DecideLeaves, code: pki.CodeLeaf},
		// A corrupt copy is re-signed: regenerateCert returns true when the file does not parse.
		{name: "corrupt server.crt in the Secret and on disk: nothing", mutate: func(f, s map[string][]byte) {
			f["server.crt"], s["server.crt"] = []byte("garbage"), []byte("garbage")
		}, want: pki.DecideNothing, code: pki.CodeK0sRenews},
		// A Secret copy under another issuer CN is kept by k0s: still the next start's input.
		{name: "Secret's server.crt from a foreign CA: leaves", mutate: func(f, s map[string][]byte) {
			g := pkigen.New(pkigen.Options{Now: now})
			ca, err := g.NewCA("other-ca", now.Add(-day), pkigen.Year)
			if err != nil {
				panic(err)
			}
			s["server.crt"], s["server.key"], err = g.Issue(ca, pkigen.Leaf{CN: []string{"kubernetes"}, Server: true, Issued: now.Add(-day), Lifetime: pkigen.Year})
			if err != nil {
				panic(err)
			}
		}, want: pki.DecideLeaves, code: pki.CodeLeaf},
		// k0s ≥ v1.35.1 re-signs apiserver-kubelet-client too; vcluster keeps its first copy.
		{name: "apiserver-kubelet-client due in the Secret: nothing", gen: func(o *pkigen.Options) { o.K0sIssued = now.Add(-400 * day); o.VclusterLifetime = 90 * day },
			want: pki.DecideNothing, code: pki.CodeK0sRenews},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files, secret := k0sAfterBoot(t, c.gen)
			if c.mutate != nil {
				c.mutate(files, secret)
			}
			r := inspect(t, writePKI(t, files), secret)
			r.SetK0s(k0s1351)
			p := pki.BuildPlan(r, pol)
			if p.Decision != c.want {
				t.Fatalf("decision %s, want %s: why %v warnings %v", p.Decision, c.want, p.Why, p.Warnings)
			}
			if _, ok := p.Has(c.code); !ok {
				t.Errorf("no %s finding: why %v warnings %v", c.code, p.Why, p.Warnings)
			}
		})
	}
}

// TestRepair_AsksK0sOnlyWhenItMatters: a healthy start asks nothing (no request more); a start
// whose Secret holds expired k0s leaves asks once, and on k0s ≥ v1.35.1 changes nothing.
func TestRepair_AsksK0sOnlyWhenItMatters(t *testing.T) {
	healthy := genPKI(t, nil)
	files, secret := k0sAfterBoot(t, nil)
	for _, c := range []struct {
		name       string
		files, sec map[string][]byte
		asks       int
		want       pki.Decision
	}{
		// Both Secrets as vcluster's syncer leaves them (kubeconfig servers at 127.0.0.1), so
		// that "nothing" means nothing at all (issue 18 §2 sets them otherwise).
		{"healthy", healthy.Files, syncerLeft(healthy.SecretData()), 0, pki.DecideNothing},
		{"stale Secret on k0s v1.35.1", files, syncerLeft(secret), 1, pki.DecideNothing},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writePKI(t, c.files)
			paths, err := pki.ResolvePaths(dir, "")
			if err != nil {
				t.Fatal(err)
			}
			mem := pkigen.NewMemorySecret("ns", "vc-certs", c.sec)
			asks := 0
			r := &pki.Repair{RenewBefore: 120 * day, Log: quietLog(), Now: func() time.Time { return now },
				Policy: pki.Policy{Strategy: pki.StrategyAuto, MaxClockSkew: 5 * time.Minute},
				Exec:   &pki.Executor{Paths: paths, Secret: pki.SecretRef{Namespace: "ns", Name: "vc-certs"}, Keep: 5, Secrets: mem, Log: quietLog()},
				K0s:    func(context.Context) pki.K0s { asks++; return k0s1351 }}
			before := manifest(t, dir)
			out, err := r.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if asks != c.asks || out.Plan.Decision != c.want || out.Applied {
				t.Errorf("asked %d times, decided %s (applied %v); want %d, %s", asks, out.Plan.Decision, out.Applied, c.asks, c.want)
			}
			if !maps.Equal(before, manifest(t, dir)) {
				t.Error("the pki dir changed")
			}
			if got, _ := mem.Get(context.Background()); !maps.EqualFunc(got.Data, c.sec, func(a, b []byte) bool { return string(a) == string(b) }) {
				t.Error("the Secret changed")
			}
		})
	}
}

// syncerLeft is a Secret's data as vcluster's syncer leaves it: every kubeconfig's server at
// https://127.0.0.1:6443 (pkigen writes k0s's https://localhost:6443).
func syncerLeft(data map[string][]byte) map[string][]byte {
	out := maps.Clone(data)
	for k, v := range out {
		if strings.HasSuffix(k, ".conf") {
			out[k] = bytes.ReplaceAll(v, []byte("server: https://localhost:6443\n"), []byte("server: https://127.0.0.1:6443\n"))
		}
	}
	return out
}
