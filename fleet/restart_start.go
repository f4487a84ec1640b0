package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/restart"
)

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
