// Package probetest serves TLS on loopback with a certificate a test switches, for the tests of
// the prober and of what the sidecar and the fleet make of its results.
package probetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// SelfSigned makes a self-signed ECDSA leaf with the given serial.
func SelfSigned(t testing.TB, serial int64) tls.Certificate {
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

// Server serves a certificate the test may switch, on 127.0.0.1, and records what each client
// sent: a client certificate, or any byte after the handshake.
type Server struct {
	Addr       string
	cur        atomic.Pointer[tls.Certificate]
	ClientCert atomic.Bool // a client sent a certificate
	SentData   atomic.Bool // a client sent bytes after the handshake
	Handshakes atomic.Int64
	live       atomic.Int64
	Peak       atomic.Int64 // the most handshakes in progress at once
	// Slow holds each handshake this long (set before the first): concurrency becomes measurable.
	Slow time.Duration
	// Mute, while set, makes the server accept each connection and never answer it: what it is
	// sent is read and dropped until the client gives up. An endpoint that hangs, switched on and
	// off at one address.
	Mute atomic.Bool
	// Many (set before the first handshake) are served in turn, one per handshake, instead of
	// the one Set: as many endpoints, each with its own leaf, would serve.
	Many []tls.Certificate
	turn atomic.Int64
	ln   net.Listener
}

// Close stops listening: the next dial is refused.
func (s *Server) Close() { s.ln.Close() }

// Set switches the certificate served from the next handshake on.
func (s *Server) Set(c tls.Certificate) { s.cur.Store(&c) }

// Start serves c on 127.0.0.1 until the test ends.
func Start(t testing.TB, c tls.Certificate) *Server {
	t.Helper()
	return StartOn(t, "127.0.0.1", c)
}

// HostIP is an IPv4 address of this machine other than loopback and link-local: the API server
// refuses those in an EndpointSlice, so a test that points one at a local server listens here.
// The test is skipped on a machine without one.
func HostIP(t testing.TB) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip := n.IP.To4(); ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.String()
			}
		}
	}
	t.Skip("no IPv4 address but loopback: an EndpointSlice cannot point at this machine")
	return ""
}

// StartOn serves c on host (an address of this machine) until the test ends.
func StartOn(t testing.TB, host string, c tls.Certificate) *Server {
	t.Helper()
	s := &Server{}
	s.cur.Store(&c)
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s.Addr, s.ln = ln.Addr().String(), ln
	cfg := &tls.Config{
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			n := s.live.Add(1)
			for p := s.Peak.Load(); n > p && !s.Peak.CompareAndSwap(p, n); p = s.Peak.Load() {
			}
			time.Sleep(s.Slow)
			s.live.Add(-1)
			if len(s.Many) > 0 {
				return &s.Many[int(s.turn.Add(1)-1)%len(s.Many)], nil
			}
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
				if s.Mute.Load() {
					_, _ = io.Copy(io.Discard, c)
					return
				}
				tc := tls.Server(c, cfg)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				s.Handshakes.Add(1)
				if len(tc.ConnectionState().PeerCertificates) > 0 {
					s.ClientCert.Store(true)
				}
				if n, _ := io.Copy(io.Discard, tc); n > 0 {
					s.SentData.Store(true)
				}
			}()
		}
	}()
	return s
}

// KeyPair is a certificate and key in PEM (as pkigen writes them) as a tls.Certificate.
func KeyPair(t testing.TB, certPEM, keyPEM []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
