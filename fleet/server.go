package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/certguard/certguard/exporter"
)

// Server serves /metrics, /plan, /healthz and /readyz over a State.
type Server struct {
	State *State
	Now   func() time.Time
	// RenewBefore judges the Secrets' status in the metrics (the service's --renew-before).
	RenewBefore time.Duration
	// Plan is the fleet plan /plan serves and the restart gauges show: with a Restarter, the
	// plan of its last Tick, as it stands after what that tick executed (the rows it restarted
	// show as restarting).
	Plan func() Plan
	// Synced reports that the informer has delivered its first LIST: until then the state is
	// partial, and /readyz says so rather than letting a scrape read a half-empty fleet as healthy.
	Synced func() bool
	// Workloads (nil: not followed) and Restarter (nil: no --restart-due) add their gauges and
	// judge /plan as the restarter does.
	Workloads *Workloads
	Parse     InitParser
	Restarter *Restarter
	Served    *Served // nil: --probe-served is off
	Log       *slog.Logger
	HTTP      exporter.HTTPLimits
	// Build is the binary's stamps, for x509_exporter_build_info.
	Build exporter.Build
}

// Handler builds the routes; /metrics renders the state itself (Metrics), with no registry.
func (s *Server) Handler() http.Handler {
	var extra prometheus.Gatherer
	if s.Workloads != nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(&RestartCollector{State: s.State, Workloads: s.Workloads, Parse: s.Parse, Restarter: s.Restarter, Plan: s.Plan})
		extra = reg
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", &Metrics{State: s.State, Now: s.Now, RenewBefore: s.RenewBefore, Extra: extra, Workloads: s.Workloads, Build: s.Build, Served: s.Served})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Synced() {
			http.Error(w, "the Secret informer has not synced yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/plan", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Synced() {
			http.Error(w, "the Secret informer has not synced yet", http.StatusServiceUnavailable)
			return
		}
		p := s.Plan()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(p)
	})
	return mux
}

// Serve serves on ln until ctx ends, then shuts down within 5 s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := exporter.Serve(ln, s.Handler(), s.HTTP)
	s.Log.Info("serving", "listen", ln.Addr().String())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
