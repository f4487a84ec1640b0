package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"

	"github.com/certguard/certguard/exporter"
	"github.com/certguard/certguard/kube"
)

// Service is `certguard fleet serve`: it owns the informers, the HTTP server, and with
// RestartDue the restarter and its Lease, and runs them until its context ends or one of them
// cannot go on. main builds it from settings; a test can run it without the binary.
type Service struct {
	Client    *kube.Client
	Namespace string // "" = all
	Listen    string
	// RenewBefore judges the Secrets in the metrics, and the vclusters whose init container
	// cannot be read.
	RenewBefore time.Duration
	Plan        PlanSettings
	Parse       InitParser
	// RestartDue runs the restarter under Lease; DryRun makes it log what it would do.
	RestartDue bool
	DryRun     bool
	Lease      *kube.Lease
	// Tick is how often the restarter looks; LeaseBudget bounds each tick (a fraction of the
	// Lease's duration).
	Tick        time.Duration
	LeaseBudget time.Duration
	// Build is the binary's stamps, for x509_exporter_build_info.
	Build exporter.Build
	// ProbeServed probes each vcluster's Service for the certificate it serves (served.go), every
	// ProbeInterval (0: probe.DefaultInterval).
	ProbeServed   bool
	ProbeInterval time.Duration
	Log           *slog.Logger
}

// Run serves until ctx ends (nil) or something fails that a retry would not mend: the listen
// address (at once, before anything else starts), or RBAC refusing list or watch. It returns
// only after the restarter has stopped and released the Lease.
func (s *Service) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.Listen, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	onErr := func(what string) func(error) {
		return func(err error) {
			if kube.IsForbidden(err) {
				cancel(err) // no retry makes a missing grant appear
				return
			}
			s.Log.Warn("list/watch "+what+" failed; retrying", "err", err)
		}
	}
	state, workloads := NewState(), NewWorkloads()
	inf, secretsSynced, err := kube.CertSecretInformer(s.Client, s.Namespace, Parse, state.Set, onErr("Secrets"))
	if err != nil {
		ln.Close()
		return err
	}
	stsInf, stsSynced, err := kube.StatefulSetInformer(s.Client, s.Namespace, workloads.Set, onErr("StatefulSets"))
	if err != nil {
		ln.Close()
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { kube.RunInformer(ctx, inf) })
	wg.Go(func() { kube.RunInformer(ctx, stsInf) })
	synced := func() bool { return secretsSynced() && stsSynced() }
	wg.Go(func() {
		// The first LIST's pages are garbage once every Secret is reduced, and Go returns freed
		// memory to the system only slowly: at 10,000 vclusters RSS stayed at its 200 MiB peak
		// 10 s after ready, four times the live heap. One collection that gives it back now.
		if cache.WaitForCacheSync(ctx.Done(), secretsSynced, stsSynced) {
			debug.FreeOSMemory()
		}
	})
	srv := &Server{State: state, Workloads: workloads, Parse: s.Parse, Now: time.Now, RenewBefore: s.RenewBefore, Synced: synced, Log: s.Log}
	if s.ProbeServed {
		srv.Served = &Served{Client: s.Client, Namespace: s.Namespace, State: state, Interval: s.ProbeInterval, Log: s.Log}
		// Probed once the Secrets are known: a Service is probed only for a vcluster followed.
		wg.Go(func() {
			if cache.WaitForCacheSync(ctx.Done(), secretsSynced) {
				srv.Served.Run(ctx)
			}
		})
	}
	build := func() Plan {
		now := time.Now()
		return BuildPlan(state.Vclusters(now, s.Plan.RenewBefore, workloads, s.Parse), now, s.Plan, nil)
	}
	srv.Plan, srv.Build = build, s.Build
	if s.RestartDue {
		r := &Restarter{State: state, Workloads: workloads, Parse: s.Parse, Settings: s.Plan, DryRun: s.DryRun, Log: s.Log,
			LeaseBudget: s.LeaseBudget, API: &KubeRestartAPI{Client: s.Client, Lease: s.Lease, Log: s.Log, Instance: s.Lease.Identity}}
		srv.Restarter = r
		srv.Plan = func() Plan {
			if p, _ := r.Plan(); !p.Now.IsZero() {
				return p
			}
			return build()
		}
		wg.Go(func() {
			// Never act on a half-synced fleet: a vcluster not seen yet is not counted.
			if cache.WaitForCacheSync(ctx.Done(), secretsSynced, stsSynced) {
				r.Run(ctx, s.Tick, s.Lease.Release)
			}
		})
	}
	serveErr := srv.Serve(ctx, ln)
	cancel(nil)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return fmt.Errorf("fleet serve: %w", cause)
	}
	return serveErr
}
