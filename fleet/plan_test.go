package fleet

import (
	"testing"
	"time"

	"github.com/certguard/certguard/restart"
)

func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBuildPlan: expected bookings read off a calendar (2026-11-28 and 2026-12-05 are
// Saturdays; Berlin is UTC+1 in winter, UTC+2 from 2027-03-28).
func TestBuildPlan(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	now := at(t, "2026-11-27T12:00:00Z") // a Friday
	row := func(ns, rel, leaf string) Row {
		r := Row{Namespace: ns, Release: rel, Status: StatusOK}
		if leaf != "" {
			r.LeafExpiry = at(t, leaf)
		}
		return r
	}
	type want struct{ release, due, window string }
	cases := []struct {
		name   string
		window string
		loc    *time.Location
		max    int
		rows   []Row
		want   []want
	}{
		{
			name: "already due: booked from now, not from the past due time", window: "Sat 02:00-04:00", loc: time.UTC, max: 1,
			rows: []Row{row("a", "late", "2026-12-01T00:00:00Z")}, // due 2026-11-24 with 7d
			want: []want{{"late", "2026-11-24T00:00:00Z", "2026-11-28T02:00:00Z"}},
		},
		{
			name: "equal due times: namespace then release order, then spill", window: "Sat 02:00-04:00", loc: time.UTC, max: 1,
			rows: []Row{row("b", "x", "2026-12-10T00:00:00Z"), row("a", "y", "2026-12-10T00:00:00Z"), row("a", "x", "2026-12-10T00:00:00Z")},
			want: []want{{"x", "2026-12-03T00:00:00Z", "2026-12-05T02:00:00Z"}, {"y", "2026-12-03T00:00:00Z", "2026-12-12T02:00:00Z"},
				{"x", "2026-12-03T00:00:00Z", "2026-12-19T02:00:00Z"}},
		},
		{
			name: "due exactly at an opening: that opening", window: "Sat 02:00-04:00", loc: time.UTC, max: 1,
			rows: []Row{row("a", "x", "2026-12-12T02:00:00Z")},
			want: []want{{"x", "2026-12-05T02:00:00Z", "2026-12-05T02:00:00Z"}},
		},
		{
			name: "a window in Berlin, across the switch to summer time", window: "Sat 02:00-04:00", loc: berlin, max: 1,
			rows: []Row{row("a", "winter", "2027-01-08T00:00:00Z"), row("a", "summer", "2027-04-08T00:00:00Z")},
			want: []want{{"winter", "2027-01-01T00:00:00Z", "2027-01-02T01:00:00Z"}, {"summer", "2027-04-01T00:00:00Z", "2027-04-03T00:00:00Z"}},
		},
		{
			name: "no window: due times only", window: "", loc: time.UTC, max: 1,
			rows: []Row{row("a", "x", "2026-12-12T00:00:00Z"), row("a", "nok0s", "")},
			want: []want{{"x", "2026-12-05T00:00:00Z", ""}, {"nok0s", "", ""}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := restart.ParseWindow(c.window, c.loc)
			if err != nil {
				t.Fatal(err)
			}
			var vcs []Vcluster
			for _, r := range c.rows {
				vcs = append(vcs, Vcluster{Row: r})
			}
			p := BuildPlan(vcs, now, PlanSettings{Window: w, MaxConcurrent: c.max, RenewBefore: 7 * 24 * time.Hour, ReadyTimeout: 15 * time.Minute}, nil)
			if len(p.Rows) != len(c.want) {
				t.Fatalf("%d rows, want %d: %+v", len(p.Rows), len(c.want), p.Rows)
			}
			for i, wr := range c.want {
				g := p.Rows[i]
				var due, win time.Time
				if wr.due != "" {
					due = at(t, wr.due)
				}
				if wr.window != "" {
					win = at(t, wr.window)
				}
				if g.Release != wr.release || !g.Due.Equal(due) || !g.Window.Equal(win) {
					t.Errorf("row %d: %s due %s window %s, want %s due %s window %s", i, g.Release, g.Due, g.Window, wr.release, wr.due, wr.window)
				}
			}
		})
	}
}
