// Package watch is `certguard watch`, the sidecar: it keeps the pki dir and the Secret under
// watch (fsnotify, a single-object Kubernetes watch), serves x509-certificate-exporter-compatible
// metrics, records Events on its pod, and restarts the pod in a maintenance window before a k0s
// leaf expires, so that the init container renews it.
package watch

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certguard/certguard/exporter"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/restart"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxSleep bounds the timer: a safety net, not a polling loop (files and Secret are watched).
const maxSleep = 6 * time.Hour

// Sidecar is one `certguard watch`.
type Sidecar struct {
	PKIDir      string
	BackupDir   string
	RenewBefore time.Duration
	Reminder    time.Duration
	Debounce    time.Duration
	Restart     restart.Policy
	DryRun      bool
	Listen      string
	Secrets     *kube.SecretStore
	Events      *kube.Events
	Client      *kube.Client
	Namespace   string
	Pod         string
	Log         *slog.Logger
	Now         func() time.Time
	// K0s tells which k0s runs in this pod (nil: unknown); asked only while the answer matters
	// (pki.Report.K0sMatters). On k0s ≥ v1.35.1 the Secret's copies of the leaves k0s re-signs
	// at every start are stale, not a reason to alarm (k0s.go).
	K0s func(context.Context) pki.K0s
	// HTTP bounds the metrics server; zero fields take exporter.DefaultHTTPLimits'.
	HTTP exporter.HTTPLimits
	// Build is the binary's stamps, for x509_exporter_build_info.
	Build exporter.Build
	// Served (nil: not probed) probes the pod's TLS endpoints (served.go).
	Served *Served
	// Ready is closed after the first refresh, with the listener's address set.
	Ready chan struct{}
	Addr  string

	metrics    *Metrics
	eventer    Eventer
	said       string // the last restart decision logged, to log each one once
	ready      atomic.Bool
	mu         sync.Mutex
	secret     *pki.Secret
	secretOK   bool
	secretSeen bool // the Secret watch has answered once, with the Secret or an error
}

// Run serves until ctx ends.
func (s *Sidecar) Run(ctx context.Context) error {
	s.metrics = NewMetrics(s.Now)
	s.metrics.Build = s.Build
	s.metrics.Errors.AddSource(exporter.KindFile, s.PKIDir)
	s.metrics.Errors.AddSource(exporter.KindKubeconfig, s.PKIDir)
	if s.Secrets != nil {
		s.metrics.Errors.AddSource(exporter.KindKubeSecret, s.secretRef())
	}
	s.eventer.Reminder = s.Reminder
	dir, err := NewDir(s.PKIDir, s.Debounce, s.Log)
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.PKIDir, err)
	}
	defer dir.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(s.metrics, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if s.Served != nil {
		reg.MustRegister(s.Served)
		go s.Served.run(ctx, s.Secrets, s.Namespace, s.metrics.Errors)
	}
	mux := http.NewServeMux()
	// ContinueOnError: a series that cannot be rendered is left out and the rest served; the
	// default would answer 500 and leave Prometheus blind to every certificate.
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready: first read pending", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.Listen, err)
	}
	s.Addr = ln.Addr().String()
	srv := exporter.Serve(ln, mux, s.HTTP)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	secretCh := make(chan struct{}, 1)
	if s.Secrets != nil {
		go s.Secrets.Watch(ctx, func(sec *pki.Secret) {
			s.mu.Lock()
			s.secret, s.secretOK, s.secretSeen = sec, true, true
			s.mu.Unlock()
			notify(secretCh)
		}, func(err error) {
			s.mu.Lock()
			s.secretOK, s.secretSeen = false, true
			s.mu.Unlock()
			s.metrics.Errors.Count(exporter.KindKubeSecret, s.secretRef(), exporter.ReasonSecretUnreadable)
			s.Log.Warn("watching the Secret", "err", err)
			notify(secretCh)
		})
	}
	changed := make(chan struct{})
	go dir.Run(ctx.Done(), changed, func(err error) {
		s.metrics.Errors.Count(exporter.KindFile, s.PKIDir, exporter.ReasonWatchFailed)
		s.Log.Warn("watching the pki dir", "err", err)
	})

	timer := time.NewTimer(0)
	defer timer.Stop()
	first := true
	for {
		// The first refresh reads everything for the first time: its corrupt files count as
		// errors as much as those that turn corrupt later.
		reread := first
		first = false
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			reread = true
		case <-secretCh:
			reread = true
		case <-timer.C:
		}
		sleep, seen := s.refresh(ctx, dir.Store(), reread)
		timer.Reset(sleep)
		// Ready once a refresh has used both sources: the first scrape then shows both.
		if seen && s.ready.CompareAndSwap(false, true) {
			// Start-up (client setup, the first reads) leaves garbage the sidecar never needs
			// again: hand it back now rather than keep it resident for months.
			debug.FreeOSMemory()
			if s.Ready != nil {
				close(s.Ready)
			}
		}
	}
}

func (s *Sidecar) secretRef() string { return s.Secrets.Namespace + "/" + s.Secrets.Name }

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// refresh recomputes everything from the two stores at one instant and returns how long to sleep
// until the next time-based transition, and whether the Secret had been read.
func (s *Sidecar) refresh(ctx context.Context, disk pki.Store, reread bool) (time.Duration, bool) {
	now := s.Now()
	s.mu.Lock()
	secret, secretOK, seen := s.secret, s.secretOK, s.secretSeen || s.Secrets == nil
	s.mu.Unlock()
	secStore := pki.FromSecret(secret)
	eff := pki.Inspect(disk, secStore, now, s.RenewBefore)
	if s.K0s != nil && eff.K0sMatters() {
		eff.SetK0s(s.K0s(ctx))
	}
	diskOnly := pki.Inspect(disk, pki.Store{}, now, s.RenewBefore)
	secretOnly := withoutStale(pki.Inspect(pki.Store{}, secStore, now, s.RenewBefore), eff)

	var sourceErrs []string
	diskUp := disk.Present && disk.Errors["."] == nil
	if !diskUp {
		sourceErrs = append(sourceErrs, "pki dir "+s.PKIDir+" missing or unreadable")
	}
	if s.Secrets != nil && !secretOK {
		sourceErrs = append(sourceErrs, "Secret unreadable")
	}
	if reread {
		for _, f := range diskOnly.Files {
			if f.Status == pki.StatusCorrupt {
				kind := exporter.KindFile
				if f.Format() == pki.FormatKubeconfig {
					kind = exporter.KindKubeconfig
				}
				s.metrics.Errors.Count(kind, s.PKIDir, exporter.Reason(f.Reason))
			}
		}
		for _, f := range secretOnly.Files {
			if f.Status == pki.StatusCorrupt {
				s.metrics.Errors.Count(exporter.KindKubeSecret, s.secretRef(), exporter.Reason(f.Reason))
			}
		}
	}
	// k0s rewrites every kubeconfig at start (and vcluster's updateKubeconfigInSecret points the
	// Secret's at 127.0.0.1), and re-issues the etcd leaves: those differ after every boot.
	drift := 0
	for _, f := range eff.Files {
		if f.Drift == pki.DriftDiffers && f.Format() != pki.FormatKubeconfig && f.Role != pki.RoleK0sRenewed && f.Role != pki.RoleUnknown {
			drift++
		}
	}
	backups, err := pki.ReadBackupState(s.BackupDir)
	if err != nil {
		s.Log.Warn("reading the backup dir", "err", err)
	}
	in := restart.Input{Now: now, Report: eff, RepairFailed: backups.Unfinished, SourceErrors: sourceErrs}
	if secret != nil {
		in.LastRestart = restart.ReadRecord(secret.Annotations).LastRestart
	}
	if s.Client != nil {
		if t := s.Client.ServerTime(); !t.IsZero() {
			in.ClockSkew, in.SkewKnown = now.Sub(t), true
		}
	}
	in.Plan = pki.BuildPlan(eff, pki.Policy{Strategy: pki.StrategyAuto, ClockSkew: in.ClockSkew, ClockKnown: in.SkewKnown, MaxClockSkew: s.Restart.MaxSkew})
	dec := s.Restart.Decide(in)
	snap := snapshot{pkiDir: s.PKIDir, disk: diskOnly, kubeconfigs: diskKubeconfigs(disk, diskOnly), diskUp: diskUp, drift: drift,
		lastRepair: backups.LastDone, nextRestart: dec.At, restartBlocked: dec.Blocked}
	_, snap.repairHeld = in.Plan.Has(pki.CodeRepairHeld)
	if s.Secrets != nil {
		snap.secret, snap.secretUp, snap.secretNS, snap.secretName = secretOnly, secretOK && secret != nil, s.Secrets.Namespace, s.Secrets.Name
	}
	s.metrics.set(snap)
	if s.Served != nil {
		s.Served.setStored(eff, disk, secStore)
	}

	if eff.DiskPresent || secret != nil {
		for _, ev := range s.eventer.Next(eff) {
			s.Events.Emit(ctx, ev.Type, ev.Reason, ev.Message)
		}
	}
	if dec.Why != s.said {
		s.Log.Info("restart decision", "why", dec.Why, "planned", timeOrNone(dec.At), "dry_run", s.DryRun)
		if dec.Blocked {
			s.Events.Emit(ctx, "Warning", kube.ReasonRestartBlocked, dec.Why)
		}
		s.said = dec.Why
	}
	if dec.Now {
		s.restart(ctx, now, dec)
	}
	return s.sleep(eff, now, dec), seen
}

// restart records the restart on the Secret, then deletes the pod. No record, no restart: the
// guard against a restart loop must survive the restart.
func (s *Sidecar) restart(ctx context.Context, now time.Time, dec restart.Decision) {
	if s.DryRun {
		s.Log.Info("dry run: would delete this pod now", "pod", s.Namespace+"/"+s.Pod, "why", dec.Why, "dry_run", true)
		return
	}
	if err := s.Secrets.Annotate(ctx, restart.SidecarRestartAnnotations(now)); err != nil {
		s.Log.Error("not restarting: cannot record the restart on the Secret", "err", err)
		return
	}
	s.Events.Emit(ctx, "Normal", kube.ReasonRestart, dec.Why)
	if err := kube.DeletePod(ctx, s.Client, s.Namespace, s.Pod, ""); err != nil {
		s.Log.Error("restart failed", "err", err)
		return
	}
	s.Log.Info("pod deleted: the StatefulSet recreates it and the init container renews the leaves", "why", dec.Why)
}

// sleep returns the time until the next instant at which a certificate crosses a threshold, the
// restart window opens, or a reminder is due.
func (s *Sidecar) sleep(r *pki.Report, now time.Time, dec restart.Decision) time.Duration {
	next := now.Add(maxSleep)
	consider := func(t time.Time) {
		if t.After(now) && t.Before(next) {
			next = t
		}
	}
	for _, f := range r.Files {
		if f.Cert == nil {
			continue
		}
		consider(f.Cert.NotBefore)
		consider(f.Cert.NotAfter.Add(-s.RenewBefore))
		consider(f.Cert.NotAfter.Add(time.Second))
		consider(f.Cert.NotAfter.Add(-s.Restart.Before))
		if f.Status == pki.StatusDue || f.Status == pki.StatusExpired {
			consider(now.Add(s.Reminder))
		}
	}
	consider(dec.At)
	return max(next.Sub(now), time.Second)
}

func timeOrNone(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}
