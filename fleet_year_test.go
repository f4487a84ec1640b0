package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	fleetsvc "github.com/certguard/certguard/fleet"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/restart"
)

// TestFleetYear is a year of `fleet serve --restart-due` in a few minutes: 100 vclusters on the
// real apiserver, their k0s leaves expiring one every 3.65 days over the year, followed by the
// real informers, restarted by the real restarter through the real API (Lease, Secret record,
// Events, pod deletion), with a clock the test advances: 3 h at a time, 10 min at a time while
// the weekly window ("Sat 02:00-04:00") is open. The test plays the StatefulSet controller, the
// kubelet and certguard's init container: a deleted pod comes back one step (10 min) later,
// Ready, and a guarded vcluster's Secret then holds leaves issued at that moment.
//
// Of the 100: 70 run certguard's init container, 10 do not, 10 run k0s v1.35.1 (which renews
// itself), 10 run the init container but have a garbage ca.key (certguard would refuse the
// repair). It counts, and requires: 0 leaves of the 70 that expire while they run, 0 restarts
// outside the window, never more than 2 (--max-concurrent) at once, 0 restarts of the other 30,
// and each of those reported by the restarter: blocked (garbage ca.key), or why it is never
// restarted (no init container, k0s ≥ v1.35.1).
func TestFleetYear(t *testing.T) {
	if testing.Short() {
		t.Skip("a year of restarts: run without -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns, _ := kenv.Namespace(ctx, "year")
	home, _ := kenv.Namespace(ctx, "certguard")
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) // a Friday
	const n = 100
	vcs := make([]*fleetVC, n)
	kindOf := func(i int) (string, bool) {
		switch i % 10 {
		case 7:
			return unguarded, false
		case 8:
			return k0sNew, false
		case 9:
			return guarded, true // refused: garbage ca.key
		}
		return guarded, false
	}
	for i := range n {
		kind, broken := kindOf(i)
		expires := t0.Add(time.Duration(i+1) * 365 * day / n)
		vcs[i] = newFleetVC(t, ns, fmt.Sprintf("vc%02d", i), kind, expires.Add(-pkigen.Year+pkigen.Backdate), broken)
	}
	byKey := map[string]*fleetVC{}
	for _, v := range vcs {
		byKey[v.key()] = v
	}

	c, err := kube.NewClient(kenv.Config)
	if err != nil {
		t.Fatal(err)
	}
	state, workloads := fleetsvc.NewState(), fleetsvc.NewWorkloads()
	onErr := func(err error) { t.Errorf("informer: %v", err) }
	sinf, ssynced, err := kube.CertSecretInformer(c, ns, fleetsvc.Parse, state.Set, onErr)
	if err != nil {
		t.Fatal(err)
	}
	winf, wsynced, err := kube.StatefulSetInformer(c, ns, workloads.Set, onErr)
	if err != nil {
		t.Fatal(err)
	}
	go kube.RunInformer(ctx, sinf)
	go kube.RunInformer(ctx, winf)
	for !ssynced() || !wsynced() {
		time.Sleep(20 * time.Millisecond)
	}
	w, err := restart.ParseWindow("Sat 02:00-04:00", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("CERTGUARD_SIM_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	r := &fleetsvc.Restarter{State: state, Workloads: workloads, Parse: parseInitContainer, Log: log,
		Settings: fleetsvc.PlanSettings{Window: w, MaxConcurrent: 2, MinInterval: 24 * time.Hour, ReadyTimeout: 15 * time.Minute, RenewBefore: 120 * day, Jitter: fleetsvc.JitterFraction},
		API: &fleetsvc.KubeRestartAPI{Client: c, Log: log, Instance: "sim",
			Lease: &kube.Lease{Client: c, Namespace: home, Name: "certguard-fleet", Identity: "sim", Duration: time.Minute}}}

	var (
		restarts      = map[string]int{}
		outsideWindow int
		maxAtOnce     int
		expiredUp     = map[string]bool{} // guarded vclusters whose leaves expired while they ran
		reported      = map[string]bool{} // the other 30: said blocked (garbage ca.key) or why not restarted
		pending       = map[string]time.Time{}
		ticks         int
	)
	end := t0.Add(pkigen.Year)
	for now := t0; now.Before(end); {
		// The pods deleted one step ago come back: renewed by the init container, then Ready.
		for key, at := range pending {
			if now.After(at) {
				v := byKey[key]
				v.renew(t, now)
				v.createPod(t)
				delete(pending, key)
				// Wait for the informer to deliver the new leaves, as it does within
				// milliseconds between two real ticks 10 s apart.
				waitFor(t, func() bool { return leafExpiryIn(state, now, key).After(now.Add(300 * day)) })
			}
		}
		started := r.Tick(ctx, now)
		ticks++
		for _, key := range started {
			restarts[key]++
			if !w.Contains(now) {
				outsideWindow++
			}
			pending[key] = now
		}
		maxAtOnce = max(maxAtOnce, len(pending))
		plan, _ := r.Plan()
		rows := map[string]fleetsvc.PlanRow{}
		for _, row := range plan.Rows {
			rows[row.Namespace+"/"+row.Release] = row
		}
		for _, v := range vcs {
			switch {
			case v.kind == guarded && !isBroken(v, vcs):
				if !now.Before(v.leafExpiry()) && pending[v.key()].IsZero() {
					expiredUp[v.key()] = true
				}
			default: // the restarter must say, with a code, why it does not restart it
				if rows[v.key()].State == fleetsvc.StateBlocked && rows[v.key()].Blocker != "" {
					reported[v.key()] = true
				}
			}
		}
		step := 3 * time.Hour
		if w.Contains(now) {
			step = 10 * time.Minute
		} else if next := w.NextOpening(now); next.Sub(now) < step {
			step = next.Sub(now)
		}
		now = now.Add(step)
	}

	var guardedRestarts, otherRestarts, healthyGuarded int
	for _, v := range vcs {
		if v.kind == guarded && !isBroken(v, vcs) {
			healthyGuarded++
			guardedRestarts += restarts[v.key()]
			if restarts[v.key()] == 0 {
				t.Errorf("%s was never restarted", v.key())
			}
		} else {
			otherRestarts += restarts[v.key()]
			if restarts[v.key()] > 0 {
				t.Errorf("%s (%s) was restarted %d times", v.key(), v.kind, restarts[v.key()])
			}
		}
	}
	notReported := 0
	for _, v := range vcs {
		if (v.kind != guarded || isBroken(v, vcs)) && !reported[v.key()] {
			notReported++
		}
	}
	t.Logf("a year in %d ticks: %d guarded vclusters restarted %d times; %d k0s leaves expired while running; %d restarts outside the window; at most %d at once; %d restarts of the 30 others, %d of them not reported",
		ticks, healthyGuarded, guardedRestarts, len(expiredUp), outsideWindow, maxAtOnce, otherRestarts, notReported)
	if len(expiredUp) != 0 {
		t.Errorf("k0s leaves expired while running: %v", expiredUp)
	}
	if outsideWindow != 0 {
		t.Errorf("%d restarts outside the window", outsideWindow)
	}
	if maxAtOnce > 2 {
		t.Errorf("%d restarts at once, --max-concurrent 2", maxAtOnce)
	}
	if notReported != 0 {
		t.Errorf("%d of the 30 others were never reported", notReported)
	}
}

// isBroken: the guarded vclusters with a garbage ca.key (every tenth, from index 9).
func isBroken(v *fleetVC, vcs []*fleetVC) bool {
	for i, x := range vcs {
		if x == v {
			return i%10 == 9
		}
	}
	return false
}

// leafExpiryIn is the earliest k0s leaf expiry the state holds for key.
func leafExpiryIn(s *fleetsvc.State, now time.Time, key string) time.Time {
	for _, row := range s.Rows(now, 0) {
		if row.Namespace+"/"+row.Release == key {
			return row.LeafExpiry
		}
	}
	return time.Time{}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the informer did not deliver a change within 10 s")
		}
	}
}
