package restart

import (
	"strings"
	"time"

	"github.com/certguard/certguard/pki"
)

// LastRestartAnnotation records on the Secret when the sidecar or the fleet service last deleted
// the vcluster's pod to renew its leaves (RFC 3339): both honour one --restart-min-interval.
const LastRestartAnnotation = "certguard.dev/last-restart"

// RestartedPodAnnotation is the UID of the pod the fleet service deleted, written in the same
// update as LastRestartAnnotation: the restart is over once a pod with another UID is Ready.
const RestartedPodAnnotation = "certguard.dev/restarted-pod"

// RestartVerdictAnnotation is the fleet service's last verdict on the vcluster (Verdict:
// "<code> <RFC3339> <data fingerprint>"), so that a new leader decides as the last one did.
const RestartVerdictAnnotation = "certguard.dev/restart-verdict"

// Record is what the sidecar, the fleet service and the init container tell each other on the
// <release>-certs Secret, read and written only through this codec: when the pod was last deleted
// for a renewal and which pod that was, the fleet's verdict on that restart (or why it will not
// restart), an operator's request for a renewal now, and the last leaf repair. It is all a new
// leader, a restarted service or the sidecar needs to decide as the last one did.
type Record struct {
	LastRestart time.Time
	// RestartedPod is the UID of the pod the fleet deleted ("" for the sidecar's restarts, which
	// delete their own pod and need no one to follow them).
	RestartedPod string
	Verdict      Verdict
	// RenewNow is an operator's request (pki.RenewNowAnnotation); RenewNowInvalid is set when the
	// annotation is there but is no RFC 3339 time.
	RenewNow        time.Time
	RenewNowInvalid bool
	LastRepair      time.Time
}

// Verdict is the fleet's last judgement of a vcluster, persisted so that it holds across a
// restart of the service and a Lease handover: Code, when, and a fingerprint of the Secret's data
// it was made on (a verdict on data that changed since is void).
type Verdict struct {
	Code Code
	At   time.Time
	Data string
}

// IsZero reports whether there is no verdict.
func (v Verdict) IsZero() bool { return v.Code == "" }

func (v Verdict) encode() string {
	return string(v.Code) + " " + v.At.UTC().Format(time.RFC3339) + " " + v.Data
}

// ReadRecord decodes the annotations; a value that does not parse reads as absent, except
// renew-now, whose bad value must be reported rather than ignored.
func ReadRecord(ann map[string]string) Record {
	var r Record
	r.LastRestart, _ = time.Parse(time.RFC3339, ann[LastRestartAnnotation])
	r.RestartedPod = ann[RestartedPodAnnotation]
	if f := strings.Fields(ann[RestartVerdictAnnotation]); len(f) >= 2 {
		if at, err := time.Parse(time.RFC3339, f[1]); err == nil {
			r.Verdict = Verdict{Code: Code(f[0]), At: at}
			if len(f) > 2 {
				r.Verdict.Data = f[2]
			}
		}
	}
	if v, ok := ann[pki.RenewNowAnnotation]; ok {
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(v))
		r.RenewNow, r.RenewNowInvalid = t, err != nil
	}
	repair, _ := pki.ParseRepairRecord(ann[pki.LastRepairAnnotation])
	r.LastRepair = repair.At
	return r
}

// RenewNowPending reports whether an operator asked for a renewal after the last leaf repair
// (the init container honours the same rule: pki.RenewNowRequested).
func (r Record) RenewNowPending() bool {
	return !r.RenewNow.IsZero() && r.RenewNow.After(r.LastRepair)
}

// settled reports whether the verdict closes the restart at LastRestart (a verdict made at or
// after it).
func (r Record) settled() bool {
	return !r.Verdict.IsZero() && !r.Verdict.At.Before(r.LastRestart)
}

// Restarted is when the pod was last deleted for a renewal (zero: never, or the fleet's delete
// failed: a NotRestarted verdict on that record).
func (r Record) Restarted() time.Time {
	if r.settled() && r.Verdict.Code == NotRestarted {
		return time.Time{}
	}
	return r.LastRestart
}

// InFlight reports whether the record names a fleet restart not yet judged.
func (r Record) InFlight() bool {
	return r.RestartedPod != "" && !r.LastRestart.IsZero() && !r.settled()
}

// SidecarRestartAnnotations records the sidecar's restart of its own pod, made at now: written
// before the delete, so that the rate guard survives the restart it causes. The sidecar follows
// no restart to its end, so it leaves the fleet's pod and verdict annotations as they are.
func SidecarRestartAnnotations(now time.Time) map[string]string {
	return map[string]string{LastRestartAnnotation: now.UTC().Format(time.RFC3339)}
}

// StartAnnotations records a fleet restart of the pod with this UID, made at now: written before
// the delete (no record, no restart); it clears the previous verdict. renewNow, when not empty,
// carries a StatefulSet's renew-now request to the Secret, where the init container reads it.
func StartAnnotations(now time.Time, podUID, renewNow string) map[string]string {
	out := map[string]string{LastRestartAnnotation: now.UTC().Format(time.RFC3339), RestartedPodAnnotation: podUID,
		RestartVerdictAnnotation: ""}
	if renewNow != "" {
		out[pki.RenewNowAnnotation] = renewNow
	}
	return out
}

// VerdictAnnotations persists a verdict; clearRenewNow also removes a satisfied renew-now
// request (only ever with CodeRenewed).
func VerdictAnnotations(v Verdict, clearRenewNow bool) map[string]string {
	out := map[string]string{RestartVerdictAnnotation: v.encode()}
	if clearRenewNow {
		out[pki.RenewNowAnnotation] = ""
	}
	return out
}
