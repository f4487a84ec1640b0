package exporter

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener measures how many accepted connections are open at once.
type countingListener struct {
	net.Listener
	live, peak, total atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.total.Add(1)
	n := l.live.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.live.Add(-1) })
	return c.Conn.Close()
}

// TestServerBoundsIdleConnections opens 200 connections that each make one keep-alive request
// and then sit idle, as a leaky client or a scan would. The server must hold at most MaxConns at
// once (measured at the listener, not timed) and close every idle one itself: before the limits,
// all 200 were held for ever, each with its buffers.
func TestServerBoundsIdleConnections(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: raw}
	const maxConns, clients = 8, 200
	srv := Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }),
		HTTPLimits{MaxConns: maxConns, ReadHeader: 200 * time.Millisecond, Read: time.Second, Write: time.Second, Idle: 200 * time.Millisecond})
	defer srv.Close()

	var answered, closedByServer atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			// The cap only ends the test if the server never lets go; it is not what is measured.
			c.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: certguard\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && !resp.Close {
				answered.Add(1)
			}
			// Now idle on a keep-alive connection: only the server can end it.
			if _, err := br.ReadByte(); err == io.EOF {
				closedByServer.Add(1)
			}
		}()
	}
	wg.Wait()
	if answered.Load() != clients || closedByServer.Load() != clients {
		t.Fatalf("%d of %d answered with keep-alive, %d closed by the server when idle", answered.Load(), clients, closedByServer.Load())
	}
	if p := ln.peak.Load(); p > maxConns || ln.total.Load() != clients {
		t.Fatalf("the server held %d connections at once (limit %d), accepted %d", p, maxConns, ln.total.Load())
	}
	t.Logf("%d connections, at most %d at once, all closed by the server when idle", ln.total.Load(), ln.peak.Load())
}
