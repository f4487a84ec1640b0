package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/kube/kubetest"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// These tests run the real certguard binary against a real kube-apiserver + etcd, the way the
// init container runs it.

var (
	kenv *kubetest.Env
	bin  string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "certguard-bin-")
	if err == nil {
		bin, err = kubetest.BuildCertguard(dir)
	}
	if err == nil {
		kenv, err = kubetest.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = kenv.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

const day = 24 * time.Hour

// vc is one virtual cluster under test: a pki dir on "the volume", its Secret, and a user.
type vc struct {
	t          *testing.T
	ns, user   string
	kubeconfig string
	dir        string // the pki dir
	pki        *pkigen.PKI
	before     map[string]string
	data       map[string][]byte
}

func newVC(t *testing.T, opts pkigen.Options, withSecret bool) *vc {
	t.Helper()
	ctx := context.Background()
	ns, err := kenv.Namespace(ctx, "vc")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pkigen.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	v := &vc{t: t, ns: ns, pki: p, dir: filepath.Join(t.TempDir(), "data", "k0s", "pki")}
	if err := pkigen.WriteDir(v.dir, p.Files); err != nil {
		t.Fatal(err)
	}
	if withSecret {
		v.data = p.SecretData()
		if _, err := kenv.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "vc-certs"}, Data: v.data}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	v.before = manifest(t, v.dir)
	v.setUser("system:masters")
	return v
}

func (v *vc) setUser(groups ...string) {
	v.user = fmt.Sprintf("certguard-%s-%d", v.ns, time.Now().UnixNano())
	kc, err := kenv.Kubeconfig(v.t.TempDir(), v.user, groups...)
	if err != nil {
		v.t.Fatal(err)
	}
	v.kubeconfig = kc
}

// repair runs `certguard repair` for this vcluster and returns exit code, stdout, stderr.
func (v *vc) run(cmd string, extra ...string) (int, string, string) {
	v.t.Helper()
	args := append([]string{cmd, "--pki-dir", v.dir, "--namespace", v.ns, "--kubeconfig", v.kubeconfig,
		"--pod-name", "vc-0", "--api-timeout", "3s"}, extra...)
	return runBin(v.t, nil, args...)
}

func runBin(t *testing.T, envv []string, args ...string) (int, string, string) {
	t.Helper()
	c := exec.Command(bin, args...)
	c.Env = append(os.Environ(), envv...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	out := stdout.String() + stderr.String()
	if strings.Contains(out, "PRIVATE KEY") {
		t.Fatalf("private key material in the output of %v", args)
	}
	return code, stdout.String(), stderr.String()
}

// repairJSON runs `repair -o json`, requires exit 0 and the decision, and returns the outcome.
func (v *vc) repairJSON(want pki.Decision) (out struct {
	Plan    pki.Plan
	Backup  string
	Applied bool
}) {
	v.t.Helper()
	code, stdout, stderr := v.run("repair", "-o", "json")
	if code != 0 {
		v.t.Fatalf("exit %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || out.Plan.Decision != want {
		v.t.Fatalf("decision %q, want %q (%v): %s", out.Plan.Decision, want, err, stdout)
	}
	return out
}

// repairCodes runs `repair -o json` and requires exit 0, the decision, whether it applied (wrote
// anything), and a finding of each code; it returns the plan.
func (v *vc) repairCodes(want pki.Decision, applied bool, codes ...pki.Code) pki.Plan {
	v.t.Helper()
	out := v.repairJSON(want)
	if out.Applied != applied {
		v.t.Fatalf("applied %v, want %v: %+v", out.Applied, applied, out.Plan)
	}
	for _, c := range codes {
		if _, ok := out.Plan.Has(c); !ok {
			v.t.Fatalf("no %s finding in %+v", c, append(out.Plan.Why, out.Plan.Warnings...))
		}
	}
	return out.Plan
}

func (v *vc) secret() map[string][]byte {
	s, err := kenv.Client.CoreV1().Secrets(v.ns).Get(context.Background(), "vc-certs", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		v.t.Fatal(err)
	}
	return s.Data
}

func (v *vc) requests() []string {
	reqs, err := kenv.Requests(v.user)
	if err != nil {
		v.t.Fatal(err)
	}
	var out []string
	for _, r := range reqs {
		res := ""
		if r.ObjectRef != nil {
			res = r.ObjectRef.Resource
		}
		out = append(out, r.Verb+" "+res)
	}
	return out
}

func (v *vc) assertUnchanged() {
	v.t.Helper()
	if !maps.Equal(manifest(v.t, v.dir), v.before) {
		v.t.Error("the pki dir changed")
	}
	if v.data != nil && !maps.EqualFunc(v.secret(), v.data, bytes.Equal) {
		v.t.Error("the Secret changed")
	}
	if _, err := os.Stat(v.dir + ".old"); !os.IsNotExist(err) {
		v.t.Error("a backup dir was created")
	}
}

// manifest is the SHA-256 of every file under dir, by relative path.
func manifest(t testing.TB, dir string) map[string]string {
	t.Helper()
	m, err := pkigentest.Manifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func expired(now time.Time) pkigen.Options {
	return pkigen.Options{Now: now, K0sIssued: now.Add(-400 * day)}
}

func TestRepairExpiredLeaves(t *testing.T) {
	v := newVC(t, expired(time.Now()), true)
	code, _, stderr := v.run("repair")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	after := manifest(t, v.dir)
	for p, sum := range v.before {
		if slices.Contains(pki.K0sLeafFiles, p) {
			if _, ok := after[p]; ok {
				t.Errorf("%s still on disk", p)
			}
		} else if after[p] != sum {
			t.Errorf("%s changed or vanished", p)
		}
	}
	for _, p := range []string{"ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "etcd/ca.key", "apiserver.crt", "etcd/healthcheck-client.crt"} {
		if after[p] == "" {
			t.Errorf("%s must be kept", p)
		}
	}
	sec := v.secret()
	for k, b := range v.data {
		_, kept := sec[k]
		if strings.HasSuffix(k, ".conf") {
			// The kubeconfigs the repair keeps get the server vcluster's syncer expects.
			b = bytes.ReplaceAll(b, []byte("server: "+pki.K0sServer+"\n"), []byte("server: "+pki.SyncerServer+"\n"))
		}
		if slices.Contains(pki.K0sLeafFiles, k) == kept || (kept && !bytes.Equal(sec[k], b)) {
			t.Errorf("Secret key %s: kept %v", k, kept)
		}
	}
	backups, _ := filepath.Glob(filepath.Join(v.dir+".old", "*", "pki"))
	if len(backups) != 1 {
		t.Fatalf("backups %v", backups)
	}
	saved := manifest(t, backups[0])
	for _, p := range pki.K0sLeafFiles {
		if saved[p] != v.before[p] {
			t.Errorf("%s not in the backup", p)
		}
	}
	// The Event on the pod says what happened.
	evs, _ := kenv.Client.CoreV1().Events(v.ns).List(context.Background(), metav1.ListOptions{})
	if len(evs.Items) != 1 || evs.Items[0].Reason != "CertificatesRepaired" || evs.Items[0].InvolvedObject.Name != "vc-0" {
		t.Errorf("events %+v", evs.Items)
	}
	// A second run is a no-op: one GET, no write.
	v.setUser("system:masters")
	snap := manifest(t, filepath.Dir(v.dir))
	if code, _, stderr := v.run("repair"); code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	if got := v.requests(); !slices.Equal(got, []string{"get secrets"}) {
		t.Errorf("second run made %v", got)
	}
	if !maps.Equal(snap, manifest(t, filepath.Dir(v.dir))) {
		t.Error("the second run changed files")
	}
}

func TestRepairExpiredCAResetsEverything(t *testing.T) {
	now := time.Now()
	v := newVC(t, pkigen.Options{Now: now, CAIssued: now.Add(-10*pkigen.Year - day), K0sIssued: now.Add(-400 * day)}, true)
	out := v.repairJSON(pki.DecideFull)
	if out.Plan.Breaks == "" {
		t.Fatal("the full plan does not say what it breaks")
	}
	// The new pki dir holds only the service-account pair, byte for byte: tokens stay valid.
	if got, want := manifest(t, v.dir), map[string]string{"sa.key": v.before["sa.key"], "sa.pub": v.before["sa.pub"]}; !maps.Equal(got, want) {
		t.Errorf("pki dir after the reset holds %v, want only sa.key and sa.pub as they were", slices.Sorted(maps.Keys(got)))
	}
	if !maps.Equal(manifest(t, filepath.Join(out.Backup, "pki")), v.before) || filepath.Dir(out.Backup) != v.dir+".old" {
		t.Errorf("backup %s does not hold the old pki dir", out.Backup)
	}
	if v.secret() != nil {
		t.Error("Secret not deleted")
	}
	var saved pki.Secret
	b, _ := os.ReadFile(filepath.Join(out.Backup, "secret.json"))
	if err := json.Unmarshal(b, &saved); err != nil || !maps.EqualFunc(saved.Data, v.data, bytes.Equal) {
		t.Errorf("secret.json does not hold the Secret's data: %v", err)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	now := time.Now()
	for name, o := range map[string]pkigen.Options{
		"leaves": expired(now),
		"full":   {Now: now, CAIssued: now.Add(-10*pkigen.Year - day), K0sIssued: now.Add(-400 * day)},
	} {
		t.Run(name, func(t *testing.T) {
			v := newVC(t, o, true)
			code, stdout, stderr := v.run("repair", "--dry-run")
			if code != 0 || !strings.Contains(stdout, "decision: "+name) {
				t.Fatalf("exit %d: %s %s", code, stdout, stderr)
			}
			v.assertUnchanged()
			// Expired k0s leaves are judged by the k0s version (k0s ≥ v1.35.1 re-signs them at
			// every start): one GET of the pod reads it from the pod's spec.
			if got := v.requests(); !slices.Equal(got, []string{"get secrets", "get pods"}) {
				t.Errorf("dry run made %v", got)
			}
		})
	}
}

func TestFirstStartChangesNothing(t *testing.T) {
	v := newVC(t, pkigen.Options{}, false)
	os.RemoveAll(filepath.Dir(v.dir))
	v.repairCodes(pki.DecideNothing, false, pki.CodeFirstStart)
	if _, err := os.Stat(filepath.Dir(v.dir)); !os.IsNotExist(err) {
		t.Error("something was created on the volume")
	}
	if v.secret() != nil {
		t.Error("a Secret was created")
	}
}

func TestHealthySecretOnEmptyVolumeIsJudgedFromTheSecret(t *testing.T) {
	v := newVC(t, pkigen.Options{Server: pki.SyncerServer}, true) // as vcluster's syncer leaves it
	os.RemoveAll(v.dir)
	v.repairCodes(pki.DecideNothing, false, pki.CodeSecretOnly, pki.CodeNothingDue)
	if !maps.EqualFunc(v.secret(), v.data, bytes.Equal) {
		t.Error("the Secret changed")
	}
}

// TestEmptyVolumeExpiredSecret is a vcluster on a non-persistent volume (emptyDir): every start
// finds an empty pki dir, and vcluster writes the Secret over it. The Secret's expired k0s leaves
// must go (the old rule, "first start: change nothing", crash-looped it for ever, while check
// said exit 4). Only the Secret changes, after a backup of it.
func TestEmptyVolumeExpiredSecret(t *testing.T) {
	v := newVC(t, expired(time.Now()), true)
	os.RemoveAll(v.dir)
	out := v.repairJSON(pki.DecideLeaves)
	got := v.secret()
	for k := range v.data {
		_, kept := got[k]
		if leaf := slices.Contains(k0sFileNames, k); leaf == kept {
			t.Errorf("Secret key %s: kept=%v", k, kept)
		}
	}
	if _, err := os.Stat(v.dir); !os.IsNotExist(err) {
		t.Error("the pki dir was created: only the Secret may change")
	}
	var saved pki.Secret
	b, _ := os.ReadFile(filepath.Join(out.Backup, "secret.json"))
	if err := json.Unmarshal(b, &saved); err != nil || !maps.EqualFunc(saved.Data, v.data, bytes.Equal) {
		t.Errorf("the backup does not hold the Secret as it was: %v", err)
	}
	if code, _, _ := v.run("check"); code != 0 {
		t.Errorf("check after the repair: exit %d, want 0 (it and repair must agree)", code)
	}
}

// k0sFileNames is vcluster's K0sFiles (pkg/certs/constants.go), written out here rather than
// taken from the code under test.
var k0sFileNames = []string{"admin.crt", "admin.key", "ccm.conf", "ccm.crt", "ccm.key", "k0s-api.crt", "k0s-api.key",
	"konnectivity.conf", "konnectivity.crt", "konnectivity.key", "scheduler.crt", "scheduler.key", "server.crt", "server.key"}

// TestFinalizerKeepsTheSecret: a full reset "deleted" a Secret that a finalizer kept, reported
// success, and vcluster wrote the old CA back at the next start. Deleted means gone: certguard
// waits (bounded), then fails naming the finalizer, with the pki dir not moved; once the
// finalizer is removed, the next run finishes the reset.
func TestFinalizerKeepsTheSecret(t *testing.T) {
	now := time.Now()
	v := newVC(t, pkigen.Options{Now: now, CAIssued: now.Add(-10*pkigen.Year - day), K0sIssued: now.Add(-400 * day)}, true)
	ctx := context.Background()
	s, _ := kenv.Client.CoreV1().Secrets(v.ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	s.Finalizers = []string{"example.com/keep"}
	if _, err := kenv.Client.CoreV1().Secrets(v.ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := v.run("repair", "--api-timeout", "1s")
	if code != 1 || !strings.Contains(stderr, "example.com/keep") || strings.Count(strings.TrimSpace(stderr), "certguard: ") != 1 {
		t.Fatalf("exit %d, want 1 naming the finalizer: %s", code, stderr)
	}
	if !maps.Equal(manifest(t, v.dir), v.before) {
		t.Fatal("the pki dir changed although the Secret is still there")
	}
	s, _ = kenv.Client.CoreV1().Secrets(v.ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	s.Finalizers = nil
	if _, err := kenv.Client.CoreV1().Secrets(v.ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = v.run("repair")
	if code != 0 || v.secret() != nil {
		t.Fatalf("rerun after the finalizer went: exit %d, Secret gone %v: %s", code, v.secret() == nil, stderr)
	}
	if got := manifest(t, v.dir); len(got) != 2 || got["sa.key"] != v.before["sa.key"] {
		t.Errorf("pki dir after the reset: %v", slices.Sorted(maps.Keys(got)))
	}
}

// TestImmutableSecret: the server refuses the change; the dry run finds it before anything is
// written, and the line says what the server said.
func TestImmutableSecret(t *testing.T) {
	v := newVC(t, expired(time.Now()), true)
	ctx := context.Background()
	s, _ := kenv.Client.CoreV1().Secrets(v.ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	immutable := true
	s.Immutable = &immutable
	if _, err := kenv.Client.CoreV1().Secrets(v.ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := v.run("repair")
	if code != 1 || !strings.Contains(stderr, "immutable") || !strings.Contains(stderr, "nothing was changed") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	v.assertUnchanged()
}

func TestHealthyRunIsOneGet(t *testing.T) {
	// A healthy Secret as vcluster's syncer leaves it: every kubeconfig at https://127.0.0.1:6443.
	v := newVC(t, pkigen.Options{Now: time.Now(), Server: pki.SyncerServer}, true)
	start := time.Now()
	v.repairCodes(pki.DecideNothing, false, pki.CodeNothingDue)
	took := time.Since(start)
	if got := v.requests(); !slices.Equal(got, []string{"get secrets"}) {
		t.Fatalf("a healthy run made %v, want exactly one GET of the Secret", got)
	}
	v.assertUnchanged()
	t.Logf("healthy run: %s wall (process start included)", took.Round(time.Millisecond))
}

// TestRepairSetsKubeconfigServers: a healthy Secret whose kubeconfigs point at k0s's
// https://localhost:6443 (as after the start that follows a repair) gets the server vcluster's
// syncer expects, in one write, with a backup; no repair is reported; the next start is one GET.
func TestRepairSetsKubeconfigServers(t *testing.T) {
	v := newVC(t, pkigen.Options{Now: time.Now()}, true) // pkigen writes k0s's server
	// No repair (decision nothing), but the Secret's kubeconfig servers were set (applied).
	v.repairCodes(pki.DecideNothing, true, pki.CodeConfServer)
	// get, the dry run, get again before the write, the write, one get per later kubeconfig step.
	if got := v.requests(); !slices.Equal(got, []string{"get secrets", "update secrets", "get secrets", "update secrets",
		"get secrets", "get secrets", "get secrets", "get secrets"}) {
		t.Errorf("requests %v", got)
	}
	sec := v.secret()
	for k, b := range v.data {
		want := b
		if strings.HasSuffix(k, ".conf") {
			want = bytes.ReplaceAll(b, []byte("server: "+pki.K0sServer+"\n"), []byte("server: "+pki.SyncerServer+"\n"))
			if bytes.Equal(want, b) {
				t.Fatalf("%s: the fixture does not point at %s", k, pki.K0sServer)
			}
		}
		if !bytes.Equal(sec[k], want) {
			t.Errorf("Secret key %s: not what was expected", k)
		}
	}
	if !maps.Equal(v.before, manifest(t, v.dir)) {
		t.Error("the pki dir changed")
	}
	if backups, _ := filepath.Glob(filepath.Join(v.dir+".old", "*", "secret.json")); len(backups) != 1 {
		t.Errorf("backups %v, want one holding the Secret", backups)
	}
	evs, _ := kenv.Client.CoreV1().Events(v.ns).List(context.Background(), metav1.ListOptions{})
	if len(evs.Items) != 0 {
		t.Errorf("events %v: setting kubeconfig servers is no repair", evs.Items)
	}
	v.setUser("system:masters")
	if code, _, stderr := v.run("repair"); code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	if got := v.requests(); !slices.Equal(got, []string{"get secrets"}) {
		t.Errorf("second run made %v", got)
	}
}

func TestForbiddenUpdateChangesNothing(t *testing.T) {
	v := newVC(t, expired(time.Now()), true)
	ctx := context.Background()
	rules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch", "delete"}}}
	kenv.Client.RbacV1().Roles(v.ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "no-update"}, Rules: rules}, metav1.CreateOptions{})
	v.setUser()
	kenv.Client.RbacV1().RoleBindings(v.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "no-update"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "no-update"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: v.user, APIGroup: "rbac.authorization.k8s.io"}}}, metav1.CreateOptions{})
	code, _, stderr := v.run("repair")
	if code != 1 || !strings.Contains(stderr, "forbidden") || strings.Count(strings.TrimSpace(stderr), "certguard: ") != 1 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// The dry run met the 403 before the first write: no backup, no journal, nothing anywhere.
	v.assertUnchanged()
	v.setUser("system:masters")
	v.repairCodes(pki.DecideLeaves, true, pki.CodeLeaf) // the rerun with RBAC fixed
}

func TestAPIDownChangesNothing(t *testing.T) {
	v := newVC(t, expired(time.Now()), true)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	kc := filepath.Join(t.TempDir(), "down.kubeconfig")
	os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://"+addr+"', insecure-skip-tls-verify: true}}]\n"+
		"users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"), 0o600)
	v.kubeconfig = kc
	start := time.Now()
	code, _, stderr := v.run("repair")
	if code != 1 || !strings.Contains(stderr, "connection refused") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Logf("API down: exit 1 after %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr))
	v.assertUnchanged()
}

// TestCertificatesFromTheFutureDoNotBlock: k0s leaves that become valid only in 3 hours are what
// a node whose clock runs behind sees (k0sproject/k0s#1766). That is no expiry, and nothing
// stops the start: refusing (exit 3) blocked it until NTP was fixed. Now nothing is changed, the
// start goes on, and it is said loudly.
func TestCertificatesFromTheFutureDoNotBlock(t *testing.T) {
	now := time.Now()
	v := newVC(t, pkigen.Options{Now: now, K0sIssued: now.Add(3 * time.Hour)}, true)
	code, plan, termination, stderr := v.repairWithLog()
	v.assertHeld(code, plan, termination, stderr, pki.CodeNotYetValid)
}

// TestCorruptKeptFileDoesNotBlock: a kept file that is unusable (here vcluster's apiserver.crt,
// truncated) is not fixed by a leaf repair, but not made worse either; refusing (exit 3) blocked
// every start. The leaves are repaired and the file is reported.
func TestCorruptKeptFileDoesNotBlock(t *testing.T) {
	v := newVC(t, expired(time.Now()), true)
	ctx := context.Background()
	s, _ := kenv.Client.CoreV1().Secrets(v.ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	s.Data["apiserver.crt"] = s.Data["apiserver.crt"][:120] // truncated
	kenv.Client.CoreV1().Secrets(v.ns).Update(ctx, s, metav1.UpdateOptions{})
	v.data = v.secret()
	plan := v.repairCodes(pki.DecideLeaves, true, pki.CodeLeaf, pki.CodeKeptBroken)
	if f, _ := plan.Has(pki.CodeKeptBroken); !strings.HasSuffix(f.Path, "apiserver.crt") {
		t.Fatalf("the %s finding is about %q, want apiserver.crt", pki.CodeKeptBroken, f.Path)
	}
	if got := v.secret(); !bytes.Equal(got["apiserver.crt"], v.data["apiserver.crt"]) || got["server.crt"] != nil {
		t.Error("want the leaves removed and the kept file left as it was")
	}
}

func TestReleaseNameFromPod(t *testing.T) {
	v := newVC(t, pkigen.Options{}, true)
	ctx := context.Background()
	// A Deployment's pod (persistence off): no ordinal, so the release label names the vcluster.
	if _, err := kenv.Client.CoreV1().Pods(v.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vc-7d9f8b6c5-x2k4q", Labels: map[string]string{"app": "vcluster", "release": "vc"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "syncer", Image: "x"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	args := []string{"repair", "--pki-dir", v.dir, "--namespace", v.ns, "--kubeconfig", v.kubeconfig, "--dry-run"}
	if code, _, stderr := runBin(t, nil, append(args, "--pod-name", "vc-7d9f8b6c5-x2k4q")...); code != 0 {
		t.Fatalf("from pod labels: exit %d: %s", code, stderr)
	}
	if got := v.requests(); !slices.Equal(got, []string{"get pods", "get secrets"}) {
		t.Errorf("requests %v", got)
	}
	code, _, stderr := runBin(t, nil, append(args, "--pod-name", "something")...)
	if code != 2 || !strings.Contains(stderr, "set --vcluster-name") {
		t.Fatalf("underivable name: exit %d: %s", code, stderr)
	}
}

func TestBadInputExitCodes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pki")
	os.WriteFile(file, nil, 0o600)
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"unknown flag", nil, []string{"repair", "--pki-dri", "/x"}, 2, "flag provided but not defined"},
		{"bad strategy", nil, []string{"repair", "--strategy", "all"}, 2, "auto|leaves|full"},
		{"bad duration", nil, []string{"check", "--renew-before", "12x", "--no-secret"}, 2, "invalid duration"},
		{"bad env", []string{"CERTGUARD_RENEW_BEFORE=soon"}, []string{"check", "--no-secret"}, 2, "environment"},
		{"bad env fails every command", []string{"CERTGUARD_RENEW_BEFORE=soon"}, []string{"version"}, 2, "environment"},
		{"backup inside pki", nil, []string{"repair", "--pki-dir", "/data/k0s/pki", "--backup-dir", "/data/k0s/pki/old"}, 2, "outside --pki-dir"},
		{"pki path is a file", nil, []string{"check", "--no-secret", "--pki-dir", file}, 1, "not a directory"},
		{"unknown command", nil, []string{"repiar"}, 2, "unknown command"},
		{"bad output", nil, []string{"check", "-o", "yaml", "--no-secret"}, 2, "text or json"},
		// Issue 18: beyond a time.Duration it wrapped to "nothing ever due"; at or beyond the
		// leaves' one-year lifetime every start removed the leaves k0s had just signed.
		{"renew-before beyond a duration", nil, []string{"check", "--no-secret", "--renew-before", "106752d"}, 2, "at most 106751d"},
		{"renew-before beyond the leaves' lifetime", nil, []string{"repair", "--renew-before", "400d"}, 2, "below 365d"},
		{"renew-before of the leaves' lifetime, env", []string{"CERTGUARD_RENEW_BEFORE=365d"}, []string{"watch"}, 2, "below 365d"},
		{"renew-before beyond the leaves' lifetime, fleet", nil, []string{"fleet", "plan", "--renew-before", "8761h"}, 2, "below 365d"},
		{"check --no-secret on no pki dir", nil, []string{"check", "--no-secret", "--pki-dir", filepath.Join(filepath.Dir(file), "nonexistent")}, 1, "does not exist"},
		{"bad k0s version", nil, []string{"check", "--no-secret", "--k0s-version", "latest"}, 2, "--k0s-version"},
		{"bad k0s version env", []string{"CERTGUARD_K0S_VERSION=1.35"}, []string{"repair", "--vcluster-name", "vc", "--namespace", "ns", "--kubeconfig", "/nonexistent"}, 2, "--k0s-version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runBin(t, c.env, c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("exit %d, want %d; stderr %q should be one line with %q", code, c.code, stderr, c.want)
			}
		})
	}
	// A flag given explicitly wins over the environment.
	p, _ := pkigen.Generate(pkigen.Options{})
	dir := filepath.Join(t.TempDir(), "pki")
	pkigen.WriteDir(dir, p.Files)
	if code, _, stderr := runBin(t, []string{"CERTGUARD_PKI_DIR=/nonexistent"}, "check", "--no-secret", "--pki-dir", dir); code != 0 {
		t.Fatalf("flag over env: exit %d %s", code, stderr)
	}
}

func TestCheck(t *testing.T) {
	now := time.Now()
	v := newVC(t, expired(now), true)
	code, stdout, _ := runBin(t, nil, "check", "--no-secret", "--pki-dir", v.dir)
	if code != 4 || !strings.Contains(stdout, "FILENAME") || !strings.Contains(stdout, "EXPIRED") {
		t.Fatalf("check expired: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = v.run("check", "-o", "json")
	var info pki.ExpirationInfo
	if code != 4 || json.Unmarshal([]byte(stdout), &info) != nil || info.Kind != "CertificateExpirationInfo" || len(info.CertificateAuthorities) < 3 {
		t.Fatalf("check json: exit %d\n%s", code, stdout)
	}
	i := slices.IndexFunc(info.Certificates, func(e pki.ExpirationEntry) bool { return e.Name == "server.crt" })
	if i < 0 || info.Certificates[i].CAName != "ca" || info.Certificates[i].ResidualTime != 0 || info.Certificates[i].Drift != pki.DriftSame {
		t.Fatalf("server.crt entry %+v", info.Certificates)
	}
	h := newVC(t, pkigen.Options{Now: now}, true)
	if code, stdout, stderr := h.run("check"); code != 0 {
		t.Fatalf("check healthy: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestDemo: the demo's first repair decides leaves and its second decides nothing with no step
// (its heading says "a second run is a no-op": the plan printed under it must be one); its pki
// dir then holds none of the 14 k0s leaf files, and one backup.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runBin(t, nil, "demo", "--dir", dir)
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	_, first, ok1 := strings.Cut(stdout, "\n== certguard repair\n")
	_, again, ok2 := strings.Cut(stdout, "\n== certguard repair (again)")
	_, again, _ = strings.Cut(again, "\n")
	decision := func(section string) string {
		line, _, _ := strings.Cut(section, "\n")
		return line
	}
	if !ok1 || !ok2 || decision(first) != "decision: "+string(pki.DecideLeaves)+" (strategy auto)" ||
		decision(again) != "decision: "+string(pki.DecideNothing)+" (strategy auto)" {
		t.Fatalf("demo: want a leaves repair, then nothing:\n%s", stdout)
	}
	for _, line := range strings.Split(again, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "1. ") {
			t.Fatalf("the second run has steps: %s", again)
		}
	}
	files := manifest(t, filepath.Join(dir, "pki"))
	for _, f := range k0sFileNames {
		if _, ok := files[f]; ok {
			t.Errorf("the demo's pki dir still has %s", f)
		}
	}
	if backups, _ := filepath.Glob(filepath.Join(dir, "pki.old", "*")); len(backups) != 1 {
		t.Errorf("backups %v, want one", backups)
	}
}
