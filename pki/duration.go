package pki

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration is time.ParseDuration plus a whole-day unit, as in "90d" or "1d12h". A value
// beyond what a time.Duration holds (about 106751 days) is an error: it used to wrap to a
// negative duration, under which nothing is ever due.
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q: want e.g. 120d, 90d12h or 720h", s)
	var total time.Duration
	rest := s
	if i := strings.Index(rest, "d"); i > 0 {
		days, err := strconv.Atoi(rest[:i])
		if err != nil || days < 0 {
			return 0, bad
		}
		if int64(days) > math.MaxInt64/int64(24*time.Hour) {
			return 0, fmt.Errorf("invalid duration %q: at most %dd", s, math.MaxInt64/int64(24*time.Hour))
		}
		total = time.Duration(days) * 24 * time.Hour
		rest = rest[i+1:]
		if rest == "" {
			return total, nil
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil || d < 0 {
		return 0, bad
	}
	if d > math.MaxInt64-total {
		return 0, fmt.Errorf("invalid duration %q: at most %dd", s, math.MaxInt64/int64(24*time.Hour))
	}
	return total + d, nil
}

// FormatDuration prints whole days as "Nd" and anything else as time.Duration does.
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// K0sLeafLifetime is how long k0s signs its leaves for (its cfssl signing profile: 8760h).
const K0sLeafLifetime = 365 * 24 * time.Hour

// CheckRenewBefore rejects a renew-before at or beyond the lifetime of the leaves k0s issues:
// under it a leaf is due the moment k0s signs it, so every start would remove the leaves the
// last start made. A value is rejected rather than capped, so that what is configured is what
// is used.
func CheckRenewBefore(d time.Duration) error {
	if d >= K0sLeafLifetime {
		return fmt.Errorf("must be below %s, the lifetime of the leaves k0s signs (got %s): every start would renew the leaves the last one made",
			FormatDuration(K0sLeafLifetime), FormatDuration(d))
	}
	return nil
}
