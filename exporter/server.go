package exporter

import (
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// HTTPLimits bound what clients of /metrics, /healthz and /readyz can hold: the sidecar runs
// under a memory limit of ~96 MiB, and 8,000 idle keep-alive connections took it from 18 to
// 171 MB before these existed.
type HTTPLimits struct {
	// MaxConns is how many connections are served at once; more wait in the kernel's accept
	// queue. Prometheus, the kubelet's probes and a human with curl need a handful.
	MaxConns int
	// ReadHeader, Read, Write and Idle are http.Server's timeouts: a client that sends nothing,
	// sends slowly, reads slowly or keeps an idle connection open lets go of its slot.
	ReadHeader, Read, Write, Idle time.Duration
}

// DefaultHTTPLimits are generous for a scrape every 15 s (a scrape renders in milliseconds)
// and for probes every 10 s.
var DefaultHTTPLimits = HTTPLimits{MaxConns: 32, ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second, Idle: 60 * time.Second}

func (l HTTPLimits) withDefaults() HTTPLimits {
	d := DefaultHTTPLimits
	if l.MaxConns > 0 {
		d.MaxConns = l.MaxConns
	}
	for _, p := range []struct{ dst, src *time.Duration }{{&d.ReadHeader, &l.ReadHeader}, {&d.Read, &l.Read}, {&d.Write, &l.Write}, {&d.Idle, &l.Idle}} {
		if *p.src > 0 {
			*p.dst = *p.src
		}
	}
	return d
}

// Serve serves h on ln within the limits until the returned server is shut down: the sidecar's
// /metrics and probes, and certguard fleet serve's, under the same limits and timeouts.
func Serve(ln net.Listener, h http.Handler, l HTTPLimits) *http.Server {
	l = l.withDefaults()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeader, ReadTimeout: l.Read, WriteTimeout: l.Write, IdleTimeout: l.Idle}
	go func() { _ = srv.Serve(netutil.LimitListener(ln, l.MaxConns)) }()
	return srv
}
