package fleet

import (
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
)

// Workloads is every StatefulSet the informer has seen, by "<namespace>/<name>". A vcluster's
// StatefulSet is named after its release, in the namespace of its <release>-certs Secret.
type Workloads struct {
	mu   sync.RWMutex
	sets map[string]*kube.StatefulSet
}

// NewWorkloads makes an empty set.
func NewWorkloads() *Workloads { return &Workloads{sets: map[string]*kube.StatefulSet{}} }

// Set records a StatefulSet (nil: deleted); it has the signature of kube.StatefulSetHandler.
func (w *Workloads) Set(key string, s *kube.StatefulSet) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s == nil {
		delete(w.sets, key)
		return
	}
	w.sets[key] = s
}

// Get returns the StatefulSet of a vcluster release, or nil.
func (w *Workloads) Get(namespace, release string) *kube.StatefulSet {
	if w == nil {
		return nil
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.sets[namespace+"/"+release]
}

// Workload is what the fleet reads of a vcluster's StatefulSet.
type Workload struct {
	Found bool
	// Guarded: an init container runs `certguard repair`, so a restart renews the k0s leaves.
	Guarded bool
	// RenewBefore is that init container's --renew-before (flag or CERTGUARD_RENEW_BEFORE), or
	// the fallback when it sets none: a restart renews what it judges due, not what this
	// service would.
	RenewBefore time.Duration
	// K0sImage is the k0s image of the pod template ("" when none is recognised); K0sRenews is set
	// when its tag is k0s v1.35.1 or later.
	K0sImage  string
	K0sRenews bool
	Replicas  int64
}

// k0sRenewsSince is the first k0s release that renews leaves under a custom CA itself
// (k0sproject/k0s#6378, commit e9260d20d8).
var k0sRenewsSince = [3]int{1, 35, 1}

// ReadWorkload interprets a StatefulSet (nil: not found) with the service's --renew-before as
// the fallback.
func ReadWorkload(s *kube.StatefulSet, fallback time.Duration) Workload {
	w := Workload{RenewBefore: fallback}
	if s == nil {
		return w
	}
	w.Found, w.Replicas = true, s.Replicas
	for _, c := range s.InitContainers {
		if isCertguardRepair(c) {
			w.Guarded = true
			if d, ok := renewBeforeOf(c); ok {
				w.RenewBefore = d
			}
			break
		}
	}
	for _, c := range append(append([]kube.Container{}, s.InitContainers...), s.Containers...) {
		if repo, tag := splitImage(c.Image); path.Base(repo) == "k0s" {
			w.K0sImage = c.Image
			if v, ok := k0sVersion(tag); ok && !versionBefore(v, k0sRenewsSince) {
				w.K0sRenews = true
			}
			break
		}
	}
	return w
}

// isCertguardRepair: the container runs the certguard binary (its image is a certguard image, or
// its command is /certguard) with the repair command.
func isCertguardRepair(c kube.Container) bool {
	repo, _ := splitImage(c.Image)
	bin := path.Base(repo) == "certguard"
	if len(c.Command) > 0 && path.Base(c.Command[0]) == "certguard" {
		bin = true
	}
	args := append(append([]string{}, c.Command...), c.Args...)
	for _, a := range args {
		if a == "repair" {
			return bin
		}
	}
	// The image's default command is `repair` when none is given (Dockerfile CMD).
	return bin && len(c.Args) == 0 && len(c.Command) <= 1
}

// renewBeforeOf reads --renew-before from the args (either form) or the literal env.
func renewBeforeOf(c kube.Container) (time.Duration, bool) {
	args := append(append([]string{}, c.Command...), c.Args...)
	for i, a := range args {
		var v string
		switch {
		case strings.HasPrefix(a, "--renew-before="), strings.HasPrefix(a, "-renew-before="):
			_, v, _ = strings.Cut(a, "=")
		case (a == "--renew-before" || a == "-renew-before") && i+1 < len(args):
			v = args[i+1]
		default:
			continue
		}
		if d, err := pki.ParseDuration(v); err == nil {
			return d, true
		}
	}
	if v, ok := c.Env["CERTGUARD_RENEW_BEFORE"]; ok {
		if d, err := pki.ParseDuration(v); err == nil {
			return d, true
		}
	}
	return 0, false
}

// splitImage splits "registry:5000/org/k0s:v1.30.2-k0s.0@sha256:…" into repository and tag.
func splitImage(image string) (repo, tag string) {
	image, _, _ = strings.Cut(image, "@")
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[:colon], image[colon+1:]
	}
	return image, ""
}

// k0sVersion reads a k0s image tag ("v1.30.2-k0s.0", "v1.35.1-k0s.0", "1.35.1") as numbers.
func k0sVersion(tag string) ([3]int, bool) {
	var v [3]int
	core, _, _ := strings.Cut(strings.TrimPrefix(tag, "v"), "-")
	core, _, _ = strings.Cut(core, "+")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func versionBefore(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}
