package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	fleetsvc "github.com/certguard/certguard/fleet"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/restart"
)

// The year's settings. The window is daily, 2 h, so that 3 restarts per opening serve 300
// vclusters with room to spare; ticks are 20 min apart while it is open (6 per opening) and at
// most 6 h apart while it is closed.
const (
	yearVclusters   = 300
	yearMax         = 3                // --max-concurrent
	yearStep        = 30 * time.Minute // between ticks while the window is open
	yearIdle        = 12 * time.Hour   // at most between ticks while it is closed
	yearReady       = 45 * time.Minute // --restart-ready-timeout: more than a step, so a pod back a step later is not stalled
	yearLease       = 45 * time.Minute // the Lease's duration, on the fake clock: more than a step, less than two
	yearRenewBefore = 30 * day         // the init containers' --renew-before
	yearFaults      = 0.1              // of the Record, DeletePod, Secret and Pod calls fail (Hold: a quarter of that)
	yearCrash       = 0.006            // per tick instant in the window: a replica is killed in the middle of its tick
	yearRollout     = 0.001            // per tick instant: a replica stops gracefully (releases the Lease) and restarts
	yearHang        = 0.003            // per tick instant: a replica stops ticking for up to 8 instants
	yearSlow        = 0.05             // of the restarted pods are not Ready within --restart-ready-timeout
)

// The kinds of vcluster in the year, by i%10 (yearKinds): four in ten guarded, one in ten of
// each kind the fleet must never restart.
const (
	yearGuarded   = "guarded"
	yearNoInit    = "no init container"
	yearK0sNew    = "k0s v1.35.1"
	yearGarbage   = "garbage ca.key"
	yearFull      = "--strategy full"
	yearDryRun    = "--dry-run"
	yearValueFrom = "valueFrom"
)

var yearKinds = [10]string{yearGuarded, yearGuarded, yearGuarded, yearGuarded, yearNoInit, yearK0sNew, yearGarbage, yearFull, yearDryRun, yearValueFrom}

// yearBlocker is the code /plan must report for each kind that is never restarted, written by
// hand from issue 17's list of blockers.
var yearBlocker = map[string]restart.Code{
	yearNoInit:    "no-init-container",
	yearK0sNew:    "k0s-renews",
	yearGarbage:   "would-refuse",
	yearFull:      "strategy-full",
	yearDryRun:    "dry-run",
	yearValueFrom: "settings-unknown",
}

// yearRenews: whether the init container renews the leaves when the pod restarts: the guarded
// ones, and the one whose --renew-before comes from a ConfigMap (it runs a leaf repair; only the
// fleet cannot know its settings). --strategy full resets the whole PKI instead (counted as a
// full reset), --dry-run changes nothing, a garbage ca.key is refused, k0s v1.35.1 and no init
// container leave them as they are (as far as this test plays them).
func yearRenews(kind string) bool { return kind == yearGuarded || kind == yearValueFrom }

// TestFleetYear is a year of `fleet serve --restart-due` under chaos, in a few minutes: 300
// vclusters on the real apiserver (30 of them created the same day, the others' leaves expiring
// one every 1.35 days over the year, ten guarded ones already due on the first day), followed
// by two replicas, each with its own informers, State and Lease identity, ticked on a fake clock
// in a random order; the daily window "02:00-04:00", --max-concurrent 3. The test plays the
// StatefulSet controller, the kubelet and certguard's init container: a deleted pod comes back
// at the next tick, Ready (5 % of them after --restart-ready-timeout), and with renewed leaves
// when its init container would renew them.
//
// Chaos, from a seeded random source (CERTGUARD_YEAR_SEED; 17 by default): 5 % of the Record,
// DeletePod, Secret and Pod calls fail with a 500, a timeout or a 409 (half of the failed writes
// failed after the server applied them: the answer was lost), a replica is killed in the middle
// of a tick (every call after that point fails) and replaced by a fresh one that knows only what
// the Secrets say, a replica stops gracefully and releases the Lease, or hangs for a while and
// the other takes the Lease over when it expires on the fake clock.
//
// It requires: no guarded vcluster's k0s leaves expire while it runs; every pod deleted is one
// the plan the tick executed (captured at the tick's first restart) booked restart-now on the
// opening open now (checked against the hand-computed window), due by the hand-computed leaf
// expiry; at most 3 restarts per opening and at most 3 pods down at once, whichever replica made
// them; no restart of the blocked kinds, so no full reset; every blocked vcluster on /plan with
// the code written by hand above; what the tick restarted is what it returned and what /plan
// then says is restarting, and every row it booked restart-now and did not restart is
// accounted for (a call of it failed, the replica died, its ca.key is garbage, its pod was down);
// never two replicas leading at one instant.
func TestFleetYear(t *testing.T) {
	if testing.Short() {
		t.Skip("a year of restarts: run without -short")
	}
	began := time.Now()
	// Every tick judges 300 StatefulSets with the binary's flag and env parsing, which allocates;
	// a lazier GC saves a fifth of the test's CPU on a 2-core machine.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seed := uint64(17)
	if s := os.Getenv("CERTGUARD_YEAR_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CERTGUARD_YEAR_SEED: %v", err)
		}
		seed = v
	}
	ns, err := kenv.Namespace(ctx, "year")
	if err != nil {
		t.Fatal(err)
	}
	home, err := kenv.Namespace(ctx, "certguard")
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClient(kenv.Config)
	if err != nil {
		t.Fatal(err)
	}
	w, err := restart.ParseWindow("02:00-04:00", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("CERTGUARD_SIM_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	s := &yearSim{t: t, ctx: ctx, c: c, ns: ns, home: home, log: log, rng: rand.New(rand.NewPCG(seed, 17)),
		settings: fleetsvc.PlanSettings{Window: w, MaxConcurrent: yearMax, RenewBefore: 120 * day, MinInterval: 24 * time.Hour,
			ReadyTimeout: yearReady, Jitter: fleetsvc.JitterFraction},
		vcs: map[string]*yearVC{}, written: map[string]bool{}, faults: map[string]int{}, perOpening: map[time.Time][]string{},
		expired: map[string]bool{}}

	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) // a Friday, noon
	end := t0.Add(pkigen.Year)
	sameDay := t0.Add(-300 * day).Truncate(day) // 30 created that day: their leaves expire on day 65
	withoutRenewBefore := func(c *corev1.Container) {
		c.Args = slices.DeleteFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--renew-before") })
	}
	for i := range yearVclusters {
		kind := yearKinds[i%10]
		issued := sameDay.Add(time.Duration(i) * 20 * time.Minute)
		if i >= 30 {
			expires := t0.Add(time.Duration(i-29) * 365 * day / (yearVclusters - 30))
			issued = expires.Add(-pkigen.Year + pkigen.Backdate)
		}
		base, opts := guarded, []func(*corev1.Container){}
		switch kind {
		case yearNoInit:
			base = unguarded
		case yearK0sNew:
			base = k0sNew
		case yearFull:
			opts = append(opts, func(c *corev1.Container) { c.Args = append(c.Args, "--strategy", "full") })
		case yearDryRun:
			opts = append(opts, func(c *corev1.Container) { c.Args = append(c.Args, "--dry-run") })
		case yearValueFrom:
			opts = append(opts, withoutRenewBefore, func(c *corev1.Container) {
				c.Env = append(c.Env, corev1.EnvVar{Name: "CERTGUARD_RENEW_BEFORE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "certguard"}, Key: "renew-before"}}})
			})
		}
		v := &yearVC{fleetVC: newFleetVC(t, ns, fmt.Sprintf("vc%03d", i), base, issued, kind == yearGarbage, opts...), kind: kind}
		s.vcs[v.key()] = v
		s.order = append(s.order, v)
	}
	created := time.Since(began)

	s.replicas = []*yearReplica{s.startReplica(), s.startReplica()}
	instants, leader, handovers, handoversOpen := 0, "", 0, 0
	stopped := false // at the end of the first opening that broke a rule: the rest of the year would say no more
	for now := t0; now.Before(end); now = yearNext(now) {
		s.now = now
		instants++
		_, open := yearOpening(now)
		if len(s.failures) > 0 && !open {
			stopped = true
			break
		}
		s.podsBack()

		var crash *yearReplica
		dieAfter := -1
		pick := s.replicas[s.rng.IntN(len(s.replicas))]
		switch x := s.rng.Float64(); {
		case x < yearCrash:
			if open { // where it hurts: while restarts are made
				crash, dieAfter = pick, s.rng.IntN(12)
				s.crashes++
			}
		case x < yearCrash+yearRollout:
			pick.lease.Release(ctx) // as fleet serve does on SIGTERM
			s.replace(pick)
			s.rollouts++
		case x < yearCrash+yearRollout+yearHang:
			pick.hungUntil = instants + 1 + s.rng.IntN(8)
			s.hangs++
		}
		leaders := []string{}
		for _, i := range s.rng.Perm(len(s.replicas)) {
			rep := s.replicas[i]
			if rep.hungUntil > instants {
				continue
			}
			d := -1
			if rep == crash {
				d = dieAfter
			}
			s.tick(rep, d)
			if _, held := rep.r.Plan(); held && !rep.api.dead {
				leaders = append(leaders, rep.id)
			}
		}
		if crash != nil {
			s.replace(crash)
		}
		if len(leaders) > 1 {
			s.fail("%s: two replicas lead at once: %v", now.Format(time.RFC3339), leaders)
		}
		if len(leaders) == 1 && leaders[0] != leader {
			if leader != "" {
				handovers++
				if open {
					handoversOpen++
				}
			}
			leader = leaders[0]
		}
		s.delivered(s.written)
		s.written = map[string]bool{}

		down := 0
		for _, v := range s.order {
			if v.down {
				down++
			}
			if v.kind == yearGuarded && !v.down && !now.Before(v.leafExpiry()) && !s.expired[v.key()] {
				s.expired[v.key()] = true
				s.fail("%s: the leaves of %s expired at %s while it ran", now.Format(time.RFC3339), v.key(), v.leafExpiry().Format(time.RFC3339))
			}
		}
		s.maxDown = max(s.maxDown, down)
		if down > yearMax {
			s.fail("%s: %d pods down at once, --max-concurrent %d", now.Format(time.RFC3339), down, yearMax)
		}
	}

	// The year is over: one more tick of every replica, then each blocked vcluster must be on
	// /plan with its code, and no guarded one blocked.
	if !stopped {
		s.now = end
	}
	s.podsBack()
	s.delivered(s.written)
	blocked, reported, guardedBlocked := 0, 0, 0
	for _, rep := range s.replicas {
		s.tick(rep, -1)
	}
	final := s.replicas[0].getPlan(t)
	rows := rowsByKey(final)
	var restarts, guardedRestarts, blockedRestarts, fullResets, neverRestarted int
	for _, v := range s.order {
		restarts += v.restarts
		row := rows[v.key()]
		switch want, isBlocked := yearBlocker[v.kind]; {
		case isBlocked:
			blocked++
			blockedRestarts += v.restarts
			if v.kind == yearFull {
				fullResets += v.restarts
			}
			if row.State == fleetsvc.StateBlocked && row.Blocker == want {
				reported++
			} else if !stopped {
				s.fail("%s (%s): /plan says %s %q at the end of the year, want blocked %q", v.key(), v.kind, row.State, row.Blocker, want)
			}
		default:
			guardedRestarts += v.restarts
			if v.restarts == 0 && !stopped {
				neverRestarted++
				s.fail("%s (guarded) was never restarted in the year", v.key())
			}
			if row.State == fleetsvc.StateBlocked {
				guardedBlocked++
				s.fail("%s (guarded) is blocked at the end of the year: %q %s", v.key(), row.Blocker, row.Note)
			}
			if !v.leafExpiry().After(end) && !s.expired[v.key()] && !stopped {
				s.expired[v.key()] = true
				s.fail("the leaves of %s expired at %s", v.key(), v.leafExpiry().Format(time.RFC3339))
			}
		}
	}
	maxPerOpening := 0
	for _, list := range s.perOpening {
		maxPerOpening = max(maxPerOpening, len(list))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "the year under chaos, seed %d: %d vclusters (%d guarded, %d blocked: %d of each kind), created in %s; %d tick instants in %s;\n",
		seed, yearVclusters, yearVclusters-blocked, blocked, yearVclusters/10, created.Round(time.Second), instants, time.Since(began).Round(time.Second))
	if stopped {
		fmt.Fprintf(&b, "STOPPED on %s, after the first opening that broke a rule\n", s.now.Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "%d replicas started (%s), %d of them after a kill mid-tick, %d after a graceful stop; %d hangs; %d Lease handovers (%d while the window was open); injected faults: %d 500, %d timeouts, %d 409 (%d of the failed writes applied), %d on Hold\n",
		s.replicaID, s.starting.Round(time.Second), s.crashes, s.rollouts, s.hangs, handovers, handoversOpen, s.faults["500"], s.faults["timeout"], s.faults["409"], s.faults["applied"], s.faults["hold"])
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tGOT\tWANT")
	fmt.Fprintf(tw, "restarts (pods deleted)\t%d\t%d guarded vclusters, each at least once\n", restarts, yearVclusters-blocked)
	fmt.Fprintf(tw, "k0s leaves expired while running (guarded)\t%d\t0\n", len(s.expired))
	fmt.Fprintf(tw, "restarts outside an open window\t%d\t0\n", s.outside)
	fmt.Fprintf(tw, "restarts not booked restart-now on this opening by the plan the tick executed\t%d\t0\n", s.notBooked)
	fmt.Fprintf(tw, "restarts before the leaves were due (expiry - 30d)\t%d\t0\n", s.notDue)
	fmt.Fprintf(tw, "max restarts per opening\t%d\t<= %d\n", maxPerOpening, yearMax)
	fmt.Fprintf(tw, "max pods down at once (in flight)\t%d\t<= %d\n", s.maxDown, yearMax)
	fmt.Fprintf(tw, "restarts of blocked vclusters\t%d\t0\n", blockedRestarts)
	fmt.Fprintf(tw, "full resets (restarts of --strategy full)\t%d\t0\n", fullResets)
	fmt.Fprintf(tw, "blocked vclusters on /plan with their code\t%d\t%d\n", reported, blocked)
	fmt.Fprintf(tw, "ticks whose /plan did not show what ran\t%d\t0\n", s.planMismatch)
	fmt.Fprintf(tw, "blocked rows with another code during the year\t%d\t0\n", s.wrongCode)
	fmt.Fprintf(tw, "guarded vclusters never restarted, or blocked at the end\t%d\t0\n", neverRestarted+guardedBlocked)
	tw.Flush()
	t.Log("\n" + b.String())
	for i, m := range s.failures {
		if i == 30 {
			t.Errorf("… and %d more", len(s.failures)-30)
			break
		}
		t.Error(m)
	}
}

// yearOpening is the daily window's opening on now's day, and whether it is open: hand-computed,
// not asked of restart.Window.
func yearOpening(now time.Time) (time.Time, bool) {
	o := now.UTC().Truncate(day).Add(2 * time.Hour)
	return o, !now.Before(o) && now.Before(o.Add(2*time.Hour))
}

// yearNext is the next tick instant: a step later while the window is open, else at most
// yearIdle later and never past the next opening.
func yearNext(now time.Time) time.Time {
	o, open := yearOpening(now)
	if open {
		return now.Add(yearStep)
	}
	if !now.Before(o) {
		o = o.Add(day)
	}
	return minTime(now.Add(yearIdle), o)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

type yearVC struct {
	*fleetVC
	kind     string
	down     bool      // its pod was deleted and is not back yet
	back     time.Time // when it comes back
	restarts int
}

// yearSim is the year's world: the vclusters, the replicas, the fake clock, the chaos and what
// was counted. Everything runs on the test's goroutine but the informers.
type yearSim struct {
	t         *testing.T
	ctx       context.Context
	c         *kube.Client
	ns, home  string
	log       *slog.Logger
	rng       *rand.Rand
	settings  fleetsvc.PlanSettings
	now       time.Time
	vcs       map[string]*yearVC
	order     []*yearVC
	replicas  []*yearReplica
	replicaID int

	cur     yearTick        // the tick being run
	written map[string]bool // Secrets written since the informers last caught up

	faults                           map[string]int
	crashes, rollouts, hangs         int
	perOpening                       map[time.Time][]string // "<key> by <replica> at <time>"
	expired                          map[string]bool
	outside, notBooked, notDue       int
	maxDown, planMismatch, wrongCode int
	failures                         []string
	starting                         time.Duration // spent starting replicas (their informers' first LIST)
}

// yearTick is what one replica's tick did, as its RestartAPI saw it.
type yearTick struct {
	rep *yearReplica
	// exec is the plan the tick executed, captured when it began its first restart.
	exec    *fleetsvc.Plan
	faulted map[string]bool // vclusters one of whose calls failed (injected, or the replica died)
	deleted []string        // pods deleted on the server, in order
	lost    map[string]bool // deleted, but the answer was an injected error
}

func (s *yearSim) fail(format string, args ...any) {
	s.failures = append(s.failures, fmt.Sprintf(format, args...))
}

// yearReplica is one `fleet serve --restart-due` process: its informers, State, Lease identity
// and restarter. A fresh one knows only what the API server says.
type yearReplica struct {
	id        string
	r         *fleetsvc.Restarter
	api       *chaosAPI
	state     *fleetsvc.State
	lease     *kube.Lease
	plan      func(t testing.TB) fleetsvc.Plan
	stop      context.CancelFunc
	hungUntil int
}

func (s *yearSim) startReplica() *yearReplica {
	began := time.Now()
	defer func() { s.starting += time.Since(began) }()
	s.replicaID++
	id := fmt.Sprintf("replica-%d", s.replicaID)
	ctx, cancel := context.WithCancel(s.ctx)
	onErr := func(err error) {
		if ctx.Err() == nil {
			s.t.Errorf("informer of %s: %v", id, err)
		}
	}
	state, workloads, synced := fleetInformers(s.t, ctx, s.c, s.ns, onErr)
	waitUntil(s.t, time.Minute, "the informers of "+id+" to sync", synced)
	rep := &yearReplica{id: id, state: state, stop: cancel}
	rep.lease = &kube.Lease{Client: s.c, Namespace: s.home, Name: "certguard-fleet", Identity: id, Duration: yearLease,
		Clock: func() time.Time { return s.now }}
	rep.api = &chaosAPI{sim: s, rep: rep, real: &fleetsvc.KubeRestartAPI{Client: s.c, Lease: rep.lease, Log: s.log, Instance: id}, dieAfter: -1}
	rep.r = &fleetsvc.Restarter{State: state, Workloads: workloads, Parse: parseInitContainer, API: rep.api, Settings: s.settings, Log: s.log}
	// /plan as fleet serve serves it with --restart-due: the restarter's plan.
	h := (&fleetsvc.Server{State: state, Now: func() time.Time { return s.now }, RenewBefore: s.settings.RenewBefore, Log: s.log,
		Synced: func() bool { return true }, Plan: func() fleetsvc.Plan { p, _ := rep.r.Plan(); return p }}).Handler()
	rep.plan = func(t testing.TB) fleetsvc.Plan {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/plan", nil))
		var p fleetsvc.Plan
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("/plan of %s: %v: %s", id, err, rec.Body.String())
		}
		return p
	}
	return rep
}

func (rep *yearReplica) getPlan(t testing.TB) fleetsvc.Plan { return rep.plan(t) }

// replace ends a replica (its informers stop; a killed one never releases the Lease) and starts
// a fresh one with a new identity, as a new pod of the Deployment.
func (s *yearSim) replace(rep *yearReplica) {
	rep.stop()
	i := slices.Index(s.replicas, rep)
	s.replicas[i] = s.startReplica()
}

// podsBack plays the StatefulSet controller, the kubelet and the init container: the pods deleted
// earlier come back, renewed when their init container renews, and Ready.
func (s *yearSim) podsBack() {
	for _, v := range s.order {
		if !v.down || s.now.Before(v.back) {
			continue
		}
		if yearRenews(v.kind) {
			v.renew(s.t, s.now)
			s.written[v.key()] = true
		}
		v.createPod(s.t)
		v.down = false
	}
	// As between two real ticks 10 s apart, the informers deliver the new leaves first.
	s.delivered(s.written)
	s.written = map[string]bool{}
}

// delivered waits until every replica's informer holds what the API server holds of these
// Secrets: their restart record and their leaves.
func (s *yearSim) delivered(keys map[string]bool) {
	if len(keys) == 0 {
		return
	}
	type want struct {
		rec    restart.Record
		expiry time.Time
	}
	wants := map[string]want{}
	for key := range keys {
		v := s.vcs[key]
		sec, err := kenv.Client.CoreV1().Secrets(v.ns).Get(s.ctx, v.release+"-certs", metav1.GetOptions{})
		if err != nil {
			s.t.Fatal(err)
		}
		wants[key] = want{restart.ReadRecord(sec.Annotations), v.leafExpiry()}
	}
	for _, rep := range s.replicas {
		waitUntil(s.t, 30*time.Second, "the informers of "+rep.id+" to deliver the Secrets written", func() bool {
			n := 0
			for _, x := range rep.state.Vclusters(s.now, 0, nil, nil) {
				if w, ok := wants[x.Key()]; ok && x.Record == w.rec && !x.Row.LeafExpiry.Before(w.expiry) {
					n++
				}
			}
			return n == len(wants)
		})
	}
}

// tick runs one replica's Tick at s.now (dieAfter >= 0: the process dies after that many API
// calls) and checks what it did against the plan it executed.
func (s *yearSim) tick(rep *yearReplica, dieAfter int) {
	s.cur = yearTick{rep: rep, faulted: map[string]bool{}, lost: map[string]bool{}}
	rep.api.dieAfter, rep.api.calls, rep.api.dead = dieAfter, 0, false
	got := rep.r.Tick(s.ctx, s.now)
	tk, now := s.cur, s.now
	at := now.Format(time.RFC3339)
	opening, open := yearOpening(now)
	exec := tk.exec
	after, held := rep.r.Plan()
	if exec == nil && held && !rep.api.dead {
		exec = &after // nothing restarted: the plan was not built again
	}
	var execRows map[string]fleetsvc.PlanRow
	if exec != nil {
		execRows = rowsByKey(*exec)
	}
	mismatch := false
	for _, key := range tk.deleted {
		v := s.vcs[key]
		v.restarts++
		v.down = true
		v.back = now.Add(yearStep)
		if s.rng.Float64() < yearSlow {
			v.back = now.Add(yearReady + yearStep)
		}
		what := key + " by " + rep.id + " at " + now.Format("15:04")
		if tk.lost[key] {
			what += " (the delete's answer was lost)"
		}
		s.perOpening[opening] = append(s.perOpening[opening], what)
		if list := s.perOpening[opening]; len(list) > yearMax {
			s.fail("opening %s: %d restarts, --max-concurrent %d: %s", opening.Format(time.RFC3339), len(list), yearMax, strings.Join(list, ", "))
		}
		if want, blocked := yearBlocker[v.kind]; blocked {
			s.fail("%s: %s (%s, blocked %q) restarted by %s", at, key, v.kind, want, rep.id)
		}
		if !open {
			s.outside++
			s.fail("%s: %s restarted by %s outside the window", at, key, rep.id)
		}
		if row, ok := execRows[key]; !ok || row.State != fleetsvc.StateRestartNow || !row.Window.Equal(opening) {
			s.notBooked++
			s.fail("%s: %s restarted by %s, but the plan the tick executed has it %s on %s", at, key, rep.id, row.State, row.Window.Format(time.RFC3339))
		}
		if now.Before(v.leafExpiry().Add(-yearRenewBefore)) {
			s.notDue++
			s.fail("%s: %s restarted by %s, its leaves are due only at %s", at, key, rep.id, v.leafExpiry().Add(-yearRenewBefore).Format(time.RFC3339))
		}
	}
	// What Tick returned is what it deleted, but for the deletes whose answer was lost.
	for _, key := range got {
		if !slices.Contains(tk.deleted, key) {
			mismatch = true
			s.fail("%s: %s's Tick returned %s, whose pod it did not delete", at, rep.id, key)
		}
	}
	for _, key := range tk.deleted {
		if !slices.Contains(got, key) && !tk.lost[key] {
			mismatch = true
			s.fail("%s: %s deleted the pod of %s, but its Tick did not return it", at, rep.id, key)
		}
	}
	// Every row booked restart-now was restarted, or something stopped it.
	if exec != nil {
		for _, row := range exec.Rows {
			key := row.Namespace + "/" + row.Release
			v := s.vcs[key]
			if row.State != fleetsvc.StateRestartNow || slices.Contains(tk.deleted, key) || tk.faulted[key] || rep.api.dead || v.kind == yearGarbage || v.down {
				continue
			}
			mismatch = true
			s.fail("%s: %s's plan booked %s (%s) restart-now, and nothing restarted it or failed", at, rep.id, key, v.kind)
		}
	}
	// /plan says what ran: the pods deleted are restarting.
	if len(tk.deleted) > 0 && !rep.api.dead {
		rows := rowsByKey(rep.getPlan(s.t))
		for _, key := range tk.deleted {
			if row := rows[key]; row.State != fleetsvc.StateRestarting && !tk.lost[key] {
				mismatch = true
				s.fail("%s: %s deleted the pod of %s; /plan says %s", at, rep.id, key, row.State)
			}
		}
	}
	if mismatch {
		s.planMismatch++
	}
	// Every replica's plan reports the blocked kinds with their code (the garbage ca.key is
	// known only once the restarter has read it fresh: checked at the end of the year).
	if !rep.api.dead {
		for _, row := range after.Rows {
			v := s.vcs[row.Namespace+"/"+row.Release]
			if want, ok := yearBlocker[v.kind]; ok && v.kind != yearGarbage && (row.State != fleetsvc.StateBlocked || row.Blocker != want) {
				s.wrongCode++
				s.fail("%s: %s's plan has %s (%s) %s %q, want blocked %q", at, rep.id, v.key(), v.kind, row.State, row.Blocker, want)
			}
		}
	}
}

// chaosAPI is a replica's RestartAPI on the real one: it injects faults, kills the process at a
// chosen call, records what reached the server, and captures the plan a tick executes.
type chaosAPI struct {
	sim      *yearSim
	rep      *yearReplica
	real     fleetsvc.RestartAPI
	dieAfter int // the calls of this tick after which the process is dead (-1: never)
	calls    int
	dead     bool
	probing  bool   // a Tick of its own restarter, made to read the plan: it holds no Lease
	last     string // the previous call, "Pod <key>"
}

// errKilled is every call's answer once the process is dead.
var errKilled = errors.New("the process was killed")

func (a *chaosAPI) alive(key string) bool {
	a.calls++
	if a.dieAfter >= 0 && a.calls > a.dieAfter {
		a.dead = true
	}
	if a.dead && key != "" {
		a.sim.cur.faulted[key] = true
	}
	return !a.dead
}

// fault draws an injected failure for a call: before (the call does not reach the server) or,
// for a write, after (the server applied it, the answer was lost).
func (a *chaosAPI) fault(key, resource string, write bool) (before, after error) {
	s := a.sim
	if s.rng.Float64() >= yearFaults {
		return nil, nil
	}
	n := 2 // a read fails with a 500 or a timeout; a write may also meet a conflict
	if write {
		n = 3
	}
	var err error
	switch s.rng.IntN(n) {
	case 0:
		err = apierrors.NewInternalError(errors.New("injected"))
		s.faults["500"]++
	case 1:
		err = apierrors.NewTimeoutError("injected", 1)
		s.faults["timeout"]++
	case 2:
		s.faults["409"]++
		s.cur.faulted[key] = true
		return apierrors.NewConflict(schema.GroupResource{Resource: resource}, key, errors.New("injected")), nil // never applied
	}
	s.cur.faulted[key] = true
	if write && s.rng.IntN(2) == 0 {
		s.faults["applied"]++
		return nil, err
	}
	return err, nil
}

func (a *chaosAPI) Hold(ctx context.Context) (bool, error) {
	if a.probing {
		return false, nil
	}
	a.last = ""
	if !a.alive("") {
		return false, errKilled
	}
	if a.sim.rng.Float64() < yearFaults/4 {
		a.sim.faults["hold"]++
		return false, apierrors.NewInternalError(errors.New("injected"))
	}
	return a.real.Hold(ctx)
}

func (a *chaosAPI) Secret(ctx context.Context, namespace, name string) (*pki.Secret, error) {
	key := namespace + "/" + strings.TrimSuffix(name, "-certs")
	// The restarter reads a Secret fresh first thing when it starts a restart, and right after
	// reading the pod when it follows one: the first read not after the same vcluster's pod is
	// the tick's first restart, when it has built the plan it executes. Read that plan with a
	// Tick of the same restarter that does not hold the Lease: it builds it from the same facts
	// (its State, its own writes, what it saw in this opening) and does nothing else.
	if a.last != "Pod "+key && a.sim.cur.exec == nil && !a.probing {
		a.probing = true
		a.rep.r.Tick(ctx, a.sim.now)
		a.probing = false
		p, _ := a.rep.r.Plan()
		a.sim.cur.exec = &p
	}
	a.last = "Secret " + key
	if !a.alive(key) {
		return nil, errKilled
	}
	if before, _ := a.fault(key, "secrets", false); before != nil {
		return nil, before
	}
	return a.real.Secret(ctx, namespace, name)
}

func (a *chaosAPI) Pod(ctx context.Context, namespace, name string) (*kube.PodState, error) {
	key := namespace + "/" + strings.TrimSuffix(name, "-0")
	a.last = "Pod " + key
	if !a.alive(key) {
		return nil, errKilled
	}
	if before, _ := a.fault(key, "pods", false); before != nil {
		return nil, before
	}
	return a.real.Pod(ctx, namespace, name)
}

func (a *chaosAPI) Record(ctx context.Context, namespace, secret string, annotations map[string]string) error {
	key := namespace + "/" + strings.TrimSuffix(secret, "-certs")
	a.last = "Record " + key
	if !a.alive(key) {
		return errKilled
	}
	before, after := a.fault(key, "secrets", true)
	if before != nil {
		return before
	}
	if err := a.real.Record(ctx, namespace, secret, annotations); err != nil {
		return err
	}
	a.sim.written[key] = true
	return after
}

func (a *chaosAPI) DeletePod(ctx context.Context, namespace, name, uid string) error {
	key := namespace + "/" + strings.TrimSuffix(name, "-0")
	a.last = "DeletePod " + key
	if !a.alive(key) {
		return errKilled
	}
	before, after := a.fault(key, "pods", true)
	if before != nil {
		return before
	}
	if err := a.real.DeletePod(ctx, namespace, name, uid); err != nil {
		return err
	}
	a.sim.cur.deleted = append(a.sim.cur.deleted, key)
	if after != nil {
		a.sim.cur.lost[key] = true
	}
	return after
}

func (a *chaosAPI) Event(ctx context.Context, namespace, statefulSet, eventType string, reason kube.Reason, message string) {
	a.last = "Event"
	if a.probing || !a.alive("") {
		return
	}
	a.real.Event(ctx, namespace, statefulSet, eventType, reason, message)
}

// waitUntil waits for cond, polling; the year's own, with room for a loaded 2-core machine (an
// informer's first LIST of 300 Secrets has taken more than 10 s there).
func waitUntil(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(within); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waited %s for %s", within, what)
		}
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the informer did not deliver a change within 10 s")
		}
	}
}

// lostDeleteAPI is the real RestartAPI, but the answer to its first pod delete is lost: the
// server deleted the pod, the client saw a timeout (as on a slow or restarting API server).
type lostDeleteAPI struct {
	fleetsvc.RestartAPI
	lost    bool
	deleted []string
}

func (a *lostDeleteAPI) DeletePod(ctx context.Context, namespace, name, uid string) error {
	if err := a.RestartAPI.DeletePod(ctx, namespace, name, uid); err != nil {
		return err
	}
	a.deleted = append(a.deleted, strings.TrimSuffix(name, "-0"))
	if !a.lost {
		a.lost = true
		return apierrors.NewTimeoutError("the answer was lost", 1)
	}
	return nil
}

// TestFleetRestartLostDeleteAnswer: four guarded vclusters due, --max-concurrent 3, and the
// answer to the first delete is a timeout although the server deleted the pod. A timeout says
// nothing of whether the delete happened, so the opening has had 3 restarts: the next tick in it
// must not restart the fourth. (Found by TestFleetYear: 4 restarts in one opening.)
func TestFleetRestartLostDeleteAnswer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns, _ := kenv.Namespace(ctx, "lostdelete")
	home, _ := kenv.Namespace(ctx, "certguard")
	t0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC) // the window "02:00-04:00" opens
	vcs := map[string]*fleetVC{}
	for i, rel := range []string{"a", "b", "c", "d"} {
		vcs[rel] = newFleetVC(t, ns, rel, guarded, t0.Add(-pkigen.Year+10*day+time.Duration(i)*time.Hour), false)
	}
	c, err := kube.NewClient(kenv.Config)
	if err != nil {
		t.Fatal(err)
	}
	state, workloads, synced := fleetInformers(t, ctx, c, ns, func(err error) { t.Error(err) })
	waitUntil(t, time.Minute, "the informers to sync", synced)
	w, err := restart.ParseWindow("02:00-04:00", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	api := &lostDeleteAPI{RestartAPI: &fleetsvc.KubeRestartAPI{Client: c, Log: quiet, Instance: "r",
		Lease: &kube.Lease{Client: c, Namespace: home, Name: "certguard-fleet", Identity: "r", Duration: time.Hour, Clock: func() time.Time { return now }}}}
	r := &fleetsvc.Restarter{State: state, Workloads: workloads, Parse: parseInitContainer, API: api, Log: quiet,
		Settings: fleetsvc.PlanSettings{Window: w, MaxConcurrent: 3, MinInterval: 24 * time.Hour, ReadyTimeout: 45 * time.Minute, RenewBefore: 120 * day}}

	r.Tick(ctx, now)
	if len(api.deleted) != 3 {
		t.Fatalf("first tick deleted %v, want 3 pods", api.deleted)
	}
	// The StatefulSet controller, the kubelet and the init container: back, renewed, Ready.
	now = t0.Add(30 * time.Minute)
	for _, rel := range api.deleted {
		vcs[rel].renew(t, now)
		vcs[rel].createPod(t)
	}
	waitUntil(t, 30*time.Second, "the informer to deliver the renewed leaves", func() bool {
		n := 0
		for _, v := range state.Vclusters(now, 0, nil, nil) {
			if v.Row.LeafExpiry.After(now.Add(300 * day)) {
				n++
			}
		}
		return n == 3
	})
	r.Tick(ctx, now)
	if len(api.deleted) != 3 {
		t.Errorf("restarted %v in one opening, --max-concurrent 3: the delete whose answer was lost was not counted", api.deleted)
	}
}
