package fleet

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certguard/certguard/pki"
)

// entry is one certificate Secret as the informer last delivered it, with what every scrape
// needs that does not depend on the time: the certificates' fields, parsed once per change.
type entry struct {
	secret *pki.Secret
	report *pki.Report // pki.Inspect of the Secret alone, for the x509_cert_* series
}

// State is every vcluster certificate Secret the informer has seen, by "<namespace>/<name>". The
// informer's goroutine writes it; scrapes and /plan read it.
type State struct {
	mu      sync.RWMutex
	entries map[string]entry
}

// NewState makes an empty state.
func NewState() *State { return &State{entries: map[string]entry{}} }

// Set records a Secret (nil: deleted, or no longer a certificate Secret). It has the signature of
// kube.CertSecretHandler.
func (s *State) Set(key string, sec *pki.Secret) {
	if sec == nil {
		s.mu.Lock()
		delete(s.entries, key)
		s.mu.Unlock()
		return
	}
	// The statuses in this report are never read (they depend on the scrape's time); the zero
	// time and renew-before are only there to fill them.
	e := entry{secret: sec, report: pki.Inspect(pki.Store{}, pki.FromSecret(sec), time.Time{}, 0)}
	s.mu.Lock()
	s.entries[key] = e
	s.mu.Unlock()
}

// snapshot returns the entries sorted by key.
func (s *State) snapshot() []entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := slices.Sorted(maps.Keys(s.entries))
	out := make([]entry, len(keys))
	for i, k := range keys {
		out[i] = s.entries[k]
	}
	return out
}

// Rows judges every Secret at now, most urgent first, as `certguard fleet` does.
func (s *State) Rows(now time.Time, renewBefore time.Duration) []pki.FleetRow {
	var rows []pki.FleetRow
	for _, e := range s.snapshot() {
		rows = append(rows, pki.Fleet(e.secret, now, renewBefore))
	}
	pki.SortFleet(rows)
	return rows
}

// lastRepair reads the certguard.dev/last-repair annotation ("<RFC3339> <decision>").
func lastRepair(v string) time.Time {
	f, _, _ := strings.Cut(v, " ")
	t, err := time.Parse(time.RFC3339, f)
	if err != nil {
		return time.Time{}
	}
	return t
}
