// Package fleet is certguard's host-side service: it follows every vcluster certificate Secret
// and StatefulSet, serves their x509 and per-vcluster metrics, builds the fleet plan (which
// vcluster is renewed in which restart window, or why it is not) and, with --restart-due,
// executes exactly that plan.
package fleet

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/restart"
)

// Vcluster is every fact the plan is decided on for one vcluster.
type Vcluster struct {
	// Row is the Secret judged from its dates (Facts.Row).
	Row Row
	// Record is the Secret's restart record, verdict and renew-now request.
	Record restart.Record
	// Data fingerprints the Secret's data (a persisted verdict holds while it is unchanged), UID
	// spreads its due time (jitter).
	Data, UID string
	// Workload is its StatefulSet read (nil: StatefulSets were not read, `fleet plan` without
	// list on statefulsets: the plan books it as if it ran certguard's init container).
	Workload *Workload
}

// Key names a vcluster "<namespace>/<release>".
func (v Vcluster) Key() string { return v.Row.Namespace + "/" + v.Row.Release }

// RowState is what the plan does with a vcluster.
type RowState string

const (
	StateRestartNow RowState = "restart-now" // booked on the opening that is open now, and due: restarted now
	StateBooked     RowState = "booked"      // booked on a later opening (Window)
	StateRestarting RowState = "restarting"  // a fleet restart is in flight (its new pod is not Ready yet)
	StateStalled    RowState = "stalled"     // that restart's pod was not Ready within --restart-ready-timeout
	StateBlocked    RowState = "blocked"     // never restarted while Blocker holds
	StateManual     RowState = "manual"      // due, but there is no restart window: restart it by hand
	StateNothing    RowState = "nothing"     // no k0s leaf to renew
)

// PlanRow is one vcluster in the plan. Due is when its earliest k0s leaf comes within its init
// container's --renew-before of expiry, spread by Jitter; Window is the opening it is booked on.
type PlanRow struct {
	Namespace  string       `json:"namespace"`
	Release    string       `json:"release"`
	Status     Status       `json:"status"`
	State      RowState     `json:"state"`
	Blocker    restart.Code `json:"blocker,omitempty"`
	LeafExpiry time.Time    `json:"earliestLeafExpiry,omitzero"`
	Due        time.Time    `json:"due,omitzero"`
	Jitter     string       `json:"jitter,omitempty"`
	Window     time.Time    `json:"window,omitzero"`
	RenewNow   bool         `json:"renewNow,omitempty"`
	// Spilled counts the openings skipped because --max-concurrent vclusters were booked on them.
	Spilled int    `json:"spilled,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Plan is every vcluster's row: booked rows in booking order, then the others by name.
type Plan struct {
	Now           time.Time `json:"now"`
	RenewBefore   string    `json:"renewBefore"`
	Window        string    `json:"restartWindow,omitempty"`
	Timezone      string    `json:"restartTimezone,omitempty"`
	MaxConcurrent int       `json:"maxConcurrent"`
	// Opening is the window opening that is open now (zero: none); Stalled is set when a restart
	// in it stalled, which ends restarts until the next one.
	Opening time.Time `json:"opening,omitzero"`
	Stalled bool      `json:"stalled,omitempty"`
	Rows    []PlanRow `json:"vclusters"`
}

// PlanSettings are the service's settings the plan obeys.
type PlanSettings struct {
	Window *restart.Window
	// MaxConcurrent is the one meaning of --max-concurrent: at most this many vclusters restarted
	// per window opening, which also bounds the restarts in flight.
	MaxConcurrent int
	// RenewBefore judges vclusters whose init container is not read (the service's own flag).
	RenewBefore  time.Duration
	MinInterval  time.Duration
	ReadyTimeout time.Duration
	// Jitter spreads due times (--jitter, JitterFraction by default; 0: none).
	Jitter float64
}

// JitterFraction is --jitter's default: a vcluster falls due up to this fraction of its
// --renew-before after its leaves come within it, by a hash of its Secret's UID, so that a fleet
// created on one day is not due in one window. Later, never earlier: the init container renews
// whatever is within its --renew-before, so a later restart still renews.
const JitterFraction = 0.1

func jitter(uid string, rb time.Duration, fraction float64) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(uid))
	return time.Duration(float64(h.Sum64()>>11) / float64(1<<53) * fraction * float64(rb)).Truncate(time.Minute)
}

// BuildPlan is the fleet plan, pure: from the vclusters' facts, the restarter's observations in
// the opening open now (observed; nil outside), now and the settings. fleet plan, /plan, the
// metrics and the restarter all use it; the restarter restarts exactly the rows in
// StateRestartNow, and nothing else.
//
// Booking: the vclusters that can be renewed are taken in order of due time (the most urgent
// first) and each is booked on the first opening at or after max(due, now, last restart +
// --restart-min-interval) that holds fewer than --max-concurrent. A vcluster already due while a
// window is open is booked on that opening if it has room; its room is what is left after the
// restarts recorded in it and those still in flight.
func BuildPlan(vcs []Vcluster, now time.Time, s PlanSettings, observed map[string]restart.Code) Plan {
	n := max(s.MaxConcurrent, 1)
	p := Plan{Now: now.UTC(), RenewBefore: pki.FormatDuration(s.RenewBefore), MaxConcurrent: n}
	var cur time.Time
	open := false
	if s.Window != nil {
		p.Window, p.Timezone = s.Window.String(), s.Window.Loc.String()
		cur, open = s.Window.Opening(now)
	}
	if open {
		p.Opening = cur.UTC()
	}
	// The room left in the opening that is open now.
	used, inFlight := 0, 0
	for _, v := range vcs {
		r := v.Record
		if last := r.Restarted(); open && !last.IsZero() && !last.Before(cur) {
			used++
			if r.Verdict.Code == restart.Stalled || (r.InFlight() && now.Sub(r.LastRestart) >= s.ReadyTimeout) {
				p.Stalled = true
			}
		}
		if r.InFlight() && now.Sub(r.LastRestart) < s.ReadyTimeout {
			inFlight++
		}
	}
	room := n - max(used, inFlight)
	if p.Stalled {
		room = 0
	}

	type todo struct {
		row      PlanRow
		earliest time.Time
	}
	// Sized once: at 10,000 vclusters, growing them made half of a /plan's time.
	queue, rest := make([]todo, 0, len(vcs)), make([]PlanRow, 0, len(vcs))
	for _, v := range vcs {
		r := v.Row
		pr := PlanRow{Namespace: r.Namespace, Release: r.Release, Status: r.Status}
		rec := v.Record
		pr.RenewNow = rec.RenewNowPending() || (v.Workload != nil && renewNowPending(v.Workload.RenewNow, rec))
		// A fleet restart in flight is followed whatever else holds.
		if rec.InFlight() {
			pr.State, pr.Note = StateRestarting, "restarted "+rec.LastRestart.UTC().Format(time.RFC3339)+"; waiting for the new pod to be Ready"
			if now.Sub(rec.LastRestart) >= s.ReadyTimeout {
				pr.State, pr.Blocker = StateStalled, restart.Stalled
				pr.Note = fmt.Sprintf("the pod restarted %s was not Ready within %s", rec.LastRestart.UTC().Format(time.RFC3339), pki.FormatDuration(s.ReadyTimeout))
			}
			pr.LeafExpiry = r.LeafExpiry
			rest = append(rest, pr)
			continue
		}
		if r.LeafExpiry.IsZero() {
			pr.State, pr.Note = StateNothing, "no k0s leaf to renew"
			if r.Detail != "" {
				pr.Note += ": " + r.Detail
			}
			rest = append(rest, pr)
			continue
		}
		pr.LeafExpiry = r.LeafExpiry.UTC()
		rb := s.RenewBefore
		if v.Workload != nil && v.Workload.Blocker == "" {
			rb = v.Workload.Init.RenewBefore
		}
		due := r.LeafExpiry.Add(-rb)
		if j := jitter(cmp.Or(v.UID, v.Key()), rb, s.Jitter); j > 0 && !pr.RenewNow {
			due, pr.Jitter = due.Add(j), pki.FormatDuration(j)
		}
		if pr.RenewNow && now.Before(due) {
			due = now
		}
		pr.Due = due.UTC()
		blocked := func(c restart.Code, note string) {
			pr.State, pr.Blocker, pr.Note = StateBlocked, c, note
			if v.Workload != nil && v.Workload.K0sRenews {
				pr.Status = StatusK0sRenews
			}
			rest = append(rest, pr)
		}
		switch vd := rec.Verdict; {
		case v.Workload != nil && v.Workload.Blocker != "":
			blocked(v.Workload.Blocker, "not restarted: "+v.Workload.Detail)
			continue
		case rec.RenewNowInvalid:
			blocked(restart.RenewNowInvalid, "not restarted: "+pki.RenewNowAnnotation+" must be an RFC 3339 time, e.g. $(date -u +%FT%TZ)")
			continue
		case vd.Code.Persistent() && vd.Data == v.Data && !(vd.Code == restart.RenewedNothing && pr.RenewNow):
			blocked(vd.Code, verdictNote(vd))
			continue
		}
		earliest := due
		if last := rec.Restarted(); !last.IsZero() {
			earliest = maxTime(earliest, last.Add(s.MinInterval))
		}
		if c, ok := observed[v.Key()]; ok && open {
			pr.Blocker, pr.Note = c, "not restarted in this opening: "+string(c)
			earliest = maxTime(earliest, cur.Add(time.Nanosecond)) // the next opening at the soonest
		}
		queue = append(queue, todo{pr, earliest})
	}
	// By when each can go (those already due all at now), then the most urgent first: jitter
	// spreads when vclusters fall due, never which of the due goes first.
	slices.SortStableFunc(queue, func(a, b todo) int {
		return cmp.Or(maxTime(a.earliest, now).Compare(maxTime(b.earliest, now)), a.row.LeafExpiry.Compare(b.row.LeafExpiry),
			cmp.Compare(a.row.Namespace, b.row.Namespace), cmp.Compare(a.row.Release, b.row.Release))
	})
	booked := map[int64]int{} // by opening, in Unix ns: time.Time keys compare locations too
	for i := range queue {
		r, from := &queue[i].row, maxTime(queue[i].earliest, now)
		if s.Window == nil {
			r.State, r.Note = StateManual, "no --restart-window: restart it by hand after it is due"
			continue
		}
		if open && !from.After(now) && room > 0 {
			room--
			r.State, r.Window = StateRestartNow, cur.UTC()
			continue
		}
		at := s.Window.NextOpening(from)
		for booked[at.UnixNano()] >= n {
			at = s.Window.NextOpening(at.Add(time.Nanosecond))
			r.Spilled++
		}
		booked[at.UnixNano()]++
		r.State, r.Window = StateBooked, at.UTC()
		if r.Note == "" && open && !from.After(now) && p.Stalled {
			r.Note = "a restart in this opening stalled: no other restarts until the next"
		}
		if !r.LeafExpiry.IsZero() && at.After(r.LeafExpiry) && r.Note == "" {
			r.Note = "booked after its leaves expire: raise --max-concurrent or widen --restart-window"
		}
	}
	slices.SortStableFunc(rest, func(a, b PlanRow) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Release, b.Release))
	})
	p.Rows = make([]PlanRow, 0, len(queue)+len(rest))
	for _, q := range queue {
		p.Rows = append(p.Rows, q.row)
	}
	p.Rows = append(p.Rows, rest...)
	return p
}

// renewNowPending: the StatefulSet's renew-now request, judged as the Secret's is.
func renewNowPending(v string, rec restart.Record) bool {
	t, err := time.Parse(time.RFC3339, v)
	return err == nil && t.After(rec.LastRepair)
}

func verdictNote(v restart.Verdict) string {
	switch v.Code {
	case restart.RenewedNothing:
		return "not restarted: the restart of " + v.At.UTC().Format(time.RFC3339) + " renewed nothing; see the init container's log, then set " + pki.RenewNowAnnotation
	case restart.WouldRefuse:
		return "not restarted: on this Secret the init container would not do a leaf repair (checked " + v.At.UTC().Format(time.RFC3339) + "); fix the PKI, or renew by hand"
	}
	return "not restarted: " + string(v.Code)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
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
	fmt.Fprintln(tw, "NAMESPACE\tRELEASE\tSTATUS\tSTATE\tBLOCKER\tLEAF EXPIRES\tDUE\tRESTART WINDOW\tNOTE")
	for _, r := range p.Rows {
		note := r.Note
		if r.Spilled > 0 && note == "" {
			note = fmt.Sprintf("%d earlier opening(s) full (--max-concurrent %d)", r.Spilled, p.MaxConcurrent)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Release, r.Status, r.State, orDash(string(r.Blocker)),
			at(r.LeafExpiry), at(r.Due), at(r.Window), orDash(note))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
