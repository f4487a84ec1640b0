package pkigen

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/certguard/certguard/pki"
)

// MemorySecret is a pki.SecretAPI held in memory, with resourceVersion semantics like the API
// server's. `certguard demo` uses it to run without a cluster; the project's Kubernetes tests use
// the real API server instead.
type MemorySecret struct {
	// Clock is the simulated API server's clock (default: this machine's).
	Clock func() time.Time

	mu     sync.Mutex
	secret *pki.Secret
	rv     int
}

var _ pki.SecretAPI = (*MemorySecret)(nil)

// NewMemorySecret holds a Secret with the given data, or none when data is nil.
func NewMemorySecret(namespace, name string, data map[string][]byte) *MemorySecret {
	m := &MemorySecret{}
	if data != nil {
		m.rv = 1
		m.secret = &pki.Secret{Namespace: namespace, Name: name, UID: "memory", ResourceVersion: "1", Data: maps.Clone(data)}
	}
	return m
}

func (m *MemorySecret) Get(context.Context) (*pki.Secret, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.secret == nil {
		return nil, nil
	}
	c := *m.secret
	c.Data = maps.Clone(m.secret.Data)
	return &c, nil
}

// RemoveKeys removes keys in one write, on the condition that s is the current resourceVersion.
func (m *MemorySecret) RemoveKeys(_ context.Context, s *pki.Secret, keys []string, dryRun bool) error {
	return m.update(s, dryRun, func(data map[string][]byte) {
		for _, k := range keys {
			delete(data, k)
		}
	})
}

// SetKeys sets keys in one write, on the same resourceVersion condition as RemoveKeys.
func (m *MemorySecret) SetKeys(_ context.Context, s *pki.Secret, set map[string][]byte, dryRun bool) error {
	return m.update(s, dryRun, func(data map[string][]byte) {
		for k, v := range set {
			data[k] = slices.Clone(v)
		}
	})
}

// update is one write as the API server does it: refused with ErrSecretChanged unless s is the
// current resourceVersion, checked and not stored under dryRun, else edit applied and a new
// resourceVersion (as kube.SecretStore.update).
func (m *MemorySecret) update(s *pki.Secret, dryRun bool, edit func(data map[string][]byte)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.secret == nil || m.secret.ResourceVersion != s.ResourceVersion {
		return fmt.Errorf("memory Secret: %w", pki.ErrSecretChanged)
	}
	if dryRun {
		return nil
	}
	edit(m.secret.Data)
	m.rv++
	m.secret.ResourceVersion = strconv.Itoa(m.rv)
	return nil
}

func (m *MemorySecret) Delete(_ context.Context, s *pki.Secret, dryRun bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.secret == nil {
		return nil
	}
	if m.secret.ResourceVersion != s.ResourceVersion {
		return fmt.Errorf("memory Secret: %w", pki.ErrSecretChanged)
	}
	if dryRun {
		return nil
	}
	m.secret = nil
	return nil
}

// ServerTime is the simulated API server's clock.
func (m *MemorySecret) ServerTime() time.Time {
	if m.Clock != nil {
		return m.Clock()
	}
	return time.Now()
}
