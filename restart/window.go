package restart

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Window is a weekly maintenance window such as "Sat 02:00-04:00" or "Mon-Fri 01:30-02:00", in
// one time zone. A window whose end is not after its start runs past midnight.
type Window struct {
	Days       []time.Weekday // empty = every day
	Start, End time.Duration  // since midnight
	Loc        *time.Location
	text       string
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseWindow reads "[DAYS ]HH:MM-HH:MM" where DAYS is a day, a range (Mon-Fri) or a list
// (Sat,Sun). An empty string is no window: never restart.
func ParseWindow(s string, loc *time.Location) (*Window, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	bad := fmt.Errorf("invalid window %q: want e.g. \"Sat 02:00-04:00\", \"Mon-Fri 01:00-02:00\" or \"03:00-04:00\"", s)
	w := &Window{Loc: loc, text: s}
	fields := strings.Fields(s)
	if len(fields) > 2 {
		return nil, bad
	}
	if len(fields) == 2 {
		for _, part := range strings.Split(strings.ToLower(fields[0]), ",") {
			from, to, isRange := strings.Cut(part, "-")
			a, ok1 := weekdays[from]
			b, ok2 := weekdays[to]
			if !ok1 || (isRange && !ok2) {
				return nil, bad
			}
			if !isRange {
				b = a
			}
			for d := a; ; d = (d + 1) % 7 {
				if !slices.Contains(w.Days, d) {
					w.Days = append(w.Days, d)
				}
				if d == b {
					break
				}
			}
		}
	}
	from, to, ok := strings.Cut(fields[len(fields)-1], "-")
	var err1, err2 error
	w.Start, err1 = clock(from)
	w.End, err2 = clock(to)
	if !ok || err1 != nil || err2 != nil {
		return nil, bad
	}
	return w, nil
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, err
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

func (w *Window) String() string { return w.text }

func (w *Window) length() time.Duration {
	if w.End > w.Start {
		return w.End - w.Start
	}
	return w.End + 24*time.Hour - w.Start
}

// opening returns the start of the window that contains t, or of the next one.
func (w *Window) opening(t time.Time) (start time.Time, open bool) {
	t = t.In(w.Loc)
	midnight := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, w.Loc)
	// The window that opened yesterday may still be open after midnight.
	for d := -1; d <= 7; d++ {
		day := midnight.AddDate(0, 0, d)
		if len(w.Days) > 0 && !slices.Contains(w.Days, day.Weekday()) {
			continue
		}
		s := day.Add(w.Start)
		e := s.Add(w.length())
		if !t.Before(s) && t.Before(e) {
			return s, true
		}
		if s.After(t) {
			return s, false
		}
	}
	return time.Time{}, false
}

// Contains reports whether t is inside the window.
func (w *Window) Contains(t time.Time) bool {
	_, open := w.opening(t)
	return open
}

// Next returns the first instant at or after t inside the window.
func (w *Window) Next(t time.Time) time.Time {
	s, open := w.opening(t)
	if open {
		return t
	}
	return s
}

// NextOpening returns the first instant at or after t at which the window opens: the start of a
// window, never a moment inside one. certguard fleet plan books restarts on openings, so that
// each booked vcluster gets a whole window.
func (w *Window) NextOpening(t time.Time) time.Time {
	s, open := w.opening(t)
	if !open || s.Equal(t) {
		return s
	}
	// Inside a window that opened before t: the next one opens after this one closes (a window
	// lasts at most 24 h and there is one a day, so they never overlap; they may abut).
	s, _ = w.opening(s.Add(w.length()))
	return s
}

// Opening returns the start of the window that contains t, and whether t is inside one.
func (w *Window) Opening(t time.Time) (start time.Time, open bool) {
	s, open := w.opening(t)
	if !open {
		return time.Time{}, false
	}
	return s, true
}
