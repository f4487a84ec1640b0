package restart

import (
	"fmt"
	"slices"
	"time"

	"github.com/certguard/certguard/pki"
)

// Policy decides when the sidecar deletes its own pod, so that the StatefulSet recreates
// it and the init container renews the leaves before they expire.
type Policy struct {
	Before      time.Duration // restart when a k0s leaf expires within this
	Window      *Window       // nil: never restart
	MinInterval time.Duration // at most one restart per interval, across restarts
	MaxSkew     time.Duration
}

// Input is what the decision looks at; all of it is read before, nothing here does I/O.
type Input struct {
	Now          time.Time
	Report       *pki.Report
	LastRestart  time.Time     // from the Secret's annotation
	RepairFailed string        // non-empty: an unfinished or abandoned repair in the backup dir
	SourceErrors []string      // disk or Secret unreadable
	ClockSkew    time.Duration // local minus the API server's
	SkewKnown    bool
	// Plan is what the init container will do at the next start: the same pki.BuildPlan on the
	// same Report (the sidecar's --renew-before must equal the init container's).
	Plan pki.Plan
}

// Decision is the decision: Due is when a restart is wanted (zero: not needed), At when it will
// happen (the next window opening after Due), Now whether to restart at this instant, Why always.
type Decision struct {
	Due  time.Time
	At   time.Time
	Now  bool
	Why  string
	File string
	// Blocked is set when a restart is due but the init container's plan would not renew the
	// leaves (it would do nothing, refuse, or reset the whole PKI): the sidecar then raises an
	// Event and a metric instead of taking a running control plane down.
	Blocked bool
}

// Decide is pure: the sidecar calls it on every change and timer tick.
func (p Policy) Decide(in Input) Decision {
	var r Decision
	if in.Report == nil {
		r.Why = "no report yet"
		return r
	}
	for _, f := range in.Report.Files {
		if !slices.Contains(pki.K0sLeafFiles, f.Path) || f.Cert == nil {
			continue
		}
		due := f.Cert.NotAfter.Add(-p.Before)
		if r.Due.IsZero() || due.Before(r.Due) {
			r.Due, r.File = due, f.Path
		}
	}
	if r.Due.IsZero() {
		r.Why = "no k0s leaf certificate to watch"
		return r
	}
	if p.Window == nil {
		r.Why = "no --restart-window: the sidecar never restarts the pod"
		return r
	}
	earliest := r.Due
	if !in.LastRestart.IsZero() && in.LastRestart.Add(p.MinInterval).After(earliest) {
		earliest = in.LastRestart.Add(p.MinInterval)
	}
	r.At = p.Window.Next(maxTime(earliest, in.Now))
	switch {
	case in.Now.Before(r.Due):
		r.Why = fmt.Sprintf("%s is not within %s of expiry yet", r.File, pki.FormatDuration(p.Before))
	case len(in.SourceErrors) > 0:
		r.Why = "not restarting: the PKI could not be read (" + in.SourceErrors[0] + ")"
	case in.RepairFailed != "":
		r.Why = "not restarting: the last repair did not finish (" + in.RepairFailed + ")"
	case in.SkewKnown && (in.ClockSkew > p.MaxSkew || -in.ClockSkew > p.MaxSkew):
		r.Why = fmt.Sprintf("not restarting: this node's clock is %s off the API server's", in.ClockSkew.Round(time.Second))
	case skewed(in.Report):
		r.Why = "not restarting: a certificate is not valid yet (clock skew)"
	case in.Plan.Decision != pki.DecideLeaves && !k0sRenews(in):
		r.Blocked = true
		r.Why = fmt.Sprintf("not restarting: %s is due, but the init container would not renew the leaves (its plan: %s", r.File, in.Plan.Decision)
		if in.Plan.Refusal != nil {
			r.Why += ": " + in.Plan.Refusal.Text
		} else if len(in.Plan.Why) > 0 {
			r.Why += ": " + in.Plan.Why[0].Text
		}
		r.Why += "); fix that first, then the init container renews them at the next start"
	case !in.LastRestart.IsZero() && in.Now.Before(in.LastRestart.Add(p.MinInterval)):
		r.Why = fmt.Sprintf("not restarting: the last restart was at %s, less than %s ago", in.LastRestart.UTC().Format(time.RFC3339), pki.FormatDuration(p.MinInterval))
	case !p.Window.Contains(in.Now):
		r.Why = fmt.Sprintf("%s is within %s of expiry: restart in the next window (%s)", r.File, pki.FormatDuration(p.Before), p.Window)
	default:
		r.Now = true
		r.At = in.Now
		r.Why = fmt.Sprintf("%s expires within %s: restarting the pod so that the init container renews it", r.File, pki.FormatDuration(p.Before))
	}
	return r
}

func skewed(r *pki.Report) bool {
	return slices.ContainsFunc(r.Files, func(f pki.File) bool { return f.Role != pki.RoleUnknown && f.Status == pki.StatusNotYetValid })
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// k0sRenews: the plan renews nothing because k0s ≥ v1.35.1 re-signs the due leaves itself at
// every start, so a restart renews them all the same.
func k0sRenews(in Input) bool {
	_, ok := in.Plan.Has(pki.CodeK0sRenews)
	return in.Plan.Decision == pki.DecideNothing && in.Report.K0s.RenewsLeaves && ok
}
