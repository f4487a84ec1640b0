package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newCert makes a self-signed ECDSA leaf with the given serial.
func newCert(t testing.TB, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsServer serves the certificate in cur, which the test may switch, and records what each
// client sent: a client certificate, or any byte after the handshake.
type tlsServer struct {
	addr       string
	cur        atomic.Pointer[tls.Certificate]
	clientCert atomic.Bool
	sentData   atomic.Bool
	handshakes atomic.Int64
	live, peak atomic.Int64
	slow       time.Duration // each handshake holds a slot this long (measures concurrency)
}

func startTLS(t testing.TB, c tls.Certificate) *tlsServer {
	t.Helper()
	s := &tlsServer{}
	s.cur.Store(&c)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s.addr = ln.Addr().String()
	cfg := &tls.Config{
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			n := s.live.Add(1)
			for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
			}
			time.Sleep(s.slow)
			s.live.Add(-1)
			return s.cur.Load(), nil
		},
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, cfg)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				s.handshakes.Add(1)
				if len(tc.ConnectionState().PeerCertificates) > 0 {
					s.clientCert.Store(true)
				}
				if n, _ := io.Copy(io.Discard, tc); n > 0 {
					s.sentData.Store(true)
				}
			}()
		}
	}()
	return s
}

func TestHandshakeReadsTheServedLeafAndSendsNothing(t *testing.T) {
	srv := startTLS(t, newCert(t, 1))
	chain, err := Handshake(context.Background(), srv.addr, "localhost", time.Second)
	if err != nil || chain[0].SerialNumber.Int64() != 1 {
		t.Fatalf("first probe: %v, %v", chain, err)
	}
	// The test switches what the server serves, as a restart of k0s would.
	next := newCert(t, 2)
	srv.cur.Store(&next)
	chain, err = Handshake(context.Background(), srv.addr, "", time.Second)
	if err != nil || chain[0].SerialNumber.Int64() != 2 {
		t.Fatalf("after the switch: %v, %v", chain, err)
	}
	time.Sleep(50 * time.Millisecond) // let the server's reads end (EOF) before reading its record
	if srv.clientCert.Load() || srv.sentData.Load() {
		t.Fatalf("the prober sent a client certificate (%v) or data after the handshake (%v)", srv.clientCert.Load(), srv.sentData.Load())
	}
}

// TestHandshakeTimesOutOnASilentServer: a server that accepts TCP and never answers the
// ClientHello must cost the prober its timeout, not a hang.
func TestHandshakeTimesOutOnASilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // accepted, never read, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	const timeout = 300 * time.Millisecond
	start := time.Now()
	_, err = Handshake(context.Background(), ln.Addr().String(), "", timeout)
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
	if _, err := Handshake(context.Background(), addr, "", time.Second); err == nil {
		t.Fatal("a closed port answered")
	}
}

// TestPoolBoundsHandshakesAndProbesOncePerInterval gives 60 targets to 4 workers against a server
// whose handshakes each take 40 ms: the server never sees more than 4 at once (measured at the
// server, not timed), every target is probed, and none twice within the interval.
func TestPoolBoundsHandshakesAndProbesOncePerInterval(t *testing.T) {
	srv := startTLS(t, newCert(t, 7))
	srv.slow = 40 * time.Millisecond
	const targets, workers = 60, 4
	var ts []Target
	for i := range targets {
		ts = append(ts, Target{Key: strconv.Itoa(i), Addr: srv.addr})
	}
	var results atomic.Int64
	p := &Prober{Workers: workers, Timeout: 2 * time.Second, Interval: time.Hour, Jitter: 0.0001,
		OnResult: func(Result) { results.Add(1) }}
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
		if !r.Up() || r.Leaf.SerialNumber.Int64() != 7 || r.ChainLen != 1 {
			t.Fatalf("%s: %+v", k, r)
		}
	}
	if got := srv.handshakes.Load(); got != targets {
		t.Fatalf("%d handshakes for %d targets within one interval", got, targets)
	}
	if pk := srv.peak.Load(); pk > workers || pk < 2 {
		t.Fatalf("%d handshakes at once with %d workers", pk, workers)
	}
	t.Logf("%d targets, %d handshakes, at most %d at once (%d workers)", targets, srv.handshakes.Load(), srv.peak.Load(), workers)
}

// TestPoolReportsASilentEndpointDown: a target that never answers is a result with an error
// after the timeout, and does not hold back the others.
func TestPoolReportsASilentEndpointDown(t *testing.T) {
	srv := startTLS(t, newCert(t, 9))
	silent, _ := net.Listen("tcp", "127.0.0.1:0")
	defer silent.Close() // the backlog accepts, nobody answers
	p := &Prober{Workers: 1, Timeout: 200 * time.Millisecond, Interval: time.Hour}
	p.Set([]Target{{Key: "silent", Addr: silent.Addr().String()}, {Key: "ok", Addr: srv.addr}})
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
	p.Set([]Target{{Key: "ok", Addr: srv.addr}})
	if _, ok := p.Results()["silent"]; ok {
		t.Fatal("a removed target kept its result")
	}
}

// BenchmarkPool probes b.N targets with 8 workers against one local server: ns/op is the cost of
// one handshake through the pool.
func BenchmarkPool(b *testing.B) {
	srv := startTLS(b, newCert(b, 1))
	ts := make([]Target, b.N)
	for i := range ts {
		ts[i] = Target{Key: strconv.Itoa(i), Addr: srv.addr}
	}
	var n atomic.Int64
	p := &Prober{Workers: 8, Timeout: 5 * time.Second, Interval: time.Hour, OnResult: func(Result) { n.Add(1) }}
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
	b.ReportMetric(float64(srv.peak.Load()), "peak-handshakes")
}
