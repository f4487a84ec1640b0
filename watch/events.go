package watch

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
)

// Event is one Kubernetes Event to record on the pod; its reasons are k3s's expiry reasons
// (kube's table), so alerting on them keeps working.
type Event struct {
	Type    string
	Reason  kube.Reason
	Message string
}

// eventState remembers, per file, the last state an Event was recorded for and when.
type eventState struct {
	status pki.Status
	at     time.Time
}

// Eventer deduplicates: one Event per certificate per state change, and a reminder at most every
// Reminder while a certificate stays due or expired.
type Eventer struct {
	Reminder time.Duration
	seen     map[string]eventState
}

// Next returns the Events to record for a report and remembers them as recorded. The first
// report gives a warning per due or expired certificate, or one CertificateExpirationOK when all
// are fine (as k3s does at startup); later reports give an Event when a certificate changes
// state, and a reminder while one stays due or expired.
func (e *Eventer) Next(r *pki.Report) []Event {
	first := e.seen == nil
	if first {
		e.seen = map[string]eventState{}
	}
	var out []Event
	var okCount int
	var soonest *pki.File
	for _, f := range r.Files {
		// Kubeconfigs embed the same certificates as the .crt files: one Event per certificate.
		if f.Cert == nil || f.Format() == pki.FormatKubeconfig || f.Role == pki.RoleUnknown || f.Role == pki.RoleK0sRenewed || f.Role == pki.RoleCACopy {
			continue
		}
		prev, known := e.seen[f.Path]
		bad := f.Status != pki.StatusOK
		switch {
		case !known && !bad:
			okCount++
			if soonest == nil || f.Cert.NotAfter.Before(soonest.Cert.NotAfter) {
				soonest = &f
			}
		case !known, prev.status != f.Status, bad && r.Now.Sub(prev.at) >= e.Reminder:
			out = append(out, eventFor(f, r.Now))
		default:
			continue
		}
		e.seen[f.Path] = eventState{status: f.Status, at: r.Now}
	}
	slices.SortFunc(out, func(a, b Event) int { return strings.Compare(a.Message, b.Message) })
	if first && len(out) == 0 && soonest != nil {
		out = append(out, Event{"Normal", kube.ReasonExpirationOK, fmt.Sprintf("all %d certificates ok; the first to expire is %s at %s",
			okCount, soonest.Path, soonest.Cert.NotAfter.UTC().Format(time.RFC3339))})
	}
	return out
}

func eventFor(f pki.File, now time.Time) Event {
	reason := kube.ReasonExpiryWarning
	if f.Role == pki.RoleCA {
		reason = kube.ReasonCAExpiryWarning
	}
	at := f.Cert.NotAfter.UTC().Format(time.RFC3339)
	subject := "CN=" + f.Cert.SubjectCN
	switch f.Status {
	case pki.StatusDue:
		days := int(f.Cert.NotAfter.Sub(now) / (24 * time.Hour))
		return Event{"Warning", reason, fmt.Sprintf("%s: certificate %s will expire within %d days at %s", f.Path, subject, days, at)}
	case pki.StatusExpired:
		return Event{"Warning", reason, fmt.Sprintf("%s: certificate %s expired at %s", f.Path, subject, at)}
	case pki.StatusOK:
		return Event{"Normal", kube.ReasonExpirationOK, fmt.Sprintf("%s: certificate %s is ok, expires at %s", f.Path, subject, at)}
	}
	return Event{"Warning", reason, fmt.Sprintf("%s: certificate %s is %s: %s", f.Path, subject, f.Status, f.Detail)}
}
