package probe_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certguard/certguard/probe"
	"github.com/certguard/certguard/probe/probetest"
)

func TestHandshakeReadsTheServedLeafAndSendsNothing(t *testing.T) {
	srv := probetest.Start(t, probetest.SelfSigned(t, 1))
	chain, err := probe.Handshake(context.Background(), srv.Addr, "localhost", time.Second)
	if err != nil || chain[0].SerialNumber.Int64() != 1 {
		t.Fatalf("first probe: %v, %v", chain, err)
	}
	// The test switches what the server serves, as a restart of k0s would.
	next := probetest.SelfSigned(t, 2)
	srv.Set(next)
	chain, err = probe.Handshake(context.Background(), srv.Addr, "", time.Second)
	if err != nil || chain[0].SerialNumber.Int64() != 2 {
		t.Fatalf("after the switch: %v, %v", chain, err)
	}
	time.Sleep(50 * time.Millisecond) // let the server's reads end (EOF) before reading its record
	if srv.ClientCert.Load() || srv.SentData.Load() {
		t.Fatalf("the prober sent a client certificate (%v) or data after the handshake (%v)", srv.ClientCert.Load(), srv.SentData.Load())
	}
}

// TestHandshakeTimesOutOnASilentServer: a server that accepts TCP and never answers the
// ClientHello must cost the prober its timeout, not a hang.
func TestHandshakeTimesOutOnASilentServer(t *testing.T) {
	srv := probetest.Start(t, probetest.SelfSigned(t, 3))
	srv.Mute.Store(true)
	const timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := probe.Handshake(context.Background(), srv.Addr, "", timeout)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
	if took < timeout || took > timeout+time.Second {
		t.Fatalf("gave up after %v, want the timeout %v", took, timeout)
	}
}

func TestHandshakeRefused(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if _, err := probe.Handshake(context.Background(), addr, "", time.Second); err == nil {
		t.Fatal("a closed port answered")
	}
}

// TestPoolBoundsHandshakesAndProbesOncePerInterval gives 60 targets to 4 workers against a server
// whose handshakes each take 40 ms: the server never sees more than 4 at once (measured at the
// server, not timed), every target is probed, and none twice within the interval.
func TestPoolBoundsHandshakesAndProbesOncePerInterval(t *testing.T) {
	srv := probetest.Start(t, probetest.SelfSigned(t, 7))
	srv.Slow = 40 * time.Millisecond
	const targets, workers = 60, 4
	var ts []probe.Target
	for i := range targets {
		ts = append(ts, probe.Target{Key: strconv.Itoa(i), Addr: srv.Addr})
	}
	var results atomic.Int64
	p := &probe.Prober{Workers: workers, Timeout: 2 * time.Second, Interval: time.Hour, Jitter: 0.0001,
		OnResult: func(probe.Result) { results.Add(1) }}
	p.Set(ts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	for deadline := time.Now().Add(20 * time.Second); results.Load() < targets && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	// Idle for a while: nothing is due again before the hour.
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	rs := p.Results()
	if len(rs) != targets {
		t.Fatalf("%d results, want %d", len(rs), targets)
	}
	for k, r := range rs {
		if !r.Up() || r.Leaf.Serial != "7" || r.ChainLen != 1 {
			t.Fatalf("%s: %+v", k, r)
		}
	}
	if got := srv.Handshakes.Load(); got != targets {
		t.Fatalf("%d handshakes for %d targets within one interval", got, targets)
	}
	if pk := srv.Peak.Load(); pk > workers || pk < 2 {
		t.Fatalf("%d handshakes at once with %d workers", pk, workers)
	}
	t.Logf("%d targets, %d handshakes, at most %d at once (%d workers)", targets, srv.Handshakes.Load(), srv.Peak.Load(), workers)
}

// TestPoolReportsASilentEndpointDown: a target that never answers is a result with an error
// after the timeout, and does not hold back the others.
func TestPoolReportsASilentEndpointDown(t *testing.T) {
	srv := probetest.Start(t, probetest.SelfSigned(t, 9))
	silent := probetest.Start(t, probetest.SelfSigned(t, 10))
	silent.Mute.Store(true)
	p := &probe.Prober{Workers: 1, Timeout: 200 * time.Millisecond, Interval: time.Hour}
	p.Set([]probe.Target{{Key: "silent", Addr: silent.Addr}, {Key: "ok", Addr: srv.Addr}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(5 * time.Second); len(p.Results()) < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	rs := p.Results()
	if r := rs["silent"]; r.Up() || r.Err == nil {
		t.Fatalf("silent endpoint: %+v", r)
	}
	if r := rs["ok"]; !r.Up() {
		t.Fatalf("the answering endpoint, behind a silent one with one worker: %+v", r)
	}
	// A target removed is forgotten with its result.
	p.Set([]probe.Target{{Key: "ok", Addr: srv.Addr}})
	if _, ok := p.Results()["silent"]; ok {
		t.Fatal("a removed target kept its result")
	}
}

// BenchmarkPool probes b.N targets with 8 workers against one local server: ns/op is the cost of
// one handshake through the pool.
func BenchmarkPool(b *testing.B) {
	srv := probetest.Start(b, probetest.SelfSigned(b, 1))
	ts := make([]probe.Target, b.N)
	for i := range ts {
		ts[i] = probe.Target{Key: strconv.Itoa(i), Addr: srv.Addr}
	}
	var n atomic.Int64
	p := &probe.Prober{Workers: 8, Timeout: 5 * time.Second, Interval: time.Hour, OnResult: func(probe.Result) { n.Add(1) }}
	p.Set(ts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.ResetTimer()
	go func() { p.Run(ctx); close(done) }()
	for n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(srv.Peak.Load()), "peak-handshakes")
}

// BenchmarkPoolHeld probes 10,000 targets once (one local server serving 10,000 leaves, 8 workers) and reports what the
// prober keeps between intervals: bytes of live heap per target (the served leaf parsed, its
// schedule) and the time for the whole round. fleet serve --probe-served keeps one per vcluster.
func BenchmarkPoolHeld(b *testing.B) {
	const n = 10000
	srv := probetest.Start(b, probetest.SelfSigned(b, 1))
	// Each target its own leaf: crypto/tls shares one parsed certificate between connections that
	// receive the same bytes, which would hide what 10,000 vclusters' leaves cost.
	for i := range n {
		srv.Many = append(srv.Many, probetest.SelfSigned(b, int64(i+2)))
	}
	for range b.N {
		ts := make([]probe.Target, n)
		for i := range ts {
			ts[i] = probe.Target{Key: strconv.Itoa(i), Addr: srv.Addr}
		}
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var done atomic.Int64
		p := &probe.Prober{Workers: 8, Timeout: 5 * time.Second, Interval: time.Hour, OnResult: func(probe.Result) { done.Add(1) }}
		p.Set(ts)
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		start := time.Now()
		go func() { p.Run(ctx); close(stopped) }()
		for done.Load() < n {
			time.Sleep(time.Millisecond)
		}
		round := time.Since(start)
		ts = nil
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		if len(p.Results()) != n {
			b.Fatalf("%d results", len(p.Results()))
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/target")
		b.ReportMetric(round.Seconds(), "s/round")
		cancel()
		<-stopped
	}
}
