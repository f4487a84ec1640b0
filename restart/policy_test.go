package restart

import (
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

const day = 24 * time.Hour

// Sat 2026-11-28 is a Saturday.
var sat = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)

func TestWindow(t *testing.T) {
	cases := []struct {
		spec string
		at   time.Time
		in   bool
		next time.Time
	}{
		{"Sat 02:00-04:00", sat.Add(3 * time.Hour), true, sat.Add(3 * time.Hour)},
		{"Sat 02:00-04:00", sat.Add(4 * time.Hour), false, sat.Add(7*day + 2*time.Hour)},
		{"Sat 02:00-04:00", sat.Add(-day), false, sat.Add(2 * time.Hour)},
		{"Sat 02:00-04:00", sat.Add(2 * time.Hour), true, sat.Add(2 * time.Hour)},
		{"Mon-Fri 01:00-02:00", sat.Add(90 * time.Minute), false, sat.Add(2*day + time.Hour)},
		{"Fri-Mon 01:00-02:00", sat.Add(day + 90*time.Minute), true, sat.Add(day + 90*time.Minute)},
		{"Sat,Sun 23:00-01:00", sat.Add(day + 30*time.Minute), true, sat.Add(day + 30*time.Minute)}, // Saturday's window, past midnight
		{"03:00-04:00", sat.Add(5 * time.Hour), false, sat.Add(day + 3*time.Hour)},
	}
	for _, c := range cases {
		w, err := ParseWindow(c.spec, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Contains(c.at); got != c.in {
			t.Errorf("%q contains %s = %v, want %v", c.spec, c.at, got, c.in)
		}
		if got := w.Next(c.at); !got.Equal(c.next) {
			t.Errorf("%q next after %s = %s, want %s", c.spec, c.at, got, c.next)
		}
	}
	for _, bad := range []string{"Sat", "Sat 2-4", "Someday 02:00-04:00", "Sat 02:00-25:00", "a b c"} {
		if _, err := ParseWindow(bad, time.UTC); err == nil {
			t.Errorf("ParseWindow(%q) accepted", bad)
		}
	}
	if w, err := ParseWindow("", time.UTC); w != nil || err != nil {
		t.Errorf("empty window = %v, %v", w, err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	w, _ := ParseWindow("Sat 02:00-04:00", berlin)
	if !w.Contains(sat.Add(2 * time.Hour)) { // 03:00 in Berlin in winter
		t.Error("time zone ignored")
	}
}

func report(t *testing.T, k0sIssued time.Time, now time.Time) *pki.Report {
	t.Helper()
	p, err := pkigen.Generate(pkigen.Options{Now: now, K0sIssued: k0sIssued})
	if err != nil {
		t.Fatal(err)
	}
	disk := pki.Store{Source: pki.SourceDisk, Present: true, Files: p.Files}
	return pki.Inspect(disk, pki.FromSecret(&pki.Secret{Data: p.SecretData()}), now, 120*day)
}

func TestRestartDecision(t *testing.T) {
	window, _ := ParseWindow("Sat 02:00-04:00", time.UTC)
	pol := Policy{Before: 30 * day, Window: window, MinInterval: day, MaxSkew: 5 * time.Minute}
	inWindow := sat.Add(3 * time.Hour)
	// Leaves issued 350 days before: they expire in ~15 days, inside --restart-before.
	soon := report(t, inWindow.Add(-350*day), inWindow)
	later := report(t, inWindow.Add(-100*day), inWindow)
	future := report(t, inWindow.Add(time.Hour), inWindow)
	// What the init container will do (the same pki.BuildPlan on the same report).
	plan := func(r *pki.Report) pki.Plan {
		return pki.BuildPlan(r, pki.Policy{Strategy: pki.StrategyAuto, ClockKnown: true, MaxClockSkew: 5 * time.Minute})
	}
	deadCA := report(t, inWindow.Add(-350*day), inWindow)
	// On k0s v1.35.1 the same due leaves are re-signed by k0s at every start: the init
	// container plans nothing, and a restart renews them all the same.
	k0sNew := report(t, inWindow.Add(-350*day), inWindow)
	v1351, err := pki.ParseK0sVersion("v1.35.1+k0s.0")
	if err != nil {
		t.Fatal(err)
	}
	k0sNew.SetK0s(v1351)
	deadCAPlan := plan(deadCA)
	deadCAPlan.Decision, deadCAPlan.Refusal = pki.DecideFull, nil // as the init container decides with ca.key unusable
	cases := []struct {
		name   string
		pol    Policy
		in     Input
		now    bool
		reason string
	}{
		{"due and in the window", pol, Input{Now: inWindow, Report: soon, Plan: plan(soon)}, true, "restarting"},
		{"due, outside the window", pol, Input{Now: inWindow.Add(2 * time.Hour), Report: soon, Plan: plan(soon)}, false, "next window"},
		{"not due yet", pol, Input{Now: inWindow, Report: later, Plan: plan(later)}, false, "not within"},
		{"no window configured", Policy{Before: 30 * day}, Input{Now: inWindow, Report: soon, Plan: plan(soon)}, false, "never restarts"},
		{"restarted an hour ago", pol, Input{Now: inWindow, Report: soon, Plan: plan(soon), LastRestart: inWindow.Add(-time.Hour)}, false, "last restart"},
		{"restarted two days ago", pol, Input{Now: inWindow, Report: soon, Plan: plan(soon), LastRestart: inWindow.Add(-2 * day)}, true, "restarting"},
		{"last repair unfinished", pol, Input{Now: inWindow, Report: soon, Plan: plan(soon), RepairFailed: "20261101T000000Z"}, false, "did not finish"},
		{"clock off the API server", pol, Input{Now: inWindow, Report: soon, Plan: plan(soon), ClockSkew: time.Hour, SkewKnown: true}, false, "clock"},
		{"certificate from the future", pol, Input{Now: inWindow, Report: future, Plan: plan(future)}, false, "not within"},
		{"due on k0s v1.35.1, which re-signs at the start", pol, Input{Now: inWindow, Report: k0sNew, Plan: plan(k0sNew)}, true, "restarting"},
		{"due, but the init container would reset the PKI", pol, Input{Now: inWindow, Report: deadCA, Plan: deadCAPlan}, false, "would not renew"},
		{"sources unreadable", pol, Input{Now: inWindow, Report: soon, Plan: plan(soon), SourceErrors: []string{"Secret unreadable"}}, false, "could not be read"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.pol.Decide(c.in)
			if d.Now != c.now || !strings.Contains(d.Why, c.reason) {
				t.Fatalf("Decide = now %v, %q; want now %v, %q", d.Now, d.Why, c.now, c.reason)
			}
		})
	}
	// The planned time is the next window opening after the leaf comes within 30 days.
	d := pol.Decide(Input{Now: inWindow, Report: later, Plan: plan(later)})
	if d.At.Weekday() != time.Saturday || d.At.Hour() != 2 || !d.At.After(d.Due) {
		t.Fatalf("planned %s for due %s", d.At, d.Due)
	}
}

// TestNextOpening: the expected openings are read off a calendar (2026-11-28 is a Saturday).
func TestNextOpening(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct{ window, t, want string }{
		{"Sat 02:00-04:00", "2026-11-27T10:00:00Z", "2026-11-28T02:00:00Z"},
		{"Sat 02:00-04:00", "2026-11-28T02:00:00Z", "2026-11-28T02:00:00Z"}, // at an opening: that one
		{"Sat 02:00-04:00", "2026-11-28T02:00:01Z", "2026-12-05T02:00:00Z"}, // inside: the next one
		{"Sat 02:00-04:00", "2026-11-28T04:00:00Z", "2026-12-05T02:00:00Z"},
		{"23:00-01:00", "2026-11-28T00:30:00Z", "2026-11-28T23:00:00Z"}, // inside yesterday's
		{"00:00-00:00", "2026-11-28T12:00:00Z", "2026-11-29T00:00:00Z"}, // 24 h windows abut
		{"Mon-Fri 01:00-02:00", "2026-11-27T01:30:00Z", "2026-11-30T01:00:00Z"},
	}
	for _, c := range cases {
		w, err := ParseWindow(c.window, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.NextOpening(at(c.t)); !got.Equal(at(c.want)) {
			t.Errorf("%q.NextOpening(%s) = %s, want %s", c.window, c.t, got.UTC().Format(time.RFC3339), c.want)
		}
	}
}
