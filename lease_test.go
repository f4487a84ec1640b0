package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/certguard/certguard/kube"
)

// TestLease: two replicas' Leases on the real apiserver. Exactly one holds it at a time; the
// other takes it only after the holder stopped renewing for the whole duration (measured on
// its own clock), or at once after a release.
func TestLease(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "lease")
	c, err := kube.NewClient(kenv.Config)
	if err != nil {
		t.Fatal(err)
	}
	const d = 2 * time.Second
	a := &kube.Lease{Client: c, Namespace: ns, Name: "l", Identity: "a", Duration: d}
	b := &kube.Lease{Client: c, Namespace: ns, Name: "l", Identity: "b", Duration: d}
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
	// a renews every 500 ms for 4 s (twice the duration): b never gets it.
	var stopped time.Time // a's last renewal
	for end := time.Now().Add(2 * d); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if !hold(a) {
			t.Fatal("a lost a Lease it renews")
		}
		stopped = time.Now()
		if hold(b) {
			t.Fatal("b took a Lease that a renews")
		}
	}
	// a stops; b keeps asking and gets it no sooner than d after a's last renewal.
	for !hold(b) {
		time.Sleep(100 * time.Millisecond)
		if time.Since(stopped) > 3*d {
			t.Fatal("b never took the Lease a abandoned")
		}
	}
	if waited := time.Since(stopped); waited < d {
		t.Errorf("b took the Lease %s after a's last renewal, before its %s duration", waited, d)
	}
	if hold(a) {
		t.Error("a took the Lease back from b, who holds it")
	}
	// A release hands it over at once.
	b.Release(ctx)
	if !hold(a) {
		t.Error("a could not take a released Lease")
	}
	a.Release(ctx)

	// Contenders at the same instant, 20 rounds: never two winners.
	for round := range 20 {
		ls := []*kube.Lease{
			{Client: c, Namespace: ns, Name: "race", Identity: "x", Duration: d},
			{Client: c, Namespace: ns, Name: "race", Identity: "y", Duration: d},
			{Client: c, Namespace: ns, Name: "race", Identity: "z", Duration: d},
		}
		var wg sync.WaitGroup
		won := make([]bool, len(ls))
		for i, l := range ls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				won[i], _ = l.Hold(ctx)
			}()
		}
		wg.Wait()
		n := 0
		for _, w := range won {
			if w {
				n++
			}
		}
		if n > 1 {
			t.Fatalf("round %d: %d replicas hold the Lease at once", round, n)
		}
		for i, w := range won {
			if w {
				ls[i].Release(ctx)
			}
		}
	}
}
