package fleet

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/watch"
)

// RestartAPI is everything the restarter does on the cluster. KubeRestartAPI is the real one;
// every call is made with the time the restarter was handed, so a test can drive a year of
// restarts against a real API server with a clock of its own.
type RestartAPI interface {
	// Hold takes or renews the Lease; false: another replica restarts, this one waits.
	Hold(ctx context.Context) (bool, error)
	// Secret reads a certificate Secret fresh from the server (nil: gone).
	Secret(ctx context.Context, namespace, name string) (*pki.Secret, error)
	// Pod reads a pod's UID and readiness (nil: no such pod).
	Pod(ctx context.Context, namespace, name string) (*kube.PodState, error)
	// Record sets annotations on the certificate Secret.
	Record(ctx context.Context, namespace, secret string, annotations map[string]string) error
	// DeletePod deletes the pod with this UID.
	DeletePod(ctx context.Context, namespace, name, uid string) error
	// Event records an Event on the vcluster's StatefulSet.
	Event(ctx context.Context, namespace, statefulSet, eventType, reason, message string)
}

// Event reasons on the StatefulSet.
const (
	ReasonRestart        = "CertificateRenewalRestart"
	ReasonRestartBlocked = "CertificateRenewalRestartBlocked"
	ReasonRestartStalled = "CertificateRenewalRestartNotReady"
	ReasonNoRenewal      = "CertificateRenewalRestartRenewedNothing"
	ReasonRestartFailed  = "CertificateRenewalRestartFailed"
)

// Restarter is `fleet serve --restart-due`: in the restart window it deletes the pod of each
// vcluster whose k0s leaves are due, whose StatefulSet runs certguard's init container, and whose
// repair the init container would carry out (the sidecar's decision, watch.RestartPolicy, on the
// Secret read fresh), at most MaxConcurrent at a time, each until its new pod is Ready.
//
// It keeps no state that a restart of the service could lose: what is in flight is read from the
// restart record on each Secret (pki.LastRestartAnnotation, shared with the sidecar, and
// pki.RestartedPodAnnotation) and from the pods. The record is written before the pod is
// deleted: no record, no restart.
type Restarter struct {
	State     *State
	Workloads *Workloads
	API       RestartAPI
	Window    *watch.Window
	// MaxConcurrent restarts at once; a restart holds its slot until its new pod is Ready.
	MaxConcurrent int
	MinInterval   time.Duration
	// ReadyTimeout: a restart whose pod is not Ready by then is reported, and no other restart
	// starts until the window closes (a rollout that breaks pods stops, as a Deployment's
	// progress deadline does); the next opening starts afresh.
	ReadyTimeout time.Duration
	RenewBefore  time.Duration // the fallback when an init container sets no --renew-before
	DryRun       bool
	Log          *slog.Logger
	// LeaseBudget bounds how long one Tick acts after Hold succeeded (real time): a fraction of
	// the Lease's duration, so that no other replica can take the Lease while this one acts.
	LeaseBudget time.Duration

	mu     sync.Mutex
	view   map[string]VclusterRestart
	leader bool
	said   map[string]string
	// noRenew: vclusters whose last restart (by its time) came back with the leaves still due;
	// not restarted again until the Secret records another restart.
	noRenew map[string]time.Time
	// started is the record of each restart this process made, as written to the Secret: the
	// informer delivers that write a moment later, and until it does the restart must count.
	started map[string]pki.FleetRow
	// blocked is the last verdict of decide per vcluster: it needs a fresh read of the Secret,
	// made only in the window, and the gauge and alert must hold between windows too.
	blocked map[string]bool
}

// VclusterRestart is the restarter's view of one vcluster, for metrics and /plan.
type VclusterRestart struct {
	Restarting bool
	Stalled    bool
	Blocked    bool
	Why        string
}

// Tick does what is due at now: it notes restarts that finished, and starts new ones while the
// window is open and slots are free. It returns the vclusters it restarted (or, with DryRun,
// would have).
func (r *Restarter) Tick(ctx context.Context, now time.Time) []string {
	began := time.Now()
	held, err := r.API.Hold(ctx)
	if err != nil {
		r.say("", "lease", "cannot take the Lease; not restarting: "+err.Error())
	}
	r.mu.Lock()
	r.leader = held
	r.mu.Unlock()
	if !held {
		return nil
	}
	var opening time.Time
	open := false
	if r.Window != nil {
		opening, open = r.Window.Opening(now)
	}
	view := map[string]VclusterRestart{}
	var due []candidate
	busy, stalled := 0, false
	for _, row := range r.State.Rows(now, r.RenewBefore) {
		key := row.Namespace + "/" + row.Release
		r.mu.Lock()
		if rec, ok := r.started[key]; ok && rec.LastRestart.After(row.LastRestart) {
			row.LastRestart, row.RestartedPod = rec.LastRestart, rec.RestartedPod
		}
		r.mu.Unlock()
		wl := ReadWorkload(r.Workloads.Get(row.Namespace, row.Release), r.RenewBefore)
		var v VclusterRestart
		if inFlight := !row.LastRestart.IsZero() && (now.Sub(row.LastRestart) < r.ReadyTimeout || (open && !row.LastRestart.Before(opening))); inFlight && wl.Found && wl.Replicas > 0 {
			v.Restarting, v.Stalled = r.checkRestart(ctx, now, row, wl)
			if v.Restarting {
				busy++
				stalled = stalled || v.Stalled
			}
		}
		if !row.LeafExpiry.IsZero() && !v.Restarting {
			if at := row.LeafExpiry.Add(-wl.RenewBefore); !now.Before(at) {
				due = append(due, candidate{row: row, wl: wl, due: at})
			}
		}
		view[key] = v
	}
	// The most urgent first, as fleet plan books them.
	slices.SortStableFunc(due, func(a, b candidate) int {
		return cmp.Or(a.due.Compare(b.due), cmp.Compare(a.row.Namespace, b.row.Namespace), cmp.Compare(a.row.Release, b.row.Release))
	})
	var started []string
	for _, c := range due {
		key := c.row.Namespace + "/" + c.row.Release
		v := view[key]
		why, ok := r.eligible(c)
		if ok && open && !stalled && busy < max(r.MaxConcurrent, 1) && (r.LeaseBudget <= 0 || time.Since(began) < r.LeaseBudget) {
			var blocked bool
			why, blocked, ok = r.decide(ctx, now, c)
			r.mu.Lock()
			if r.blocked == nil {
				r.blocked = map[string]bool{}
			}
			r.blocked[key] = blocked
			r.mu.Unlock()
			if ok {
				if r.start(ctx, now, c, why) {
					started = append(started, key)
					if !r.DryRun {
						busy++
						v.Restarting = true
					}
				}
			}
		} else if ok {
			switch {
			case !open:
				why = "due: restart in the next window"
			case stalled:
				why = "due: waiting, a restart in this window did not become Ready within --restart-ready-timeout"
			default:
				why = fmt.Sprintf("due: waiting for a free slot (--max-concurrent %d)", max(r.MaxConcurrent, 1))
			}
		}
		r.mu.Lock()
		v.Blocked = r.blocked[key]
		r.mu.Unlock()
		v.Why = why
		view[key] = v
		r.say(key, "decision", why)
	}
	r.mu.Lock()
	r.view = view
	r.mu.Unlock()
	return started
}

type candidate struct {
	row pki.FleetRow
	wl  Workload
	due time.Time
}

// eligible is what the restarter checks before reading anything: vclusters it never restarts.
func (r *Restarter) eligible(c candidate) (string, bool) {
	if why, ok := restartable(c); !ok {
		return why, false
	}
	r.mu.Lock()
	last, seen := r.noRenew[c.row.Namespace+"/"+c.row.Release]
	r.mu.Unlock()
	if seen && last.Equal(c.row.LastRestart) {
		return "due, not restarted: the last restart (" + last.UTC().Format(time.RFC3339) + ") renewed nothing; see the vcluster's init container log", false
	}
	return "", true
}

// restartable: whether a restart of this vcluster could renew its leaves at all, from its
// StatefulSet alone; /plan books only these.
func restartable(c candidate) (string, bool) {
	switch {
	case !c.wl.Found:
		return fmt.Sprintf("not restarted: no StatefulSet %s/%s", c.row.Namespace, c.row.Release), false
	case c.wl.K0sRenews:
		return "not restarted: " + c.wl.K0sImage + " renews its leaves itself (k0s ≥ v1.35.1)", false
	case !c.wl.Guarded:
		return "not restarted: the StatefulSet has no certguard init container, so a restart would renew nothing", false
	case c.wl.Replicas == 0:
		return "not restarted: the StatefulSet is scaled to 0", false
	}
	return "", true
}

// decide reads the Secret fresh and asks the sidecar's decision, on the plan the init container
// would make from it: whether to restart now, and why.
func (r *Restarter) decide(ctx context.Context, now time.Time, c candidate) (why string, blocked, restart bool) {
	sec, err := r.API.Secret(ctx, c.row.Namespace, c.row.Release+"-certs")
	if err != nil || sec == nil {
		return fmt.Sprintf("due, not restarted: cannot read the Secret (%v)", err), false, false
	}
	report := pki.Inspect(pki.Store{}, pki.FromSecret(sec), now, c.wl.RenewBefore)
	in := watch.RestartInput{Now: now, Report: report, Plan: pki.BuildPlan(report, pki.Policy{Strategy: pki.StrategyAuto})}
	in.LastRestart, _ = time.Parse(time.RFC3339, sec.Annotations[pki.LastRestartAnnotation])
	d := watch.RestartPolicy{Before: c.wl.RenewBefore, Window: r.Window, MinInterval: r.MinInterval}.Decide(in)
	if d.Blocked {
		r.once(ctx, c, "blocked", "Warning", ReasonRestartBlocked, d.Why)
	}
	return d.Why, d.Blocked, d.Now
}

// start records the restart on the Secret, then deletes the pod on condition that it is still the
// one read. Without the record nothing is deleted.
func (r *Restarter) start(ctx context.Context, now time.Time, c candidate, why string) bool {
	ns, pod := c.row.Namespace, c.row.Release+"-0"
	p, err := r.API.Pod(ctx, ns, pod)
	switch {
	case err != nil:
		r.say(ns+"/"+c.row.Release, "decision", "due, not restarted: "+err.Error())
		return false
	case p == nil || p.Terminating:
		r.say(ns+"/"+c.row.Release, "decision", "due, not restarted: pod "+pod+" is being replaced already")
		return false
	}
	if r.DryRun {
		r.say(ns+"/"+c.row.Release, "dry-run", "dry run: would delete pod "+ns+"/"+pod+": "+why)
		return true
	}
	rec := map[string]string{pki.LastRestartAnnotation: now.UTC().Format(time.RFC3339), pki.RestartedPodAnnotation: p.UID}
	if err := r.API.Record(ctx, ns, c.row.Release+"-certs", rec); err != nil {
		r.Log.Error("not restarting: cannot record the restart on the Secret", "vcluster", ns+"/"+c.row.Release, "err", err)
		return false
	}
	r.mu.Lock()
	if r.started == nil {
		r.started = map[string]pki.FleetRow{}
	}
	r.started[ns+"/"+c.row.Release] = pki.FleetRow{LastRestart: now.UTC().Truncate(time.Second), RestartedPod: p.UID}
	r.mu.Unlock()
	r.API.Event(ctx, ns, c.row.Release, "Normal", ReasonRestart, "certguard fleet: deleting pod "+pod+" so that its init container renews the k0s leaves: "+why)
	if err := r.API.DeletePod(ctx, ns, pod, p.UID); err != nil {
		r.API.Event(ctx, ns, c.row.Release, "Warning", ReasonRestartFailed, "certguard fleet: "+err.Error())
		r.Log.Error("restart failed", "vcluster", ns+"/"+c.row.Release, "err", err)
		return false
	}
	r.Log.Info("pod deleted: the StatefulSet recreates it and certguard's init container renews the leaves", "vcluster", ns+"/"+c.row.Release, "why", why)
	return true
}

// checkRestart judges a recorded restart: in flight until a pod other than the one deleted is
// Ready; stalled once that takes longer than ReadyTimeout. A restart that finished with the
// leaves still due is reported once and not repeated.
func (r *Restarter) checkRestart(ctx context.Context, now time.Time, row pki.FleetRow, wl Workload) (restarting, stalled bool) {
	key := row.Namespace + "/" + row.Release
	p, err := r.API.Pod(ctx, row.Namespace, row.Release+"-0")
	if err != nil {
		return true, false // unknown: keep the slot
	}
	if p != nil && p.Ready && !p.Terminating && (row.RestartedPod == "" || p.UID != row.RestartedPod) {
		// Done. Did the init container renew? The informer may lag the init container's write:
		// read the Secret fresh before saying it did not.
		if row.RestartedPod != "" && !row.LeafExpiry.IsZero() && !now.Before(row.LeafExpiry.Add(-wl.RenewBefore)) {
			if sec, err := r.API.Secret(ctx, row.Namespace, row.Release+"-certs"); err == nil && sec != nil {
				if fresh := pki.Fleet(sec, now, wl.RenewBefore); !fresh.LeafExpiry.IsZero() && !now.Before(fresh.LeafExpiry.Add(-wl.RenewBefore)) {
					r.mu.Lock()
					if r.noRenew == nil {
						r.noRenew = map[string]time.Time{}
					}
					first := !r.noRenew[key].Equal(row.LastRestart)
					r.noRenew[key] = row.LastRestart
					r.mu.Unlock()
					if first {
						msg := fmt.Sprintf("certguard fleet: the pod came back, but %s still expires %s; not restarting it again: check the init container's log", fresh.LeafFile, fresh.LeafExpiry.Format(time.RFC3339))
						r.API.Event(ctx, row.Namespace, row.Release, "Warning", ReasonNoRenewal, msg)
						r.Log.Warn("restart renewed nothing", "vcluster", key, "file", fresh.LeafFile)
					}
				}
			}
		}
		return false, false
	}
	if p != nil && !p.Terminating && p.UID == row.RestartedPod {
		return false, false // the delete never happened (it failed after the record): not in flight
	}
	if now.Sub(row.LastRestart) < r.ReadyTimeout {
		return true, false
	}
	r.once(ctx, candidate{row: row}, "stalled@"+row.LastRestart.String(), "Warning", ReasonRestartStalled,
		fmt.Sprintf("certguard fleet: pod %s-0 is not Ready %s after the restart; no other vcluster is restarted until the window closes", row.Release, pki.FormatDuration(r.ReadyTimeout)))
	return true, true
}

// once emits an Event and a log line the first time a key is seen with this tag.
func (r *Restarter) once(ctx context.Context, c candidate, tag, eventType, reason, msg string) {
	key := c.row.Namespace + "/" + c.row.Release
	if !r.say(key, tag, msg) {
		return
	}
	r.API.Event(ctx, c.row.Namespace, c.row.Release, eventType, reason, msg)
}

// say logs msg for key and tag when it differs from what was last logged; it reports whether it
// did, so a decision repeated every tick is logged once.
func (r *Restarter) say(key, tag, msg string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.said == nil {
		r.said = map[string]string{}
	}
	if r.said[key+"\x00"+tag] == msg {
		return false
	}
	r.said[key+"\x00"+tag] = msg
	if r.Log != nil {
		r.Log.Info("restart decision", "vcluster", key, "why", msg, "dry_run", r.DryRun)
	}
	return true
}

// View returns the last Tick's view of each vcluster, and whether this replica holds the Lease.
func (r *Restarter) View() (map[string]VclusterRestart, bool) {
	if r == nil {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view, r.leader
}

// Run ticks every interval until ctx ends, and releases the Lease when it does.
func (r *Restarter) Run(ctx context.Context, interval time.Duration, release func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.Tick(ctx, time.Now())
		select {
		case <-ctx.Done():
			if release != nil {
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				release(rctx)
				cancel()
			}
			return
		case <-t.C:
		}
	}
}

// KubeRestartAPI is RestartAPI on the API server.
type KubeRestartAPI struct {
	Client *kube.Client
	Lease  *kube.Lease
	Log    *slog.Logger
	// Instance names this replica in Events (reportingInstance).
	Instance string
}

func (k *KubeRestartAPI) Hold(ctx context.Context) (bool, error) { return k.Lease.Hold(ctx) }

func (k *KubeRestartAPI) Secret(ctx context.Context, namespace, name string) (*pki.Secret, error) {
	return (&kube.SecretStore{Client: k.Client, Namespace: namespace, Name: name}).Get(ctx)
}

func (k *KubeRestartAPI) Pod(ctx context.Context, namespace, name string) (*kube.PodState, error) {
	return kube.GetPod(ctx, k.Client, namespace, name)
}

func (k *KubeRestartAPI) Record(ctx context.Context, namespace, secret string, annotations map[string]string) error {
	return (&kube.SecretStore{Client: k.Client, Namespace: namespace, Name: secret}).Annotate(ctx, annotations)
}

func (k *KubeRestartAPI) DeletePod(ctx context.Context, namespace, name, uid string) error {
	return kube.DeletePod(ctx, k.Client, namespace, name, uid)
}

func (k *KubeRestartAPI) Event(ctx context.Context, namespace, statefulSet, eventType, reason, message string) {
	e := &kube.Events{Client: k.Client, Namespace: namespace, Pod: statefulSet, Kind: "StatefulSet", APIVersion: "apps/v1", Instance: k.Instance, Log: k.Log}
	e.Emit(ctx, eventType, reason, message)
}
