package fleet

import (
	"testing"
	"time"

	"github.com/certguard/certguard/kube"
)

// TestReadWorkload: what the fleet reads of a StatefulSet; every expectation is written by hand
// from the StatefulSets vcluster v0.19–v0.25 render (charts/vcluster-values) and k0s's tags.
func TestReadWorkload(t *testing.T) {
	const day = 24 * time.Hour
	fallback := 120 * day
	k0s := func(tag string) kube.Container {
		return kube.Container{Name: "vcluster", Image: "ghcr.io/loft-sh/k0s:" + tag, Command: []string{"cp", "/usr/local/bin/k0s", "/binaries/k0s"}}
	}
	plugin := func(args ...string) kube.Container {
		return kube.Container{Name: "certguard", Image: "ghcr.io/certguard/certguard:v0.2.0", Command: []string{"/certguard"}, Args: args}
	}
	cases := []struct {
		name    string
		sts     *kube.StatefulSet
		guarded bool
		renew   time.Duration
		renews  bool
	}{
		{"no StatefulSet", nil, false, fallback, false},
		{"v0.25 plugin, --renew-before=30d", &kube.StatefulSet{Replicas: 1, InitContainers: []kube.Container{plugin("repair", "--renew-before=30d"), k0s("v1.30.2-k0s.0")}}, true, 30 * day, false},
		{"flag and value apart", &kube.StatefulSet{Replicas: 1, InitContainers: []kube.Container{plugin("repair", "--renew-before", "45d")}}, true, 45 * day, false},
		{"env instead of a flag", &kube.StatefulSet{Replicas: 1, InitContainers: []kube.Container{{Image: "registry.local:5000/ops/certguard@sha256:abc", Env: map[string]string{"CERTGUARD_RENEW_BEFORE": "60d"}}}}, true, 60 * day, false},
		{"image's default command (repair)", &kube.StatefulSet{Replicas: 1, InitContainers: []kube.Container{{Image: "ghcr.io/certguard/certguard:v0.2.0"}}}, true, fallback, false},
		{"certguard check is not a repair", &kube.StatefulSet{Replicas: 1, InitContainers: []kube.Container{plugin("check")}}, false, fallback, false},
		{"certguard as a sidecar container only", &kube.StatefulSet{Replicas: 1, Containers: []kube.Container{plugin("watch")}}, false, fallback, false},
		{"k0s v1.35.0: renews nothing itself", &kube.StatefulSet{Replicas: 1, InitContainers: []kube.Container{plugin("repair"), k0s("v1.35.0-k0s.0")}}, true, fallback, false},
		{"k0s v1.35.1 as v0.19's main container", &kube.StatefulSet{Replicas: 1, Containers: []kube.Container{{Name: "vcluster", Image: "k0sproject/k0s:v1.35.1-k0s.0"}}}, false, fallback, true},
		{"k0s v1.36.2 with a registry port", &kube.StatefulSet{Replicas: 1, InitContainers: []kube.Container{k0s("v1.36.2-k0s.1"), {Image: "reg:5000/k0s:v1.36.2-k0s.1"}}}, false, fallback, true},
		{"k0s by digest only: version unknown", &kube.StatefulSet{Replicas: 1, InitContainers: []kube.Container{{Image: "k0sproject/k0s@sha256:0123"}}}, false, fallback, false},
		{"an image named k0s-tools is not k0s", &kube.StatefulSet{Replicas: 1, InitContainers: []kube.Container{{Image: "example/k0s-tools:v9.9.9"}}}, false, fallback, false},
		{"unparseable --renew-before: the fallback", &kube.StatefulSet{Replicas: 1, InitContainers: []kube.Container{plugin("repair", "--renew-before=soon")}}, true, fallback, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := ReadWorkload(c.sts, fallback)
			if w.Found != (c.sts != nil) || w.Guarded != c.guarded || w.RenewBefore != c.renew || w.K0sRenews != c.renews {
				t.Errorf("got found=%v guarded=%v renewBefore=%s k0sRenews=%v, want guarded=%v renewBefore=%s k0sRenews=%v",
					w.Found, w.Guarded, w.RenewBefore, w.K0sRenews, c.guarded, c.renew, c.renews)
			}
		})
	}
}
