package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	fleetsvc "github.com/certguard/certguard/fleet"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/restart"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The tests of issue 17's findings drive the real restarter (fleet.Restarter) through the real
// API server with a clock of their own: `now` below is a Saturday inside the daily window
// "02:00-04:00" (UTC), so that "this opening" and "the next" are read off a calendar.
var (
	planNow     = time.Date(2026, 12, 12, 2, 30, 0, 0, time.UTC)
	nextOpening = time.Date(2026, 12, 13, 2, 0, 0, 0, time.UTC)
)

// vcSpec is one vcluster for these tests; the zero value is a guarded vcluster (certguard's init
// container with --renew-before=30d, k0s v1.30.2) whose leaves expire 10 days after planNow, its
// pod Running and Ready.
type vcSpec struct {
	release   string
	sts       string   // StatefulSet name ("" = the release); labelled release=<release>
	replicas  int32    // 0 = 1
	initArgs  []string // certguard's args after the defaults; nil: the defaults only
	noInit    bool
	env       []corev1.EnvVar
	expiresIn time.Duration // after planNow; 0 = 10 days
	pending   bool          // the pod never started (phase Pending, not Ready)
	notReady  bool          // the pod runs but is not Ready (crash-looping)
	secretAnn map[string]string
	stsAnn    map[string]string
}

type planVC struct {
	spec vcSpec
	ns   string
	p    *pkigen.PKI
}

func (v *planVC) key() string { return v.ns + "/" + v.spec.release }
func (v *planVC) pod() string { return v.stsName() + "-0" }
func (v *planVC) stsName() string {
	if v.spec.sts != "" {
		return v.spec.sts
	}
	return v.spec.release
}

func newPlanVC(t testing.TB, ns string, s vcSpec) *planVC {
	t.Helper()
	ctx := context.Background()
	if s.expiresIn == 0 {
		s.expiresIn = 10 * day
	}
	issued := planNow.Add(s.expiresIn).Add(-pkigen.Year + pkigen.Backdate)
	p, err := pkigen.Generate(pkigen.Options{Now: issued, CAIssued: issued.Add(-2 * pkigen.Year), K0sIssued: issued})
	if err != nil {
		t.Fatal(err)
	}
	v := &planVC{spec: s, ns: ns, p: p}
	if _, err := kenv.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.release + "-certs", Annotations: s.secretAnn},
		Type: corev1.SecretTypeOpaque, Data: p.SecretData()}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	inits := []corev1.Container{{Name: "vcluster", Image: "ghcr.io/loft-sh/k0s:v1.30.2-k0s.0", Command: []string{"cp", "/usr/local/bin/k0s", "/binaries/k0s"}}}
	if !s.noInit {
		args := append([]string{"repair", "--vcluster-name=" + s.release, "--pki-dir=/data/k0s/pki", "--renew-before=30d"}, s.initArgs...)
		inits = append([]corev1.Container{{Name: "certguard", Image: "ghcr.io/certguard/certguard:v0.2.0", Command: []string{"/certguard"}, Args: args, Env: s.env}}, inits...)
	}
	labels := map[string]string{"app": "vcluster", "release": s.release}
	replicas := max(s.replicas, 1)
	if _, err := kenv.Client.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: v.stsName(), Labels: labels, Annotations: s.stsAnn},
		Spec: appsv1.StatefulSetSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{InitContainers: inits, Containers: []corev1.Container{{Name: "syncer", Image: "ghcr.io/loft-sh/vcluster:0.25.0"}}}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v.createPod(t, !s.pending, !s.pending && !s.notReady)
	return v
}

// createPod plays the StatefulSet controller and the kubelet: pod <sts>-0, Running (or left
// Pending, as the API server creates it) and Ready or not.
func (v *planVC) createPod(t testing.TB, running, ready bool) string {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: v.pod(), Labels: map[string]string{"app": "vcluster", "release": v.spec.release}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "syncer", Image: "ghcr.io/loft-sh/vcluster:0.25.0"}}}}
	created, err := kenv.Client.CoreV1().Pods(v.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if running {
		created.Status.Phase = corev1.PodRunning
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		created.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
		if _, err := kenv.Client.CoreV1().Pods(v.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return string(created.UID)
}

// comeBack plays the init container and the kubelet after a restart: when renew, new k0s leaves
// valid a year from at in the Secret; then the pod, Ready.
func (v *planVC) comeBack(t testing.TB, at time.Time, renew bool) {
	t.Helper()
	if renew {
		leaves, err := pkigen.New(pkigen.Options{Now: at, K0sIssued: at}).IssueK0sLeaves(v.p.CAs["ca"], v.p.Files["ca.crt"])
		if err != nil {
			t.Fatal(err)
		}
		v.update(t, func(s *corev1.Secret) {
			for path, b := range leaves {
				s.Data[pki.SecretKey(path)] = b
			}
		})
	}
	v.createPod(t, true, true)
}

func (v *planVC) update(t testing.TB, fn func(*corev1.Secret)) {
	t.Helper()
	ctx := context.Background()
	for {
		s, err := kenv.Client.CoreV1().Secrets(v.ns).Get(ctx, v.spec.release+"-certs", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fn(s)
		_, err = kenv.Client.CoreV1().Secrets(v.ns).Update(ctx, s, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
}

func (v *planVC) annotations(t testing.TB) map[string]string {
	t.Helper()
	s, err := kenv.Client.CoreV1().Secrets(v.ns).Get(context.Background(), v.spec.release+"-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Annotations
}

// fleetUnderTest is one replica of the restarter with its own informers, as fleet serve builds it.
type fleetUnderTest struct {
	*fleetsvc.Restarter
	state *fleetsvc.State
}

func newFleetUnderTest(t testing.TB, ctx context.Context, ns, home, id string, api func(fleetsvc.RestartAPI) fleetsvc.RestartAPI, set fleetsvc.PlanSettings) *fleetUnderTest {
	t.Helper()
	c, err := kube.NewClient(kenv.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	state, workloads, synced := fleetInformers(t, ctx, c, ns, func(err error) { t.Error(err) })
	waitFor(t, synced)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var a fleetsvc.RestartAPI = &fleetsvc.KubeRestartAPI{Client: c, Log: quiet, Instance: id,
		Lease: &kube.Lease{Client: c, Namespace: home, Name: "certguard-fleet", Identity: id, Duration: time.Minute}}
	if api != nil {
		a = api(a)
	}
	if set.Window == nil {
		set.Window, _ = restart.ParseWindow("02:00-04:00", time.UTC)
	}
	set.MinInterval = cmp(set.MinInterval, 24*time.Hour)
	set.ReadyTimeout = cmp(set.ReadyTimeout, 15*time.Minute)
	set.RenewBefore = cmp(set.RenewBefore, 120*day)
	set.MaxConcurrent = max(set.MaxConcurrent, 1)
	return &fleetUnderTest{Restarter: &fleetsvc.Restarter{State: state, Workloads: workloads, Parse: parseInitContainer, Log: quiet, API: a, Settings: set}, state: state}
}

func cmp(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// settle waits until the informer holds what the API server holds for these vclusters' records
// (the restarter's next tick must see its own and the test's writes).
func (f *fleetUnderTest) settle(t testing.TB, vcs ...*planVC) {
	t.Helper()
	for _, v := range vcs {
		want := restart.ReadRecord(v.annotations(t))
		waitFor(t, func() bool {
			for _, x := range f.state.Vclusters(planNow, 0, nil, nil) {
				if x.Key() == v.key() {
					return x.Record == want
				}
			}
			return false
		})
	}
}

func rowsByKey(p fleetsvc.Plan) map[string]fleetsvc.PlanRow {
	out := map[string]fleetsvc.PlanRow{}
	for _, r := range p.Rows {
		out[r.Namespace+"/"+r.Release] = r
	}
	return out
}

// TestFleetPlanIsWhatRuns (finding 1 and 7): three due vclusters, --max-concurrent 2. The plan
// books the two most urgent on the opening that is open now and the third on the next one; the
// restarter restarts exactly those two, and not the third in this opening even after both are
// back (it used to treat the flag as "in flight" and work through every due vcluster in one
// window); at the next opening it restarts the third.
func TestFleetPlanIsWhatRuns(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "planruns")
	home, _ := kenv.Namespace(ctx, "certguard")
	a := newPlanVC(t, ns, vcSpec{release: "a", expiresIn: 5 * day})
	b := newPlanVC(t, ns, vcSpec{release: "b", expiresIn: 6 * day})
	c := newPlanVC(t, ns, vcSpec{release: "c", expiresIn: 7 * day})
	f := newFleetUnderTest(t, ctx, ns, home, "r1", nil, fleetsvc.PlanSettings{MaxConcurrent: 2})

	started := f.Tick(ctx, planNow)
	slices.Sort(started)
	if !slices.Equal(started, []string{a.key(), b.key()}) {
		t.Fatalf("first tick restarted %v, want a and b (the two most urgent)", started)
	}
	plan, _ := f.Plan()
	rows := rowsByKey(plan)
	if rows[c.key()].State != fleetsvc.StateBooked || !rows[c.key()].Window.Equal(nextOpening) {
		t.Errorf("c: %+v, want booked on %s", rows[c.key()], nextOpening)
	}
	for _, v := range []*planVC{a, b} {
		if rows[v.key()].State != fleetsvc.StateRestarting {
			t.Errorf("%s: %+v, want restarting", v.key(), rows[v.key()])
		}
		v.comeBack(t, planNow, true)
	}
	f.settle(t, a, b, c)
	later := planNow.Add(10 * time.Minute)
	if started := f.Tick(ctx, later); len(started) != 0 {
		t.Fatalf("restarted %v in an opening that already had --max-concurrent 2 restarts", started)
	}
	f.settle(t, a, b)
	for _, v := range []*planVC{a, b} {
		if got := restart.ReadRecord(v.annotations(t)).Verdict.Code; got != restart.Renewed {
			t.Errorf("%s: verdict %q, want renewed", v.key(), got)
		}
	}
	if started := f.Tick(ctx, nextOpening.Add(time.Minute)); !slices.Equal(started, []string{c.key()}) {
		t.Fatalf("at the next opening restarted %v, want c", started)
	}
}

// TestFleetNeverRestartsWhatWouldNotRenew (finding 2, 8, 9): init containers the fleet cannot
// trust to do a leaf repair of the Secret it judged, a pod that never started, and a StatefulSet
// of three replicas are never restarted, each blocked with its code; a StatefulSet named other
// than its release is found by its label and restarted; a pod left not Ready by the sidecar's
// restart does not stall the opening.
func TestFleetNeverRestartsWhatWouldNotRenew(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "planblock")
	home, _ := kenv.Namespace(ctx, "certguard")
	want := map[string]restart.Code{}
	var vcs []*planVC
	add := func(code restart.Code, s vcSpec) *planVC {
		v := newPlanVC(t, ns, s)
		vcs = append(vcs, v)
		want[v.key()] = code
		return v
	}
	add(restart.StrategyFull, vcSpec{release: "full", initArgs: []string{"--strategy", "full"}})
	add(restart.StrategyFull, vcSpec{release: "fullenv", env: []corev1.EnvVar{{Name: "CERTGUARD_STRATEGY", Value: "full"}}})
	add(restart.DryRun, vcSpec{release: "dry", initArgs: []string{"--dry-run"}})
	add(restart.SettingsUnknown, vcSpec{release: "fromcm", env: []corev1.EnvVar{{Name: "CERTGUARD_RENEW_BEFORE",
		ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cg"}, Key: "rb"}}}}})
	add(restart.OtherSecret, vcSpec{release: "other", initArgs: []string{"--secret-name=elsewhere-certs"}})
	add(restart.OtherPKIDir, vcSpec{release: "pkidir", initArgs: []string{"--pki-dir=/var/lib/k0s/pki"}})
	add(restart.NoInitContainer, vcSpec{release: "bare", noInit: true})
	add(restart.MultiReplica, vcSpec{release: "ha", replicas: 3})
	pending := add(restart.PodNotStarted, vcSpec{release: "pending", pending: true})
	// The sidecar restarted this one 20 minutes ago and its pod is not Ready: not the fleet's
	// restart, so no stall of the opening (it is not restarted again within
	// --restart-min-interval either).
	sidecar := add("", vcSpec{release: "sidecar", notReady: true, secretAnn: map[string]string{restart.LastRestartAnnotation: planNow.Add(-20 * time.Minute).Format(time.RFC3339)}})
	// Its StatefulSet is vc-renamed, labelled release=renamed.
	renamed := add("", vcSpec{release: "renamed", sts: "vc-renamed", expiresIn: 9 * day})
	deleted := podDeletions(t, ns)
	f := newFleetUnderTest(t, ctx, ns, home, "r1", nil, fleetsvc.PlanSettings{MaxConcurrent: 20})
	started := f.Tick(ctx, planNow)
	slices.Sort(started)
	if !slices.Equal(started, []string{renamed.key()}) {
		t.Errorf("restarted %v, want only %s", started, renamed.key())
	}
	plan, _ := f.Plan()
	rows := rowsByKey(plan)
	for key, code := range want {
		if code != "" && rows[key].Blocker != code {
			t.Errorf("%s: %+v, want blocker %q", key, rows[key], code)
		}
	}
	if plan.Stalled || rows[sidecar.key()].State != fleetsvc.StateBooked {
		t.Errorf("the sidecar's restart stalled the opening (%v) or its vcluster: %+v", plan.Stalled, rows[sidecar.key()])
	}
	got := map[string]bool{}
	for len(deleted) > 0 {
		got[<-deleted] = true
	}
	if !got["vc-renamed"] || len(got) != 1 {
		t.Errorf("pods deleted %v, want vc-renamed-0 only", got)
	}
	// The Pending pod is left alone, and still is on the next tick.
	if started := f.Tick(ctx, planNow.Add(time.Minute)); slices.Contains(started, pending.key()) {
		t.Errorf("restarted the Pending pod of %s", pending.key())
	}
}

// TestFleetVerdictsSurviveTheService (finding 3): a restart that renewed nothing is written on the
// Secret; a new replica (new informers, nothing in memory) reads it and does not restart the
// vcluster again in the next opening, until an operator asks with renew-now.
func TestFleetVerdictsSurviveTheService(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "planverdict")
	home, _ := kenv.Namespace(ctx, "certguard")
	v := newPlanVC(t, ns, vcSpec{release: "stuck"})
	f := newFleetUnderTest(t, ctx, ns, home, "r1", nil, fleetsvc.PlanSettings{})
	if started := f.Tick(ctx, planNow); len(started) != 1 {
		t.Fatalf("restarted %v, want stuck", started)
	}
	v.comeBack(t, planNow, false) // the init container renewed nothing
	f.settle(t, v)
	f.Tick(ctx, planNow.Add(10*time.Minute))
	if got := restart.ReadRecord(v.annotations(t)).Verdict.Code; got != restart.RenewedNothing {
		t.Fatalf("verdict %q, want renewed-nothing", got)
	}
	// A new replica two days later, in the opening: it must decide as the first did.
	g := newFleetUnderTest(t, ctx, ns, home, "r1", nil, fleetsvc.PlanSettings{})
	if started := g.Tick(ctx, nextOpening.Add(24*time.Hour)); len(started) != 0 {
		t.Fatalf("a new replica restarted %v again", started)
	}
	plan, _ := g.Plan()
	if r := rowsByKey(plan)[v.key()]; r.Blocker != restart.RenewedNothing {
		t.Errorf("plan row %+v, want blocker renewed-nothing", r)
	}
	// An operator asks for a renewal now: booked and restarted in this opening.
	v.update(t, func(s *corev1.Secret) {
		s.Annotations[pki.RenewNowAnnotation] = nextOpening.Add(24 * time.Hour).Format(time.RFC3339)
	})
	g.settle(t, v)
	if started := g.Tick(ctx, nextOpening.Add(24*time.Hour+time.Minute)); len(started) != 1 {
		t.Fatalf("renew-now: restarted %v, want stuck", started)
	}
}

// flakyAPI fails the first DeletePod, and records every call's deadline.
type flakyAPI struct {
	fleetsvc.RestartAPI
	mu           sync.Mutex
	failNext     bool
	noDeadline   int
	lastDeadline time.Time
	delay        time.Duration
	calls        int
}

func (f *flakyAPI) note(ctx context.Context) error {
	f.mu.Lock()
	f.calls++
	d, ok := ctx.Deadline()
	if !ok {
		f.noDeadline++
	}
	f.lastDeadline = d
	delay := f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return ctx.Err()
}

func (f *flakyAPI) Hold(ctx context.Context) (bool, error) {
	if err := f.note(ctx); err != nil {
		return false, err
	}
	return f.RestartAPI.Hold(ctx)
}
func (f *flakyAPI) Secret(ctx context.Context, ns, name string) (*pki.Secret, error) {
	if err := f.note(ctx); err != nil {
		return nil, err
	}
	return f.RestartAPI.Secret(ctx, ns, name)
}
func (f *flakyAPI) Pod(ctx context.Context, ns, name string) (*kube.PodState, error) {
	if err := f.note(ctx); err != nil {
		return nil, err
	}
	return f.RestartAPI.Pod(ctx, ns, name)
}
func (f *flakyAPI) Record(ctx context.Context, ns, secret string, ann map[string]string) error {
	if err := f.note(ctx); err != nil {
		return err
	}
	return f.RestartAPI.Record(ctx, ns, secret, ann)
}
func (f *flakyAPI) DeletePod(ctx context.Context, ns, name, uid string) error {
	if err := f.note(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	fail := f.failNext
	f.failNext = false
	f.mu.Unlock()
	if fail {
		return apierrors.NewInternalError(errors.New("injected"))
	}
	return f.RestartAPI.DeletePod(ctx, ns, name, uid)
}

// TestFleetFailedDeleteIsNotARestart (finding 6): the delete after the record fails and the pod
// is still there; the next tick finds it, marks the record not-restarted and restarts the
// vcluster in the same opening instead of holding it off for --restart-min-interval.
func TestFleetFailedDeleteIsNotARestart(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "plandelete")
	home, _ := kenv.Namespace(ctx, "certguard")
	v := newPlanVC(t, ns, vcSpec{release: "a"})
	deleted := podDeletions(t, ns)
	flaky := &flakyAPI{failNext: true}
	f := newFleetUnderTest(t, ctx, ns, home, "r1", func(a fleetsvc.RestartAPI) fleetsvc.RestartAPI { flaky.RestartAPI = a; return flaky }, fleetsvc.PlanSettings{})
	if started := f.Tick(ctx, planNow); len(started) != 0 {
		t.Fatalf("restarted %v although the delete failed", started)
	}
	if rec := restart.ReadRecord(v.annotations(t)); !rec.InFlight() {
		t.Fatalf("record %+v: a restart whose delete failed must count until the pod is read", rec)
	}
	f.settle(t, v)
	if started := f.Tick(ctx, planNow.Add(time.Minute)); len(started) != 1 {
		t.Fatalf("restarted %v a minute later, want a (the failed delete was no restart)", started)
	}
	if got := <-deleted; got != "a" {
		t.Errorf("deleted %s, want a", got)
	}
}

// TestFleetTickBoundedByLease (finding 4): every request of a tick carries a deadline within the
// Lease's budget, so that on a slow API server no tick outlives the Lease. The API here takes
// 300 ms a request and the budget is 1 s: the tick stops early, and what it did not reach is
// left for the next tick.
func TestFleetTickBoundedByLease(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "planlease")
	home, _ := kenv.Namespace(ctx, "certguard")
	for _, r := range []string{"a", "b", "c", "d", "e"} {
		newPlanVC(t, ns, vcSpec{release: r})
	}
	slow := &flakyAPI{delay: 300 * time.Millisecond}
	f := newFleetUnderTest(t, ctx, ns, home, "r1", func(a fleetsvc.RestartAPI) fleetsvc.RestartAPI { slow.RestartAPI = a; return slow }, fleetsvc.PlanSettings{MaxConcurrent: 5})
	f.LeaseBudget = time.Second
	began := time.Now()
	started := f.Tick(ctx, planNow)
	if slow.noDeadline != 0 {
		t.Errorf("%d requests without a deadline", slow.noDeadline)
	}
	if slow.lastDeadline.Sub(began) > time.Second+50*time.Millisecond { // the tick reads the clock a moment after began
		t.Errorf("a request's deadline %s is past the budget's end %s", slow.lastDeadline, began.Add(time.Second))
	}
	// Five restarts take 5 × 4 requests of 300 ms: a tick bounded by 1 s cannot have made them all.
	if len(started) == 5 {
		t.Errorf("restarted all five within a 1 s budget at 300 ms a request")
	}
	t.Logf("%d requests, %d restarts in a tick bounded by 1 s", slow.calls, len(started))
}

// TestFleetServeListenError (finding 5): fleet serve --restart-due on an address in use exits 1
// at once, before it takes the Lease (it used to keep ticking, holding the Lease and deleting
// pods, with no server).
func TestFleetServeListenError(t *testing.T) {
	ctx := context.Background()
	home, _ := kenv.Namespace(ctx, "listen")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	kc, err := kenv.Kubeconfig(t.TempDir(), "listen-admin", "system:masters") // every grant: only the listen error can end it
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "fleet", "serve", "--kubeconfig", kc, "--listen", ln.Addr().String(), "--restart-due",
		"--restart-window", "02:00-04:00", "--lease-namespace", home, "--lease-name", "listen-test")
	began := time.Now()
	done := make(chan error, 1)
	out := &lockedBuffer{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitError {
			t.Fatalf("exit %v, want 1; stderr %q", err, out.String())
		}
		t.Logf("exited 1 after %s: %s", time.Since(began).Round(time.Millisecond), out.String())
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("fleet serve still running 10 s after a listen error:\n%s", out.String())
	}
	if _, err := kenv.Client.CoordinationV1().Leases(home).Get(ctx, "listen-test", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Lease was taken (err %v): it must not act without a server", err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// TestRepairHonoursRenewNow: the init container's side of renew-now. Leaves with 355 days left
// are not due; with certguard.dev/renew-now newer than the last repair they are, and the leaf
// repair it makes writes a last-repair that voids the request, so the next start is a no-op.
func TestRepairHonoursRenewNow(t *testing.T) {
	now := time.Now()
	v := newVC(t, pkigen.Options{Now: now, K0sIssued: now.Add(-10 * day)}, true)
	v.repairJSON(pki.DecideNothing)
	sec, err := kenv.Client.CoreV1().Secrets(v.ns).Get(context.Background(), "vc-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Annotations = map[string]string{pki.RenewNowAnnotation: now.Add(-time.Minute).UTC().Format(time.RFC3339)}
	if _, err := kenv.Client.CoreV1().Secrets(v.ns).Update(context.Background(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	v.repairJSON(pki.DecideLeaves)
	v.repairJSON(pki.DecideNothing)
}
