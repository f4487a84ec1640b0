package pki

import (
	"fmt"
	"time"
)

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
