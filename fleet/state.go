package fleet

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// State is every vcluster certificate Secret and kubeconfig Secret the informer has seen, by
// "<namespace>/<name>", each reduced by Parse. The informer's goroutine writes it; scrapes and /plan read it. A Secret is
// replaced whole at every change and never modified, so a reader may keep one past the lock.
type State struct {
	mu      sync.RWMutex
	entries map[string]*Secret
	sorted  []*Secret // the entries by key; nil after a change, rebuilt by the next reader
	// gone are the Secrets deleted while followed, by key: each is a source that is down
	// (x509_source_up 0) while its vcluster's StatefulSet is still there, until the Secret comes
	// back (Metrics forgets it once the StatefulSet is gone too: the vcluster was removed).
	gone map[string]goneSecret
}

// goneSecret is a deleted Secret: its x509_source_up source_name and its vcluster (the
// namespace and release of the StatefulSet whose presence keeps it down).
type goneSecret struct{ key, namespace, release string }

// NewState makes an empty state.
func NewState() *State { return &State{entries: map[string]*Secret{}, gone: map[string]goneSecret{}} }

// Set records a Secret (nil: deleted, or no longer one the service follows). It has the signature
// kube.CertSecretInformer calls with Parse's results.
func (s *State) Set(key string, sec *Secret) {
	s.mu.Lock()
	if sec == nil {
		if old := s.entries[key]; old != nil {
			if g, ok := s.vclusterOf(old); ok {
				s.gone[key] = g
			}
		}
		delete(s.entries, key)
	} else {
		s.entries[key] = sec
		delete(s.gone, key)
	}
	s.sorted = nil
	s.mu.Unlock()
}

// vclusterOf is the vcluster a Secret belongs to, under s.mu: a certificate Secret's own, a
// kubeconfig Secret's owner as its metrics attribute it (none when that is ambiguous: such a
// Secret, deleted, simply goes). A deletion is rare: indexing every Secret for one is cheap.
func (s *State) vclusterOf(sec *Secret) (goneSecret, bool) {
	if sec.kubeconfig == nil {
		return goneSecret{key: sec.key, namespace: sec.namespace, release: sec.facts.Release}, true
	}
	var certSecrets []*Secret
	for _, e := range s.entries {
		if e.kubeconfig == nil {
			certSecrets = append(certSecrets, e)
		}
	}
	if o := indexOwners(certSecrets).owner(sec); o != nil {
		return goneSecret{key: sec.key, namespace: o.namespace, release: o.facts.Release}, true
	}
	return goneSecret{}, false
}

// deleted returns the deleted Secrets whose vcluster is known, by key.
func (s *State) deleted() []goneSecret {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := slices.Collect(maps.Values(s.gone))
	slices.SortFunc(out, func(a, b goneSecret) int { return strings.Compare(a.key, b.key) })
	return out
}

// forget drops a deleted Secret whose source no longer exists, unless it has come back since.
func (s *State) forget(key string) {
	s.mu.Lock()
	delete(s.gone, key)
	s.mu.Unlock()
}

// snapshot returns the entries sorted by key.
func (s *State) snapshot() []*Secret {
	s.mu.RLock()
	out := s.sorted
	s.mu.RUnlock()
	if out != nil {
		return out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sorted == nil {
		keys := slices.Sorted(maps.Keys(s.entries))
		s.sorted = make([]*Secret, len(keys))
		for i, k := range keys {
			s.sorted[i] = s.entries[k]
		}
	}
	return s.sorted
}

// Rows judges every Secret at now, most urgent first, as `certguard fleet` does.
func (s *State) Rows(now time.Time, renewBefore time.Duration) []Row {
	var rows []Row
	for _, e := range s.snapshot() {
		if e.kubeconfig == nil {
			rows = append(rows, e.facts.Row(now, renewBefore))
		}
	}
	SortRows(rows)
	return rows
}

// Vclusters is every vcluster certificate Secret's facts for the plan, judged at now, each with
// its StatefulSet read by parse (workloads nil: StatefulSets are not followed).
func (s *State) Vclusters(now time.Time, renewBefore time.Duration, workloads *Workloads, parse InitParser) []Vcluster {
	snap := s.snapshot()
	out := make([]Vcluster, 0, len(snap))
	for _, e := range snap {
		if e.kubeconfig != nil {
			continue
		}
		v := Vcluster{Row: e.facts.Row(now, renewBefore), Record: e.record, Data: e.data, UID: e.uid}
		if workloads != nil {
			wl := workloads.Read(v.Row.Namespace, v.Row.Release, parse)
			v.Workload = &wl
		}
		out = append(out, v)
	}
	return out
}
