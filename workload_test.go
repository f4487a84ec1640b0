package main

import (
	"testing"
	"time"

	fleetsvc "github.com/certguard/certguard/fleet"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/restart"
)

// TestReadWorkload: what the fleet reads of a StatefulSet, with the binary's own repair flag set
// and env parsing (parseInitContainer); every expectation is written by hand from the
// StatefulSets vcluster v0.19–v0.25 render (charts/vcluster-values) and k0s's tags. Blocker ""
// means a restart runs a leaf repair of <release>-certs.
func TestReadWorkload(t *testing.T) {
	const day = 24 * time.Hour
	binDefault := 120 * day // repair's --renew-before default
	k0s := func(tag string) kube.Container {
		return kube.Container{Name: "vcluster", Image: "ghcr.io/loft-sh/k0s:" + tag, Command: []string{"cp", "/usr/local/bin/k0s", "/binaries/k0s"}}
	}
	plugin := func(args ...string) kube.Container {
		return kube.Container{Name: "certguard", Image: "ghcr.io/certguard/certguard:v0.2.0", Command: []string{"/certguard"}, Args: args}
	}
	sts := func(cs ...kube.Container) *kube.StatefulSet {
		return &kube.StatefulSet{Namespace: "team", Name: "vc", Replicas: 1, InitContainers: cs}
	}
	withEnv := func(c kube.Container, kv ...string) kube.Container {
		c.Env = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			c.Env[kv[i]] = kv[i+1]
		}
		return c
	}
	cases := []struct {
		name    string
		sts     *kube.StatefulSet
		guarded bool
		renew   time.Duration
		renews  bool
		blocker restart.Code
	}{
		{"no StatefulSet", nil, false, 0, false, restart.NoStatefulSet},
		{"v0.25 plugin, --renew-before=30d", sts(plugin("repair", "--renew-before=30d"), k0s("v1.30.2-k0s.0")), true, 30 * day, false, ""},
		{"flag and value apart", sts(plugin("repair", "--renew-before", "45d")), true, 45 * day, false, ""},
		{"env instead of a flag", sts(kube.Container{Image: "registry.local:5000/ops/certguard@sha256:abc", Env: map[string]string{"CERTGUARD_RENEW_BEFORE": "60d"}}), true, 60 * day, false, ""},
		{"a flag wins over env", sts(withEnv(plugin("repair", "--renew-before=20d"), "CERTGUARD_RENEW_BEFORE", "60d")), true, 20 * day, false, ""},
		{"image's default command (repair)", sts(kube.Container{Image: "ghcr.io/certguard/certguard:v0.2.0"}), true, binDefault, false, ""},
		{"certguard check is not a repair", sts(plugin("check")), false, 0, false, restart.NoInitContainer},
		{"certguard as a sidecar container only", &kube.StatefulSet{Name: "vc", Replicas: 1, Containers: []kube.Container{plugin("watch")}}, false, 0, false, restart.NoInitContainer},
		{"k0s v1.35.0: renews nothing itself", sts(plugin("repair"), k0s("v1.35.0-k0s.0")), true, binDefault, false, ""},
		{"k0s v1.35.1 as v0.19's main container", &kube.StatefulSet{Name: "vc", Replicas: 1, Containers: []kube.Container{{Name: "vcluster", Image: "k0sproject/k0s:v1.35.1-k0s.0"}}}, false, 0, true, restart.K0sRenews},
		{"k0s v1.36.2 with a registry port", sts(k0s("v1.36.2-k0s.1"), kube.Container{Image: "reg:5000/k0s:v1.36.2-k0s.1"}), false, 0, true, restart.K0sRenews},
		{"k0s by digest only: version unknown", sts(plugin("repair"), kube.Container{Image: "k0sproject/k0s@sha256:0123"}), true, binDefault, false, ""},
		{"an image named k0s-tools is not k0s", sts(plugin("repair"), kube.Container{Image: "example/k0s-tools:v9.9.9"}), true, binDefault, false, ""},
		// What the init container would refuse to start with is what the fleet cannot know.
		{"unparseable --renew-before", sts(plugin("repair", "--renew-before=soon")), true, 0, false, restart.SettingsUnknown},
		{"an unknown flag", sts(plugin("repair", "--renew-befor=30d")), true, 0, false, restart.SettingsUnknown},
		{"--renew-before beyond the leaves' lifetime", sts(plugin("repair", "--renew-before=400d")), true, 0, false, restart.SettingsUnknown},
		{"--strategy full", sts(plugin("repair", "--strategy", "full")), true, 0, false, restart.StrategyFull},
		{"CERTGUARD_STRATEGY=full", sts(withEnv(plugin("repair"), "CERTGUARD_STRATEGY", "full")), true, 0, false, restart.StrategyFull},
		{"--strategy leaves renews", sts(plugin("repair", "--strategy=leaves")), true, binDefault, false, ""},
		{"--dry-run", sts(plugin("repair", "--dry-run")), true, 0, false, restart.DryRun},
		{"CERTGUARD_DRY_RUN=true", sts(withEnv(plugin("repair"), "CERTGUARD_DRY_RUN", "true")), true, 0, false, restart.DryRun},
		{"renew-before from valueFrom", sts(func() kube.Container {
			c := plugin("repair")
			c.ValueFrom = []string{"CERTGUARD_RENEW_BEFORE"}
			return c
		}()), true, 0, false, restart.SettingsUnknown},
		{"envFrom a ConfigMap", sts(func() kube.Container { c := plugin("repair"); c.EnvFrom = true; return c }()), true, 0, false, restart.SettingsUnknown},
		{"valueFrom of an unrelated variable is fine", sts(func() kube.Container { c := plugin("repair"); c.ValueFrom = []string{"POD_IP"}; return c }()), true, binDefault, false, ""},
		{"an argument expanding a variable", sts(plugin("repair", "--renew-before=$(RB)")), true, 0, false, restart.SettingsUnknown},
		{"another Secret", sts(plugin("repair", "--secret-name=other-certs")), true, 0, false, restart.OtherSecret},
		{"another release", sts(plugin("repair", "--vcluster-name=other")), true, 0, false, restart.OtherSecret},
		{"its own release named", sts(plugin("repair", "--vcluster-name=vc")), true, binDefault, false, ""},
		{"another namespace", sts(plugin("repair", "--namespace=elsewhere")), true, 0, false, restart.OtherSecret},
		{"another pki dir", sts(plugin("repair", "--pki-dir=/var/lib/k0s/pki")), true, 0, false, restart.OtherPKIDir},
		{"the pki dir spelt with a slash", sts(plugin("repair", "--pki-dir=/data/k0s/pki/")), true, binDefault, false, ""},
		{"scaled to 0", &kube.StatefulSet{Name: "vc", Replicas: 0, InitContainers: []kube.Container{plugin("repair")}}, true, 0, false, restart.ScaledToZero},
		{"three replicas", &kube.StatefulSet{Name: "vc", Replicas: 3, InitContainers: []kube.Container{plugin("repair")}}, true, 0, false, restart.MultiReplica},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := fleetsvc.ReadWorkload(c.sts, "team", "vc", parseInitContainer)
			if w.Found != (c.sts != nil) || w.Guarded != c.guarded || w.K0sRenews != c.renews || w.Blocker != c.blocker {
				t.Errorf("got found=%v guarded=%v k0sRenews=%v blocker=%q (%s), want guarded=%v k0sRenews=%v blocker=%q",
					w.Found, w.Guarded, w.K0sRenews, w.Blocker, w.Detail, c.guarded, c.renews, c.blocker)
			}
			if c.blocker == "" && w.Init.RenewBefore != c.renew {
				t.Errorf("renew-before %s, want %s", w.Init.RenewBefore, c.renew)
			}
		})
	}
}

// TestParseInitContainerIgnoresOwnEnv: the fleet's own CERTGUARD_* settings never leak into what
// it reads of an init container (fleet serve itself runs with CERTGUARD_DRY_RUN in dry-run mode).
func TestParseInitContainerIgnoresOwnEnv(t *testing.T) {
	t.Setenv("CERTGUARD_DRY_RUN", "true")
	t.Setenv("CERTGUARD_RENEW_BEFORE", "7d")
	set, err := parseInitContainer(nil, nil)
	if err != nil || set.DryRun || set.RenewBefore != 120*24*time.Hour {
		t.Fatalf("parseInitContainer(nil, nil) = %+v, %v; want the binary's defaults", set, err)
	}
}
