// Package fleet is certguard's host-side service: it follows every vcluster certificate Secret
// (kube.CertSecretInformer), serves their x509 and per-vcluster metrics, and plans when each
// vcluster's k0s leaves fall due and in which restart window it would be renewed.
package fleet

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/watch"
)

// PlanRow is one vcluster in a plan. Due is when its earliest k0s leaf comes within
// --renew-before of expiry (when the init container would renew it); Window is the restart
// window opening it is booked on (zero: no window configured, or nothing to renew).
type PlanRow struct {
	Namespace  string          `json:"namespace"`
	Release    string          `json:"release"`
	Status     pki.FleetStatus `json:"status"`
	LeafExpiry time.Time       `json:"earliestLeafExpiry,omitzero"`
	Due        time.Time       `json:"due,omitzero"`
	Window     time.Time       `json:"window,omitzero"`
	// Spilled counts the openings skipped because --max-concurrent vclusters were booked on them.
	Spilled int    `json:"spilled,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Plan is every vcluster's row, in booking order (due time, then namespace/release); rows with
// nothing to renew come last.
type Plan struct {
	Now           time.Time `json:"now"`
	RenewBefore   string    `json:"renewBefore"`
	Window        string    `json:"restartWindow,omitempty"`
	Timezone      string    `json:"restartTimezone,omitempty"`
	MaxConcurrent int       `json:"maxConcurrent"`
	Rows          []PlanRow `json:"vclusters"`
}

// BuildPlan books each vcluster whose k0s leaves are known on the first opening of w at or after
// max(due, now) that holds fewer than maxConcurrent vclusters, taking vclusters in order of due
// time so that the most urgent get the earliest openings. It is pure: now is passed in.
//
// An opening, not any instant inside a window: a restart takes the virtual control plane down for
// a minute or two, and booking whole openings keeps "at most N per window" a count anyone can
// check. A vcluster already due is booked from now on.
//
// With workloads (fleet serve), each vcluster is judged as the restarter judges it: due by its
// init container's --renew-before, and booked only when a restart would renew it (certguard's
// init container present, k0s older than v1.35.1); the others are reported, never booked.
func BuildPlan(rows []pki.FleetRow, now time.Time, renewBefore time.Duration, w *watch.Window, maxConcurrent int, workloads *Workloads) Plan {
	p := Plan{Now: now.UTC(), RenewBefore: pki.FormatDuration(renewBefore), MaxConcurrent: max(maxConcurrent, 1)}
	if w != nil {
		p.Window, p.Timezone = w.String(), w.Loc.String()
	}
	var todo, rest []PlanRow
	for _, r := range rows {
		pr := PlanRow{Namespace: r.Namespace, Release: r.Release, Status: r.Status}
		if r.LeafExpiry.IsZero() {
			pr.Note = "no k0s leaf to renew"
			if r.Detail != "" {
				pr.Note += ": " + r.Detail
			}
			rest = append(rest, pr)
			continue
		}
		pr.LeafExpiry = r.LeafExpiry.UTC()
		rb := renewBefore
		if workloads != nil {
			wl := ReadWorkload(workloads.Get(r.Namespace, r.Release), renewBefore)
			rb = wl.RenewBefore
			if why, ok := restartable(candidate{row: r, wl: wl}); !ok {
				if wl.K0sRenews {
					pr.Status = pki.FleetK0sRenews
				}
				pr.Due, pr.Note = r.LeafExpiry.Add(-rb).UTC(), why
				rest = append(rest, pr)
				continue
			}
		}
		pr.Due = r.LeafExpiry.Add(-rb).UTC()
		todo = append(todo, pr)
	}
	slices.SortStableFunc(todo, func(a, b PlanRow) int {
		return cmp.Or(a.Due.Compare(b.Due), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Release, b.Release))
	})
	slices.SortStableFunc(rest, func(a, b PlanRow) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Release, b.Release))
	})
	booked := map[int64]int{} // by opening, in Unix ns: time.Time keys compare locations too
	for i := range todo {
		r := &todo[i]
		if w == nil {
			r.Note = "no --restart-window: restart it by hand after it is due"
			continue
		}
		from := r.Due
		if from.Before(now) {
			from = now
		}
		at := w.NextOpening(from)
		for booked[at.UnixNano()] >= p.MaxConcurrent {
			at = w.NextOpening(at.Add(time.Nanosecond))
			r.Spilled++
		}
		booked[at.UnixNano()]++
		r.Window = at.UTC()
	}
	p.Rows = append(todo, rest...)
	if p.Rows == nil {
		p.Rows = []PlanRow{}
	}
	return p
}

// WritePlan prints a plan as a table, times in the window's time zone (UTC without a window).
func WritePlan(w io.Writer, p Plan, loc *time.Location) error {
	if loc == nil {
		loc = time.UTC
	}
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.In(loc).Format("2006-01-02 15:04 MST")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tRELEASE\tSTATUS\tLEAF EXPIRES\tDUE\tRESTART WINDOW\tNOTE")
	for _, r := range p.Rows {
		note := r.Note
		if r.Spilled > 0 {
			note = fmt.Sprintf("%d earlier opening(s) full (--max-concurrent %d)", r.Spilled, p.MaxConcurrent)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Release, r.Status, at(r.LeafExpiry), at(r.Due), at(r.Window), orDash(note))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
