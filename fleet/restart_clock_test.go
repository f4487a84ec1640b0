package fleet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/restart"
	testingclock "k8s.io/utils/clock/testing"
)

// The Restarter's ticks under a fake clock (k8s.io/utils/clock/testing), against an in-memory
// cluster (clockCluster): Tick takes its now, and Restarter.Clock is the clock of its per-tick
// deadline, so every instant below is exact and nothing sleeps. The real API server's side of the
// same paths is fleet_restart_test.go's and fleet_year_test.go's.

const clockDay = 24 * time.Hour

// clockCluster is RestartAPI in memory: Secrets and pods by "<namespace>/<name>". A write to a
// Secret reaches the State at once (an informer without lag).
//
// budget (nil: unused) is the fake clock of the per-tick deadline (Restarter.Clock). Each call
// takes latency of it; the first call that reaches deadline cancels the tick's context, as the
// deadline's own timer does on real time (context.WithDeadline cannot read a fake clock: budget
// starts an hour after real now, so that the real timer never fires during the test), and calls
// made then fail as the real client's would.
type clockCluster struct {
	t       *testing.T
	clock   *testingclock.FakeClock
	state   *State
	secrets map[string]*pki.Secret
	pods    map[string]*kube.PodState
	uid     int
	// ready: a pod the StatefulSet recreates after a delete is Ready at once.
	ready bool

	budget   *testingclock.FakeClock
	latency  time.Duration
	deadline time.Time
	cancel   context.CancelFunc

	deletes []clockDelete
	events  []string // reasons
	calls   []clockCall
}

type clockDelete struct {
	key string
	at  time.Time
}

type clockCall struct {
	what    string
	at      time.Time
	ok      bool
	ctxDone bool
}

func (c *clockCluster) call(ctx context.Context, what string) error {
	var at time.Time
	if c.budget != nil {
		c.budget.Step(c.latency)
		at = c.budget.Now()
		if !c.deadline.IsZero() && !at.Before(c.deadline) && c.cancel != nil {
			c.cancel()
		}
	}
	err := ctx.Err()
	c.calls = append(c.calls, clockCall{what: what, at: at, ok: err == nil, ctxDone: err != nil})
	return err
}

func (c *clockCluster) Hold(ctx context.Context) (bool, error) {
	if err := c.call(ctx, "hold"); err != nil {
		return false, err
	}
	return true, nil
}

func (c *clockCluster) Secret(ctx context.Context, namespace, name string) (*pki.Secret, error) {
	if err := c.call(ctx, "secret "+namespace+"/"+name); err != nil {
		return nil, err
	}
	s := c.secrets[namespace+"/"+name]
	if s == nil {
		return nil, nil
	}
	cp := *s
	cp.Annotations = maps.Clone(s.Annotations)
	return &cp, nil
}

func (c *clockCluster) Pod(ctx context.Context, namespace, name string) (*kube.PodState, error) {
	if err := c.call(ctx, "pod "+namespace+"/"+name); err != nil {
		return nil, err
	}
	p := c.pods[namespace+"/"+name]
	if p == nil {
		return nil, nil
	}
	cp := *p
	return &cp, nil
}

func (c *clockCluster) Record(ctx context.Context, namespace, secret string, annotations map[string]string) error {
	if err := c.call(ctx, "record "+namespace+"/"+secret); err != nil {
		return err
	}
	key := namespace + "/" + secret
	s := c.secrets[key]
	if s == nil {
		return fmt.Errorf("no Secret %s", key)
	}
	cp := *s
	cp.Annotations = maps.Clone(s.Annotations)
	if cp.Annotations == nil {
		cp.Annotations = map[string]string{}
	}
	for k, v := range annotations {
		if v == "" {
			delete(cp.Annotations, k)
		} else {
			cp.Annotations[k] = v
		}
	}
	c.uid++
	cp.ResourceVersion = fmt.Sprint(c.uid)
	c.secrets[key] = &cp
	c.state.Set(key, Parse(&cp))
	return nil
}

func (c *clockCluster) DeletePod(ctx context.Context, namespace, name, uid string) error {
	if err := c.call(ctx, "delete "+namespace+"/"+name); err != nil {
		return err
	}
	key := namespace + "/" + name
	if p := c.pods[key]; p == nil || p.UID != uid {
		return fmt.Errorf("pod %s: precondition failed", key)
	}
	c.deletes = append(c.deletes, clockDelete{key: namespace + "/" + strings.TrimSuffix(name, "-0"), at: c.clock.Now()})
	c.uid++
	c.pods[key] = &kube.PodState{UID: fmt.Sprintf("pod-%d", c.uid), Ready: c.ready} // the StatefulSet's new pod
	return nil
}

func (c *clockCluster) Event(ctx context.Context, namespace, statefulSet, eventType string, reason kube.Reason, message string) {
	if c.call(ctx, "event "+string(reason)) == nil {
		c.events = append(c.events, string(reason))
	}
}

// clockFleet is a Restarter on a clockCluster whose clock starts at t0, with the window
// Sat 02:00-04:00 UTC, --restart-ready-timeout 30m and --max-concurrent max.
func clockFleet(t *testing.T, t0 time.Time, max int) (*Restarter, *clockCluster, *Workloads) {
	t.Helper()
	w, err := restart.ParseWindow("Sat 02:00-04:00", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	c := &clockCluster{t: t, clock: testingclock.NewFakeClock(t0), state: NewState(), secrets: map[string]*pki.Secret{}, pods: map[string]*kube.PodState{}}
	workloads := NewWorkloads()
	parse := func([]string, map[string]string) (InitSettings, error) {
		return InitSettings{RenewBefore: 30 * clockDay, Strategy: pki.StrategyAuto, PKIDir: defaultPKIDir}, nil
	}
	r := &Restarter{State: c.state, Workloads: workloads, Parse: parse, API: c,
		Settings: PlanSettings{Window: w, MaxConcurrent: max, RenewBefore: 30 * clockDay, MinInterval: clockDay, ReadyTimeout: 30 * time.Minute},
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil))}
	return r, c, workloads
}

// vcluster adds vcluster rel in namespace "ns": its Secret with k0s leaves that expire at
// expires (under a CA that is good), its pod Ready, and with sts its StatefulSet running
// certguard's init container.
func (c *clockCluster) vcluster(workloads *Workloads, rel string, expires time.Time, sts bool) {
	c.t.Helper()
	issued := expires.Add(-pkigen.Year + pkigen.Backdate)
	p, err := pkigen.Generate(pkigen.Options{Now: issued, CAIssued: issued.Add(-2 * pkigen.Year), K0sIssued: issued})
	if err != nil {
		c.t.Fatal(err)
	}
	key := "ns/" + rel + "-certs"
	c.uid++
	s := &pki.Secret{Namespace: "ns", Name: rel + "-certs", UID: "secret-" + rel, ResourceVersion: fmt.Sprint(c.uid), Data: p.SecretData()}
	c.secrets[key] = s
	c.state.Set(key, Parse(s))
	c.uid++
	c.pods["ns/"+rel+"-0"] = &kube.PodState{UID: fmt.Sprintf("pod-%d", c.uid), Ready: true}
	if sts {
		c.statefulSet(workloads, rel)
	}
}

func (c *clockCluster) statefulSet(workloads *Workloads, rel string) {
	workloads.Set("ns/"+rel, &kube.StatefulSet{Namespace: "ns", Name: rel, Replicas: 1, Release: rel, InitContainers: []kube.Container{
		{Name: "certguard", Image: "ghcr.io/certguard/certguard:v0.2.0", Command: []string{"/certguard"}, Args: []string{"repair", "--renew-before=30d"}},
		{Name: "vcluster", Image: "ghcr.io/loft-sh/k0s:v1.30.2-k0s.0"},
	}})
}

// ticks ticks every step of the fake clock from where it stands until before end, then sets it
// to end without ticking.
func ticks(r *Restarter, c *clockCluster, step time.Duration, end time.Time) {
	for ; c.clock.Now().Before(end); c.clock.Step(step) {
		r.Tick(context.Background(), c.clock.Now())
	}
	c.clock.SetTime(end)
}

// tickAt sets the clock to at and ticks once.
func tickAt(r *Restarter, c *clockCluster, at time.Time) {
	c.clock.SetTime(at)
	r.Tick(context.Background(), at)
}

// TestRestarterOnlyInsideTheWindow: a vcluster due a week before the window opens is restarted
// at the opening's first instant, not a tick earlier; one whose StatefulSet appears the instant
// the window closes waits, ticked every minute, for the next opening's first instant.
func TestRestarterOnlyInsideTheWindow(t *testing.T) {
	t0 := at(t, "2026-11-28T04:00:00Z") // a Saturday, the instant the window closes
	r, c, workloads := clockFleet(t, t0, 2)
	c.ready = true
	c.vcluster(workloads, "early", t0.Add(10*clockDay), true) // due since 20 days
	c.vcluster(workloads, "late", t0.Add(11*clockDay), false) // no StatefulSet yet: blocked
	open := at(t, "2026-12-05T02:00:00Z")
	ticks(r, c, time.Minute, open.Add(-time.Nanosecond))
	tickAt(r, c, open.Add(-time.Nanosecond))
	if len(c.deletes) != 0 {
		t.Fatalf("restarted outside the window: %v", c.deletes)
	}
	tickAt(r, c, open)
	if len(c.deletes) != 1 || c.deletes[0] != (clockDelete{"ns/early", open}) {
		t.Fatalf("at the opening %s: deletes %v, want ns/early then", open, c.deletes)
	}
	// The window closes at 04:00; "late" gets its StatefulSet at that instant.
	closes := open.Add(2 * time.Hour)
	ticks(r, c, time.Minute, closes)
	c.statefulSet(workloads, "late")
	next := open.Add(7 * clockDay)
	ticks(r, c, time.Minute, next.Add(-time.Nanosecond))
	tickAt(r, c, next.Add(-time.Nanosecond))
	if len(c.deletes) != 1 {
		t.Fatalf("restarted outside the window: %v", c.deletes)
	}
	if p, _ := r.Plan(); len(p.Rows) == 0 || p.Rows[0].Release != "late" || p.Rows[0].State != StateBooked || !p.Rows[0].Window.Equal(next) {
		t.Fatalf("plan before the next opening: %+v, want late booked on %s", p.Rows, next)
	}
	tickAt(r, c, next)
	if len(c.deletes) != 2 || c.deletes[1] != (clockDelete{"ns/late", next}) {
		t.Fatalf("deletes %v, want ns/late at %s", c.deletes, next)
	}
}

// TestRestarterReadyTimeoutStallsAtTheInstant: a restart whose pod is not Ready stalls the opening
// exactly --restart-ready-timeout after it: a vcluster that becomes restartable 1 ns before is
// restarted, one that becomes restartable at that instant is not, and the stalled verdict is
// written at that instant.
func TestRestarterReadyTimeoutStallsAtTheInstant(t *testing.T) {
	open := at(t, "2026-12-05T02:00:00Z")
	stall := open.Add(30 * time.Minute)
	for _, tc := range []struct {
		appears   time.Time
		restarted bool
	}{
		{stall.Add(-time.Nanosecond), true},
		{stall, false},
	} {
		t.Run(tc.appears.Format(time.RFC3339Nano), func(t *testing.T) {
			r, c, workloads := clockFleet(t, open.Add(-time.Minute), 3)
			c.vcluster(workloads, "a", open.Add(10*clockDay), true)  // its new pod never gets Ready
			c.vcluster(workloads, "b", open.Add(10*clockDay), false) // restartable once its StatefulSet appears
			ticks(r, c, time.Minute, tc.appears)
			if len(c.deletes) != 1 || c.deletes[0] != (clockDelete{"ns/a", open}) {
				t.Fatalf("deletes %v, want ns/a at %s", c.deletes, open)
			}
			if rec := restart.ReadRecord(c.secrets["ns/a-certs"].Annotations); !rec.Verdict.IsZero() {
				t.Fatalf("a verdict %+v before --restart-ready-timeout", rec.Verdict)
			}
			c.statefulSet(workloads, "b")
			tickAt(r, c, tc.appears)
			if got := len(c.deletes) == 2; got != tc.restarted {
				t.Fatalf("b restarted %v at %s (stall at %s), want %v: deletes %v", got, tc.appears, stall, tc.restarted, c.deletes)
			}
			rec := restart.ReadRecord(c.secrets["ns/a-certs"].Annotations)
			p, _ := r.Plan()
			if tc.restarted {
				if !rec.Verdict.IsZero() || p.Stalled {
					t.Fatalf("stalled 1 ns early: verdict %+v, plan stalled %v", rec.Verdict, p.Stalled)
				}
				return
			}
			if rec.Verdict.Code != restart.Stalled || !rec.Verdict.At.Equal(stall) || !p.Stalled {
				t.Fatalf("at %s: verdict %+v, plan stalled %v; want stalled at that instant", stall, rec.Verdict, p.Stalled)
			}
			if !strings.Contains(strings.Join(c.events, ","), string(kube.ReasonRestartStalled)) {
				t.Fatalf("events %v, want %s", c.events, kube.ReasonRestartStalled)
			}
		})
	}
}

// TestRestarterRespectsTheTickDeadline: every API call takes 4 s of the budget's clock and the
// LeaseBudget is 30 s. The tick's context carries the deadline Clock()+LeaseBudget to the
// nanosecond; once the deadline is reached no restart is begun, no write is made, and the
// vclusters left are restarted by the next tick.
func TestRestarterRespectsTheTickDeadline(t *testing.T) {
	open := at(t, "2026-12-05T02:00:00Z")
	r, c, workloads := clockFleet(t, open, 5)
	c.ready = true
	for i := range 5 {
		c.vcluster(workloads, fmt.Sprintf("vc%d", i), open.Add(10*clockDay+time.Duration(i)*time.Hour), true)
	}
	r.LeaseBudget = 30 * time.Second
	c.budget = testingclock.NewFakeClock(time.Now().Add(time.Hour))
	r.Clock = c.budget.Now
	c.latency = 4 * time.Second
	began := c.budget.Now()
	c.deadline = began.Add(r.LeaseBudget)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.cancel = cancel
	var seen time.Time
	probe := &deadlineProbe{clockCluster: c, seen: &seen}
	r.API = probe
	started := r.Tick(ctx, open)
	if !seen.Equal(c.deadline) {
		t.Fatalf("the tick's context deadline is %s, want Clock()+LeaseBudget = %s", seen, c.deadline)
	}
	if len(started) == 0 || len(started) == 5 {
		t.Fatalf("restarted %v in one tick: want some, not all, within the budget", started)
	}
	for _, call := range c.calls {
		if !call.at.Before(c.deadline) && call.ok {
			t.Fatalf("%s succeeded at %s, after the tick's deadline %s", call.what, call.at, c.deadline)
		}
		if strings.HasPrefix(call.what, "secret ") && call.ctxDone {
			t.Fatalf("a restart was begun (%s at %s) after the deadline %s", call.what, call.at, c.deadline)
		}
	}
	// The next tick, with a fresh budget, goes on where this one stopped.
	c.deadline, c.cancel = time.Time{}, nil
	r.API = c
	c.latency = 0
	more := r.Tick(context.Background(), open.Add(time.Minute))
	if len(started)+len(more) != 5 {
		t.Fatalf("restarted %v then %v: want all 5 over two ticks", started, more)
	}
}

// deadlineProbe records the deadline of the context the tick's first call (Hold) gets.
type deadlineProbe struct {
	*clockCluster
	seen *time.Time
}

func (p *deadlineProbe) Hold(ctx context.Context) (bool, error) {
	if dl, ok := ctx.Deadline(); ok && p.seen.IsZero() {
		*p.seen = dl
	}
	return p.clockCluster.Hold(ctx)
}
