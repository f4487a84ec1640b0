package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/restart"
)

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
