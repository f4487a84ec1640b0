package fleet

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/restart"
)

// Workloads is every StatefulSet the informer has seen, by "<namespace>/<name>". A vcluster's
// StatefulSet is named after its release, in the namespace of its <release>-certs Secret, or
// carries the release label.
type Workloads struct {
	mu   sync.RWMutex
	sets map[string]*kube.StatefulSet
	// read memoizes ReadWorkload by vcluster: the informer replaces a StatefulSet whole when it
	// changes, so a Workload read from the same one is the same (measured: reading 300 init
	// containers with the binary's flag parsing was 10 ms of every plan).
	// By StatefulSet key, then release; dropped with the StatefulSet's entry in Set.
	read map[string]map[string]Workload
}

// NewWorkloads makes an empty set.
func NewWorkloads() *Workloads { return &Workloads{sets: map[string]*kube.StatefulSet{}} }

// Set records a StatefulSet (nil: deleted); it has the signature of kube.StatefulSetHandler.
func (w *Workloads) Set(key string, s *kube.StatefulSet) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.read, key)
	if s == nil {
		delete(w.sets, key)
		return
	}
	w.sets[key] = s
}

// Get returns the StatefulSet of a vcluster release: the one named after it, else the one in its
// namespace labelled with it (the first by name, so that the answer never depends on map order);
// nil when there is none.
func (w *Workloads) Get(namespace, release string) *kube.StatefulSet {
	if w == nil {
		return nil
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if s := w.sets[namespace+"/"+release]; s != nil {
		return s
	}
	var found *kube.StatefulSet
	for _, s := range w.sets {
		if s.Namespace == namespace && s.Release == release && (found == nil || s.Name < found.Name) {
			found = s
		}
	}
	return found
}

// InitSettings is what certguard's init container will do at the next start, read from its args
// and env with the binary's own flag set and env parsing (main's repair command).
type InitSettings struct {
	RenewBefore  time.Duration
	Strategy     pki.Strategy
	DryRun       bool
	PKIDir       string
	SecretName   string // "" = <vcluster-name>-certs
	VclusterName string // "" = from the pod name
	Namespace    string // "" = the pod's own
}

// InitParser parses `certguard repair`'s arguments (after the command) and its literal
// environment exactly as the binary does; an error is what the binary would refuse to start with.
type InitParser func(args []string, env map[string]string) (InitSettings, error)

// Workload is what the fleet reads of a vcluster's StatefulSet.
type Workload struct {
	Found    bool
	Name     string // the StatefulSet's name: its pod is <Name>-0
	Replicas int64
	// Guarded: an init container runs `certguard repair`, so a restart runs it.
	Guarded bool
	// Init is that init container's settings, when Blocker is not SettingsUnknown.
	Init InitSettings
	// K0sImage is the k0s image of the pod template ("" when none is recognised); K0sRenews is set
	// when its tag is k0s v1.35.1 or later.
	K0sImage  string
	K0sRenews bool
	// RenewNow is the StatefulSet's renew-now annotation ("" when absent).
	RenewNow string
	// Blocker is why a restart would not (only) renew the leaves on the Secret the fleet judged,
	// from the StatefulSet alone; Detail says it for a person.
	Blocker restart.Code
	Detail  string
}

// defaultPKIDir is where vcluster's k0s distro keeps its PKI, and --pki-dir's default.
const defaultPKIDir = "/data/k0s/pki"

// ReadWorkload interprets the StatefulSet of release (nil: not found), reading certguard's init
// container with parse. Every check below is a reason the restart would not be a leaf repair of
// this vcluster's Secret; where a setting cannot be known (a value from elsewhere) it blocks,
// never guesses.
func ReadWorkload(s *kube.StatefulSet, namespace, release string, parse InitParser) Workload {
	w := Workload{}
	block := func(c restart.Code, detail string, args ...any) {
		if w.Blocker == "" {
			w.Blocker, w.Detail = c, fmt.Sprintf(detail, args...)
		}
	}
	if s == nil {
		block(restart.NoStatefulSet, "no StatefulSet %s/%s (by name or release label)", namespace, release)
		return w
	}
	w.Found, w.Name, w.Replicas, w.RenewNow = true, s.Name, s.Replicas, s.RenewNow
	for _, c := range append(slices.Clone(s.InitContainers), s.Containers...) {
		if repo, _ := splitImage(c.Image); path.Base(repo) == "k0s" {
			// The init container's own judgement of the same image (pki.K0sFromImage).
			k, _ := pki.K0sFromImage(c.Image)
			w.K0sImage, w.K0sRenews = c.Image, k.RenewsLeaves
			break
		}
	}
	var initC *kube.Container
	var args []string
	for i, c := range s.InitContainers {
		if a, ok := repairArgs(c); ok {
			initC, args = &s.InitContainers[i], a
			break
		}
	}
	w.Guarded = initC != nil
	switch {
	case w.K0sRenews:
		block(restart.K0sRenews, "%s renews its leaves itself (k0s ≥ v1.35.1)", w.K0sImage)
	case initC == nil:
		block(restart.NoInitContainer, "the StatefulSet has no certguard init container, so a restart would renew nothing")
	case s.Replicas == 0:
		block(restart.ScaledToZero, "the StatefulSet is scaled to 0")
	case s.Replicas > 1:
		block(restart.MultiReplica, "the StatefulSet has %d replicas; only ordinal 0 would be restarted", s.Replicas)
	}
	if initC == nil || w.Blocker != "" {
		return w
	}
	if unknown := unknownSettings(*initC, args); unknown != "" {
		block(restart.SettingsUnknown, "init container %q: %s; the fleet does not guess its settings", initC.Name, unknown)
		return w
	}
	set, err := parse(args, initC.Env)
	if err != nil {
		block(restart.SettingsUnknown, "init container %q would not start: %v", initC.Name, err)
		return w
	}
	w.Init = set
	relOf := set.VclusterName
	if relOf == "" {
		relOf = s.Name // the init container reads its release from its pod name, <sts>-0
	}
	secret := set.SecretName
	if secret == "" {
		secret = relOf + "-certs"
	}
	switch {
	case set.Strategy == pki.StrategyFull:
		block(restart.StrategyFull, "init container %q runs --strategy full: a restart would reset the whole PKI", initC.Name)
	case set.DryRun:
		block(restart.DryRun, "init container %q runs --dry-run: a restart would change nothing", initC.Name)
	case secret != release+"-certs" || (set.Namespace != "" && set.Namespace != namespace):
		block(restart.OtherSecret, "init container %q judges Secret %s, not %s/%s-certs", initC.Name, secret, namespace, release)
	case filepath.Clean(set.PKIDir) != defaultPKIDir:
		block(restart.OtherPKIDir, "init container %q judges %s, not k0s's %s", initC.Name, set.PKIDir, defaultPKIDir)
	}
	return w
}

// repairArgs returns the arguments after `repair` when c runs certguard's repair command: its
// command is the certguard binary, or it has none and its image is certguard's (whose entrypoint
// is /certguard and whose default command is repair, see the Dockerfile).
func repairArgs(c kube.Container) ([]string, bool) {
	repo, _ := splitImage(c.Image)
	argv := slices.Concat(c.Command, c.Args)
	switch {
	case len(c.Command) > 0:
		if path.Base(c.Command[0]) != "certguard" {
			return nil, false
		}
	case path.Base(repo) != "certguard":
		return nil, false
	case len(c.Args) == 0:
		argv = []string{"/certguard", "repair"}
	default:
		argv = slices.Concat([]string{"/certguard"}, c.Args)
	}
	if len(argv) < 2 || argv[1] != "repair" {
		return nil, false
	}
	return argv[2:], true
}

// unknownSettings says why the container's settings cannot be known from its spec, or "".
func unknownSettings(c kube.Container, args []string) string {
	if c.EnvFrom {
		return "envFrom may set CERTGUARD_* variables"
	}
	for _, n := range c.ValueFrom {
		if strings.HasPrefix(n, "CERTGUARD_") {
			return n + " comes from valueFrom"
		}
	}
	for _, a := range args {
		if strings.Contains(a, "$(") {
			return fmt.Sprintf("argument %q expands a variable", a)
		}
	}
	for k, v := range c.Env {
		if strings.HasPrefix(k, "CERTGUARD_") && strings.Contains(v, "$(") {
			return k + " expands a variable"
		}
	}
	return ""
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

// Read is ReadWorkload of the vcluster's StatefulSet, memoized until that StatefulSet changes.
func (w *Workloads) Read(namespace, release string, parse InitParser) Workload {
	s := w.Get(namespace, release)
	if s == nil {
		return ReadWorkload(nil, namespace, release, parse)
	}
	key := s.Namespace + "/" + s.Name
	w.mu.RLock()
	wl, ok := w.read[key][release]
	same := w.sets[key] == s
	w.mu.RUnlock()
	if ok && same {
		return wl
	}
	wl = ReadWorkload(s, namespace, release, parse)
	w.mu.Lock()
	if w.sets[key] == s { // not replaced meanwhile
		if w.read == nil {
			w.read = map[string]map[string]Workload{}
		}
		if w.read[key] == nil {
			w.read[key] = map[string]Workload{}
		}
		w.read[key][release] = wl
	}
	w.mu.Unlock()
	return wl
}
