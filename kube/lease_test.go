package kube_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/certguard/certguard/kube"
	testingclock "k8s.io/utils/clock/testing"
)

// TestLease: two replicas' Leases on the real apiserver, their time driven by a fake clock
// (Lease.Clock), so that the bounds are exact and nothing sleeps. Exactly one holds it at a
// time; the other takes it only after the holder stopped renewing for the whole duration
// (measured on its own clock), or at once after a release.
func TestLease(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	c, err := kube.NewClient(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	clock := testingclock.NewFakeClock(time.Now())
	const d = 15 * time.Second
	a := &kube.Lease{Client: c, Namespace: ns, Name: "l", Identity: "a", Duration: d, Clock: clock.Now}
	b := &kube.Lease{Client: c, Namespace: ns, Name: "l", Identity: "b", Duration: d, Clock: clock.Now}
	hold := func(l *kube.Lease) bool {
		t.Helper()
		ok, err := l.Hold(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !hold(a) {
		t.Fatal("a could not take a new Lease")
	}
	// a renews every d/4 for twice the duration: b, asking after each renewal and just before
	// the next, never gets it.
	for range 8 {
		clock.Step(d/4 - time.Millisecond)
		if hold(b) {
			t.Fatal("b took a Lease that a renews, before a's renewal")
		}
		clock.Step(time.Millisecond)
		if !hold(a) {
			t.Fatal("a lost a Lease it renews")
		}
		if hold(b) {
			t.Fatal("b took a Lease that a renews")
		}
	}
	// a stops renewing; b saw its last renewal at this instant. b gets it exactly d later on its
	// own clock, not a millisecond sooner.
	clock.Step(d - time.Millisecond)
	if hold(b) {
		t.Fatalf("b took the Lease %s after a's last renewal, before its %s duration", d-time.Millisecond, d)
	}
	clock.Step(time.Millisecond)
	if !hold(b) {
		t.Fatalf("b did not take the Lease %s after a's last renewal", d)
	}
	if hold(a) {
		t.Error("a took the Lease back from b, who holds it")
	}
	// A release hands it over at once: no time passes.
	b.Release(ctx)
	if !hold(a) {
		t.Error("a could not take a released Lease")
	}
	a.Release(ctx)

	// Contenders at the same instant, 20 rounds: never two winners (nor none).
	for round := range 20 {
		ls := []*kube.Lease{
			{Client: c, Namespace: ns, Name: "race", Identity: "x", Duration: d, Clock: clock.Now},
			{Client: c, Namespace: ns, Name: "race", Identity: "y", Duration: d, Clock: clock.Now},
			{Client: c, Namespace: ns, Name: "race", Identity: "z", Duration: d, Clock: clock.Now},
		}
		var wg sync.WaitGroup
		won := make([]bool, len(ls))
		for i, l := range ls {
			wg.Go(func() { won[i], _ = l.Hold(ctx) })
		}
		wg.Wait()
		n := 0
		for _, w := range won {
			if w {
				n++
			}
		}
		if n != 1 { // one Update carries the version all three read: exactly one wins
			t.Fatalf("round %d: %d replicas hold the Lease at once", round, n)
		}
		for i, w := range won {
			if w {
				ls[i].Release(ctx)
			}
		}
	}
}
