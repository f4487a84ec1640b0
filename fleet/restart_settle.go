package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/restart"
)

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
