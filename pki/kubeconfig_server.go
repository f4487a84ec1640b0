package pki

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdlatest "k8s.io/client-go/tools/clientcmd/api/latest"
)

// The kubeconfigs in the Secret and vcluster's syncer (v0.19.2–v0.25, pkg/certs/ensure.go).
//
// At every start, after writing the Secret over the disk, EnsureCerts runs
// updateKubeconfigInSecret: it decodes every Secret key ending in ".conf" with client-go's
// clientcmd latest codec (a key that does not decode fails the start), and when any cluster's
// server is not the literal SyncerServer it rewrites it, deletes apiserver.{crt,key} and calls
// CreatePKIAssets to make them again. That walk ranges over a Go map of the three CAs and stops at
// the first error; an etcd leaf k0s re-issued (without vcluster's etcd SANs) is such an error, so
// when the etcd CA comes first apiserver.crt is never written, EnsureCerts fails on reading it,
// and Initialize retries the whole start 5 s later (for at most 2 minutes). k0s writes
// K0sServer into ccm.conf and konnectivity.conf (and admin.conf and scheduler.conf), and the
// syncer stores k0s's copies in the Secret after a start that found them missing, such as the
// start after a leaf repair: the restart after it pays the retries.
//
// certguard's init container runs before the syncer at every start, so it sets those servers to
// SyncerServer first, journaled and backed up like every Secret change; updateKubeconfigInSecret
// then finds nothing to change and EnsureCerts returns before deleting anything. Only the one
// field the syncer would rewrite anyway is changed, as a text edit of that one line, and the
// result must decode to exactly the original config with that field changed. On any doubt the
// kubeconfig is left as it is and a warning says why: a kubeconfig certguard broke would turn a
// 5 s delay into a failed start.

// SyncerServer is the server vcluster's updateKubeconfigToLocalhost writes (and compares with).
const SyncerServer = "https://127.0.0.1:6443"

// K0sServer is the server k0s (v1.30, as vcluster v0.20–v0.25 run it) writes into its
// kubeconfigs: certguard rewrites this one only.
const K0sServer = "https://localhost:6443"

// ActionSetConfServer sets the cluster server of one *.conf key of the Secret to SyncerServer.
// Keys holds that key (also in Path, as the journal's identity); Data is the new value, which the
// backup keeps under conf/<key>, while secret.json keeps the old one. It is optional: when it
// cannot be done the run goes on and says so, since the syncer would rewrite the field itself.
const ActionSetConfServer Action = "set-conf-server"

const (
	// CodeConfServer: a *.conf in the Secret is set to SyncerServer, so that the syncer does not
	// regenerate apiserver.crt and retry.
	CodeConfServer Code = "conf-server"
	// CodeConfServerKept: a *.conf in the Secret would make the syncer regenerate apiserver.crt
	// (and maybe retry), but certguard is not sure enough to change it.
	CodeConfServerKept Code = "conf-server-kept"
)

// confDir holds the new values of set-conf-server steps in a backup.
const confDir = "conf"

// BuildPlan decides what to do about a Report (see buildPlan), then adds what keeps vcluster's
// syncer from regenerating its certificates at this start: the *.conf servers of the Secret.
func BuildPlan(r *Report, pol Policy) Plan {
	p := buildPlan(r, pol)
	if n, partial := r.k0sPartial(); partial && p.Decision == DecideLeaves {
		p.Why = append([]Finding{{Code: CodeK0sPartial, Text: fmt.Sprintf("Secret %s holds %d of the 14 k0s files: vcluster fails every "+
			"start until it holds all or none, so all 14 are removed and k0s re-issues them", pol.Secret.Ref(), n)}}, p.Why...)
	}
	planConfServers(r, &p)
	return p
}

// planConfServers adds a set-conf-server step for every *.conf of the Secret that would make the
// syncer regenerate its certificates, when the plan keeps the Secret (nothing to do, or a leaf
// repair: not the keys it removes).
func planConfServers(r *Report, p *Plan) {
	if !r.secret.Present || (p.Decision != DecideNothing && p.Decision != DecideLeaves) {
		return
	}
	// A repair held back for the clock changes nothing at all: on any doubt, nothing.
	for _, c := range []Code{CodeFirstStart, CodeNoClusterCA, CodeK0sOwnPKI, CodeRepairHeld} {
		if _, ok := p.Has(c); ok {
			return
		}
	}
	removed := map[string]bool{}
	for _, st := range p.Steps {
		if st.Action == ActionRemoveSecretKeys {
			for _, k := range st.Keys {
				removed[k] = true
			}
		}
	}
	kept := func(key, why string) {
		p.Warnings = append(p.Warnings, Finding{Code: CodeConfServerKept, Path: key, Text: fmt.Sprintf("%s in Secret %s: %s; left as it is, "+
			"so vcluster's syncer regenerates apiserver.crt at this start (and may retry every 5 s)", key, p.Secret.Ref(), why)})
	}
	for _, path := range paths(r.secret) {
		key := SecretKey(path)
		if key == "" || FormatOf(key) != FormatKubeconfig || removed[key] {
			continue
		}
		data, ok := r.secret.Files[path]
		if !ok {
			kept(key, "the value is empty or unreadable")
			continue
		}
		next, changed, why := SetConfServer(data)
		switch {
		case why != "":
			kept(key, why)
		case changed:
			p.Why = append(p.Why, Finding{Code: CodeConfServer, Path: key, Text: fmt.Sprintf("%s in Secret %s points at %s: set to %s, "+
				"what vcluster's syncer expects, so that it does not regenerate apiserver.crt and retry", key, p.Secret.Ref(), K0sServer, SyncerServer)})
			p.Steps = append(p.Steps, Step{Action: ActionSetConfServer, Path: key, Keys: []string{key}, Data: next, SHA256: digest(next),
				Why: "vcluster's syncer would rewrite this field itself, after deleting apiserver.crt"})
		}
	}
}

// serverLine is a block-style YAML line holding the server field with K0sServer as its value,
// plain or quoted, as k0s and client-go write it.
var serverLine = regexp.MustCompile(`(?m)^([ \t]*(?:-[ \t]+)?server:[ \t]*)(?:https://localhost:6443|"https://localhost:6443"|'https://localhost:6443')([ \t]*)$`)

// SetConfServer returns a kubeconfig's bytes with its one cluster's server set to SyncerServer.
// changed is false when the syncer would change nothing (every server is SyncerServer, or there
// is no cluster). why says, in words for the warning, why certguard does not change it: it does
// not decode as the syncer decodes it, it has several clusters, its server is another one than
// K0sServer, or the field is not one plain YAML line. The new bytes decode to exactly the old
// config with that one field changed.
func SetConfServer(data []byte) (next []byte, changed bool, why string) {
	old, err := decodeConf(data)
	if err != nil {
		return nil, false, "it does not decode as a kubeconfig (vcluster's syncer fails the start on it too)"
	}
	// updateKubeconfigToLocalhost skips nil clusters (v0.22+) and changes any other server.
	var name string
	trigger := false
	for n, c := range old.Clusters {
		name = n
		trigger = trigger || (c != nil && c.Server != SyncerServer)
	}
	if !trigger {
		return nil, false, ""
	}
	if len(old.Clusters) != 1 {
		return nil, false, fmt.Sprintf("it has %d clusters", len(old.Clusters))
	}
	if s := old.Clusters[name].Server; s != K0sServer {
		return nil, false, fmt.Sprintf("its server is %q, not k0s's %s", s, K0sServer)
	}
	if m := serverLine.FindAllIndex(data, -1); len(m) != 1 {
		return nil, false, fmt.Sprintf("its server is not written as one plain YAML line (%d found)", len(m))
	}
	next = serverLine.ReplaceAll(data, []byte("${1}"+SyncerServer+"${2}"))
	got, err := decodeConf(next)
	if err != nil {
		return nil, false, "it would not decode after the change"
	}
	want := old.DeepCopy()
	want.Clusters[name].Server = SyncerServer
	if !reflect.DeepEqual(got, want) {
		return nil, false, "the change would touch more than the server field"
	}
	return next, true, ""
}

// decodeConf decodes a kubeconfig exactly as the syncer does (runtime.DecodeInto with client-go's
// clientcmd latest codec).
func decodeConf(data []byte) (*clientcmdapi.Config, error) {
	c := &clientcmdapi.Config{}
	if err := runtime.DecodeInto(clientcmdlatest.Codec, data, c); err != nil {
		return nil, err
	}
	return c, nil
}

// confSet returns the keys and values of a plan's set-conf-server steps.
func confSet(steps []Step) map[string][]byte {
	set := map[string][]byte{}
	for _, st := range steps {
		if st.Action == ActionSetConfServer {
			set[st.Keys[0]] = st.Data
		}
	}
	return set
}

// dropRefusedConfSteps asks the API server to check the set-conf-server steps (one dry run of
// their one write) and leaves them out when it refuses: they are optional, and a refusal must
// never block a start.
func (x *Executor) dropRefusedConfSteps(ctx context.Context, p Plan, s *Secret) Plan {
	set := confSet(p.Steps)
	if s == nil || len(set) == 0 {
		return p
	}
	if err := x.Secrets.SetKeys(ctx, s, set, true); err != nil {
		x.Log.Warn("the API server refuses to set the kubeconfigs' server (checked as a dry run): left as they are",
			"keys", len(set), "code", CodeConfServerKept, "err", err)
		p.Steps = slices.DeleteFunc(slices.Clone(p.Steps), func(st Step) bool { return st.Action == ActionSetConfServer })
	}
	return p
}

// setConfServers runs a set-conf-server step together with the plan's other ones, in one write:
// the first of them writes every key that still needs it, and the later ones find their key
// done. It reads the Secret again (an earlier step of the plan may have written it) and writes a
// key only while it still holds the bytes the backup recorded. Whatever goes wrong is logged
// and the run goes on: the syncer rewrites the fields itself, at the price of a regenerated
// apiserver.crt.
func (x *Executor) setConfServers(ctx context.Context, st Step, all []Step, saved *Secret, allow bool, notCalledFor error) (bool, error) {
	cur, err := x.Secrets.Get(ctx)
	if err != nil || cur == nil {
		x.Log.Warn("could not read the Secret again to set its kubeconfigs' server: left as they are", "code", CodeConfServerKept, "err", err)
		return false, nil
	}
	set := map[string][]byte{}
	for key, next := range confSet(all) {
		v, ok := cur.Data[key]
		switch {
		case !ok || bytes.Equal(v, next):
		case saved == nil || !bytes.Equal(v, saved.Data[key]):
			if key == st.Keys[0] {
				x.Log.Warn("the kubeconfig changed since it was planned: left as it is", "key", key, "code", CodeConfServerKept)
			}
		default:
			set[key] = next
		}
	}
	if _, ok := set[st.Keys[0]]; !ok {
		return false, nil
	}
	if !allow {
		return false, notCalledFor
	}
	if err := x.Secrets.SetKeys(ctx, cur, set, false); err != nil {
		x.Log.Warn("could not set the kubeconfigs' server: left as they are, vcluster's syncer rewrites them", "keys", len(set),
			"code", CodeConfServerKept, "err", err)
		return false, nil
	}
	return true, nil
}

// validConfStep checks a journaled set-conf-server step: one *.conf key, named in Path too.
func validConfStep(st Step) bool {
	return len(st.Keys) == 1 && st.Path == st.Keys[0] && FormatOf(st.Path) == FormatKubeconfig && !strings.ContainsAny(st.Path, `/\`) &&
		!strings.HasPrefix(st.Path, ".")
}

// onlyConfSteps reports whether every step of p is a set-conf-server step.
func onlyConfSteps(p Plan) bool {
	for _, st := range p.Steps {
		if st.Action != ActionSetConfServer {
			return false
		}
	}
	return true
}

// applyConfSteps applies a plan of set-conf-server steps alone, backed up and journaled like
// every Secret change, but optional: a backup that cannot be written, or a run that cannot
// finish, is logged and the start goes on, because vcluster's syncer rewrites these fields
// itself. Only the failpoint (a simulated kill) is passed on.
func (x *Executor) applyConfSteps(ctx context.Context, p Plan, s *Secret) (string, error) {
	var killed error
	if fp := x.Failpoint; fp != nil {
		x.Failpoint = func(name string) error { killed = fp(name); return killed }
		defer func() { x.Failpoint = fp }()
	}
	dir, err := x.backup(p, s)
	if killed != nil {
		return "", killed
	}
	if err != nil {
		x.Log.Warn("could not back up the Secret to set its kubeconfigs' server: left as they are", "code", CodeConfServerKept, "err", err)
		return "", nil
	}
	x.Log.Info("backup written", "dir", dir)
	if err := x.fail("after-backup"); err != nil {
		return dir, err
	}
	if err := x.run(ctx, dir, p, s, true); err != nil {
		if killed != nil {
			return dir, killed
		}
		x.Log.Warn("could not finish setting the kubeconfigs' server: the next start finishes it", "dir", dir, "code", CodeConfServerKept, "err", err)
	}
	return dir, nil
}
