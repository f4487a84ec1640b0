package fleet

import (
	"maps"
	"slices"
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
}

// NewState makes an empty state.
func NewState() *State { return &State{entries: map[string]*Secret{}} }

// Set records a Secret (nil: deleted, or no longer one the service follows). It has the signature
// kube.CertSecretInformer calls with Parse's results.
func (s *State) Set(key string, sec *Secret) {
	s.mu.Lock()
	if sec == nil {
		delete(s.entries, key)
	} else {
		s.entries[key] = sec
	}
	s.sorted = nil
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
	var out []Vcluster
	for _, e := range s.snapshot() {
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
