package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/restart"
)

// RestartAPI is everything the restarter does on the cluster. KubeRestartAPI is the real one;
// every call is made with the time the restarter was handed, so a test can drive a year of
// restarts against a real API server with a clock of its own.
type RestartAPI interface {
	// Hold takes or renews the Lease; false: another replica restarts, this one waits.
	Hold(ctx context.Context) (bool, error)
	// Secret reads a certificate Secret fresh from the server (nil: gone).
	Secret(ctx context.Context, namespace, name string) (*pki.Secret, error)
	// Pod reads a pod's UID, phase and readiness (nil: no such pod).
	Pod(ctx context.Context, namespace, name string) (*kube.PodState, error)
	// Record sets annotations on the certificate Secret ("" removes one).
	Record(ctx context.Context, namespace, secret string, annotations map[string]string) error
	// DeletePod deletes the pod with this UID.
	DeletePod(ctx context.Context, namespace, name, uid string) error
	// Event records an Event on the vcluster's StatefulSet.
	Event(ctx context.Context, namespace, statefulSet, eventType string, reason kube.Reason, message string)
}

// Restarter is `fleet serve --restart-due`. Each Tick it follows the fleet restarts in flight
// (writing their verdict on the Secret when they end), builds the fleet plan (BuildPlan) and
// restarts exactly the rows the plan books on the opening that is open now, after checking them
// once more on the Secret and the pod read fresh. All it knows that a restart of the service or a
// Lease handover must not lose is on the Secrets (restart.Record); what it keeps in memory is a
// cache of its own writes until the informer delivers them, and what it saw of pods in this
// opening.
type Restarter struct {
	State     *State
	Workloads *Workloads
	Parse     InitParser
	API       RestartAPI
	Settings  PlanSettings
	DryRun    bool
	Log       *slog.Logger
	// LeaseBudget bounds each Tick, the Lease and every request included (real time): a fraction
	// of the Lease's duration, so that no other replica can take the Lease while this one acts.
	LeaseBudget time.Duration
	// Clock is real time for the budget (nil: time.Now); the decisions use the Tick's now.
	Clock func() time.Time

	mu     sync.Mutex
	plan   Plan
	leader bool
	said   map[string]string
	// written: the records this process wrote, until the informer delivers them (or a minute).
	written map[string]writtenRecord
	// observed: what the pods and fresh Secrets said in the opening open now (reset with it).
	observed        map[string]restart.Code
	observedOpening time.Time
	// dry: with DryRun, when a vcluster would have been restarted (counted as if it were).
	dry map[string]time.Time
}

type writtenRecord struct {
	rec restart.Record
	at  time.Time // real time
}

// Tick does what is due at now and returns the vclusters it restarted (or, with DryRun, would
// have). It builds the plan whether or not it holds the Lease, so that every replica's /plan says
// what the leader does.
func (r *Restarter) Tick(ctx context.Context, now time.Time) []string {
	clock := r.Clock
	if clock == nil {
		clock = time.Now
	}
	if r.LeaseBudget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, clock().Add(r.LeaseBudget))
		defer cancel()
	}
	held, err := r.API.Hold(ctx)
	if err != nil {
		r.say("", "lease", "cannot take the Lease; not restarting: "+err.Error())
	}
	vcs := r.vclusters(now)
	if held {
		for i := range vcs {
			if vcs[i].Record.InFlight() && ctx.Err() == nil {
				r.settle(ctx, now, &vcs[i])
			}
		}
	}
	plan := BuildPlan(vcs, now, r.Settings, r.observedIn(now))
	var started []string
	if held {
		byKey := make(map[string]*Vcluster, len(vcs))
		for i := range vcs {
			byKey[vcs[i].Key()] = &vcs[i]
		}
		for _, row := range plan.Rows {
			key := row.Namespace + "/" + row.Release
			switch {
			case row.State == StateRestartNow && ctx.Err() == nil:
				if r.start(ctx, now, byKey[key]) {
					started = append(started, key)
				}
			case row.State == StateBooked && !row.Due.After(now):
				r.once(ctx, *byKey[key], "planned@"+row.Window.String(), "Normal", kube.ReasonRestartPlanned,
					fmt.Sprintf("certguard fleet: due; booked on the restart window opening %s", row.Window.Format(time.RFC3339)))
			}
		}
		if len(started) > 0 || ctx.Err() != nil {
			plan = BuildPlan(r.vclusters(now), now, r.Settings, r.observedIn(now))
		}
	}
	r.mu.Lock()
	r.plan, r.leader = plan, held
	r.mu.Unlock()
	return started
}

// vclusters is the State's facts with this process's own writes laid over them.
func (r *Restarter) vclusters(now time.Time) []Vcluster {
	vcs := r.State.Vclusters(now, r.Settings.RenewBefore, r.Workloads, r.Parse)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range vcs {
		key := vcs[i].Key()
		if w, ok := r.written[key]; ok {
			switch {
			case w.rec == vcs[i].Record, time.Since(w.at) > time.Minute:
				delete(r.written, key) // delivered (or lost: the Secret is the truth)
			default:
				vcs[i].Record = w.rec
			}
		}
		if at, ok := r.dry[key]; ok && at.After(vcs[i].Record.LastRestart) {
			vcs[i].Record.LastRestart, vcs[i].Record.RestartedPod = at, ""
		}
	}
	return vcs
}

// wrote notes a record this process wrote.
func (r *Restarter) wrote(key string, rec restart.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.written == nil {
		r.written = map[string]writtenRecord{}
	}
	// As the codec writes them, so that the informer's copy compares equal once delivered.
	rec.LastRestart, rec.Verdict.At = rec.LastRestart.UTC().Truncate(time.Second), rec.Verdict.At.UTC().Truncate(time.Second)
	if rec.Verdict.IsZero() {
		rec.Verdict.At = time.Time{}
	}
	r.written[key] = writtenRecord{rec: rec, at: time.Now()}
}

// observedIn returns this opening's observations, forgetting those of an earlier one.
func (r *Restarter) observedIn(now time.Time) map[string]restart.Code {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cur time.Time
	if r.Settings.Window != nil {
		cur, _ = r.Settings.Window.Opening(now)
	}
	if !cur.Equal(r.observedOpening) {
		r.observed, r.observedOpening = nil, cur
	}
	out := make(map[string]restart.Code, len(r.observed))
	for k, v := range r.observed {
		out[k] = v
	}
	return out
}

func (r *Restarter) observe(key string, c restart.Code) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.observed == nil {
		r.observed = map[string]restart.Code{}
	}
	r.observed[key] = c
}

// podName is the pod the restarter deletes and follows: ordinal 0 of the vcluster's StatefulSet
// (the plan blocks StatefulSets of more than one replica).
func podName(v *Vcluster) string {
	if v.Workload != nil && v.Workload.Name != "" {
		return v.Workload.Name + "-0"
	}
	return v.Row.Release + "-0"
}

// start checks a booked vcluster once more on the Secret and the pod read fresh, records the
// restart on the Secret, then deletes the pod on condition that it is still the one read. Without
// the record nothing is deleted; after a delete that failed, settle finds out what happened.
func (r *Restarter) start(ctx context.Context, now time.Time, v *Vcluster) bool {
	key, ns, secret, pod := v.Key(), v.Row.Namespace, v.Row.Release+"-certs", podName(v)
	sec, err := r.API.Secret(ctx, ns, secret)
	if err != nil || sec == nil {
		r.observe(key, restart.SecretUnreadable)
		r.say(key, "decision", fmt.Sprintf("due, not restarted: cannot read Secret %s/%s (%v)", ns, secret, err))
		return false
	}
	data := dataFingerprint(sec.Data)
	// The init container's own plan on the Secret as it is now, with its own settings (the disk
	// is not visible from the host; vcluster copies the Secret over it at the start).
	set := v.Workload.Init
	rb := set.RenewBefore
	if pki.RenewNowRequested(sec.Annotations) {
		rb = max(rb, pki.RenewNowBefore)
	}
	report := pki.Inspect(pki.Store{}, pki.FromSecret(sec), now, rb)
	plan := pki.BuildPlan(report, pki.Policy{Strategy: set.Strategy})
	switch plan.Decision {
	case pki.DecideLeaves:
	case pki.DecideNothing:
		// Nothing due on the Secret as it is now: the informer lags a renewal. Not a verdict.
		r.say(key, "decision", "due by the informer's copy, but not on the Secret read now: not restarted")
		return false
	default:
		why := fmt.Sprintf("the init container's plan on this Secret is %s", plan.Decision)
		if plan.Refusal != nil {
			why += ": " + plan.Refusal.Text
		} else if len(plan.Why) > 0 {
			why += ": " + plan.Why[0].Text
		}
		vd := restart.Verdict{Code: restart.WouldRefuse, At: now, Data: data}
		if err := r.API.Record(ctx, ns, secret, restart.VerdictAnnotations(vd, false)); err != nil {
			r.observe(key, restart.WouldRefuse) // at least not again in this opening
		} else {
			rec := v.Record
			rec.Verdict = vd
			r.wrote(key, rec)
		}
		r.once(ctx, *v, "blocked@"+data, "Warning", kube.ReasonRestartBlocked, "certguard fleet: not restarting: "+why+"; fix that first")
		return false
	}
	p, err := r.API.Pod(ctx, ns, pod)
	switch {
	case err != nil:
		r.say(key, "decision", "due, not restarted: "+err.Error())
		return false
	case p == nil || p.Terminating:
		r.say(key, "decision", "due, not restarted: pod "+pod+" is being replaced already")
		return false
	case p.Pending:
		r.observe(key, restart.PodNotStarted)
		r.once(ctx, *v, "pending@"+p.UID, "Warning", kube.ReasonRestartBlocked,
			"certguard fleet: not restarting: pod "+pod+" has not started (Pending); its init container renews the leaves when it does")
		return false
	}
	renewNow := ""
	if v.Workload.RenewNow != "" && renewNowPending(v.Workload.RenewNow, v.Record) && !pki.RenewNowRequested(sec.Annotations) {
		renewNow = v.Workload.RenewNow // the init container reads the Secret only
	}
	if r.DryRun {
		r.mu.Lock()
		if r.dry == nil {
			r.dry = map[string]time.Time{}
		}
		r.dry[key] = now
		r.mu.Unlock()
		r.say(key, "dry-run", "dry run: would delete pod "+ns+"/"+pod+" so that its init container renews the k0s leaves")
		return true
	}
	if err := r.API.Record(ctx, ns, secret, restart.StartAnnotations(now, p.UID, renewNow)); err != nil {
		r.Log.Error("not restarting: cannot record the restart on the Secret", "vcluster", key, "err", err)
		return false
	}
	rec := v.Record
	rec.LastRestart, rec.RestartedPod, rec.Verdict = now.UTC().Truncate(time.Second), p.UID, restart.Verdict{}
	r.wrote(key, rec)
	r.API.Event(ctx, ns, v.Workload.Name, "Normal", kube.ReasonRestart, "certguard fleet: deleting pod "+pod+" so that its init container renews the k0s leaves")
	if err := r.API.DeletePod(ctx, ns, pod, p.UID); err != nil {
		// An error does not say the pod is still there: a timeout or a 5xx may come after the
		// server deleted it. The record stays in flight, so the restart counts against the
		// opening; settle reads the pod at the next tick and, if the deleted UID still runs,
		// marks the record not-restarted, which frees the vcluster at once (no
		// --restart-min-interval for a restart that did not happen).
		r.API.Event(ctx, ns, v.Workload.Name, "Warning", kube.ReasonRestartFailed, "certguard fleet: "+err.Error())
		r.Log.Error("deleting the pod failed; the next tick checks whether it is gone", "vcluster", key, "err", err)
		return false
	}
	r.Log.Info("pod deleted: the StatefulSet recreates it and certguard's init container renews the leaves", "vcluster", key)
	return true
}

// settle judges a fleet restart in flight and, once it has ended, writes its verdict: renewed or
// renewed nothing once a pod other than the deleted one is Ready, stalled once that takes longer
// than --restart-ready-timeout, not restarted when the deleted pod is still there.
func (r *Restarter) settle(ctx context.Context, now time.Time, v *Vcluster) {
	rec, key, ns, secret, pod := v.Record, v.Key(), v.Row.Namespace, v.Row.Release+"-certs", podName(v)
	p, err := r.API.Pod(ctx, ns, pod)
	if err != nil {
		return // unknown: still in flight
	}
	var vd restart.Verdict
	clearRenewNow := false
	switch {
	case p != nil && !p.Terminating && p.UID == rec.RestartedPod:
		vd = restart.Verdict{Code: restart.NotRestarted, At: rec.LastRestart, Data: v.Data}
	case p != nil && p.Ready && !p.Terminating:
		// Back. Did the init container renew? Read the Secret fresh: the informer may lag.
		sec, err := r.API.Secret(ctx, ns, secret)
		if err != nil || sec == nil {
			return
		}
		rb := r.Settings.RenewBefore
		if v.Workload != nil && v.Workload.Blocker == "" {
			rb = v.Workload.Init.RenewBefore
		}
		fresh := Judge(sec, now, rb)
		vd = restart.Verdict{Code: restart.Renewed, At: now, Data: dataFingerprint(sec.Data)}
		if fresh.LeafExpiry.IsZero() || !now.Before(fresh.LeafExpiry.Add(-rb)) {
			vd.Code = restart.RenewedNothing
		}
		clearRenewNow = vd.Code == restart.Renewed && !rec.RenewNow.IsZero()
	case now.Sub(rec.LastRestart) >= r.Settings.ReadyTimeout:
		vd = restart.Verdict{Code: restart.Stalled, At: now, Data: v.Data}
	default:
		return
	}
	if err := r.API.Record(ctx, ns, secret, restart.VerdictAnnotations(vd, clearRenewNow)); err != nil {
		return // still in flight; the next tick judges again
	}
	rec.Verdict = vd
	if clearRenewNow {
		rec.RenewNow = time.Time{}
	}
	v.Record = rec
	r.wrote(key, rec)
	sts := v.Row.Release
	if v.Workload != nil && v.Workload.Name != "" {
		sts = v.Workload.Name
	}
	switch vd.Code {
	case restart.Renewed:
		r.API.Event(ctx, ns, sts, "Normal", kube.ReasonRenewed, "certguard fleet: pod "+pod+" is back with renewed k0s leaves")
	case restart.RenewedNothing:
		r.API.Event(ctx, ns, sts, "Warning", kube.ReasonRenewedNothing, "certguard fleet: pod "+pod+" came back, but its k0s leaves are still due; not restarting it again: check the init container's log")
		r.Log.Warn("restart renewed nothing", "vcluster", key)
	case restart.Stalled:
		r.API.Event(ctx, ns, sts, "Warning", kube.ReasonRestartStalled, fmt.Sprintf("certguard fleet: pod %s is not Ready %s after the restart; no other vcluster is restarted until the window closes", pod, pki.FormatDuration(r.Settings.ReadyTimeout)))
	case restart.NotRestarted:
		r.API.Event(ctx, ns, sts, "Warning", kube.ReasonRestartFailed, "certguard fleet: pod "+pod+" was not deleted; the restart did not happen")
	}
}

// once emits an Event and a log line the first time a key is seen with this tag.
func (r *Restarter) once(ctx context.Context, v Vcluster, tag, eventType string, reason kube.Reason, msg string) {
	if !r.say(v.Key(), tag, msg) {
		return
	}
	sts := v.Row.Release
	if v.Workload != nil && v.Workload.Name != "" {
		sts = v.Workload.Name
	}
	r.API.Event(ctx, v.Row.Namespace, sts, eventType, reason, msg)
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

// Plan returns the last Tick's plan as it stands after what the tick executed (zero before the
// first), and whether this replica holds the Lease.
func (r *Restarter) Plan() (Plan, bool) {
	if r == nil {
		return Plan{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.plan, r.leader
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

func (k *KubeRestartAPI) Event(ctx context.Context, namespace, statefulSet, eventType string, reason kube.Reason, message string) {
	e := &kube.Events{Client: k.Client, Namespace: namespace, Pod: statefulSet, Kind: "StatefulSet", APIVersion: "apps/v1", Instance: k.Instance, Log: k.Log}
	e.Emit(ctx, eventType, reason, message)
}
