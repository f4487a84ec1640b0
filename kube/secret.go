package kube

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/certguard/certguard/pki"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// SecretStore reads and changes the <release>-certs Secret. It implements pki.SecretAPI.
type SecretStore struct {
	Client    *Client
	Namespace string
	Name      string
	// Retry bounds how long Get keeps trying while the API is unreachable.
	Retry time.Duration

	mu   sync.Mutex
	last *secret // what Get returned, so that an update writes back the server's own object
}

var _ pki.SecretAPI = (*SecretStore)(nil)

func (s *SecretStore) ref() string { return s.Namespace + "/" + s.Name }

// Get reads the Secret, retrying with backoff while the API is unreachable, for at most Retry.
func (s *SecretStore) Get(ctx context.Context) (*pki.Secret, error) {
	deadline := time.Now().Add(s.Retry)
	wait := 200 * time.Millisecond
	for {
		obj, err := s.Client.getSecret(ctx, s.Namespace, s.Name)
		switch {
		case err == nil:
			s.mu.Lock()
			s.last = obj
			s.mu.Unlock()
			return toPKI(obj), nil
		case apierrors.IsNotFound(err):
			return nil, nil
		case !retriable(err) || !time.Now().Before(deadline):
			return nil, Explain(err, "get", "Secret "+s.ref())
		}
		select {
		case <-ctx.Done():
			return nil, Explain(ctx.Err(), "get", "Secret "+s.ref())
		case <-time.After(min(wait, time.Until(deadline))):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// RemoveKeys removes keys in one Update carrying the resourceVersion that was read, so a
// concurrent writer makes it fail with a Conflict instead of being overwritten. The same write
// records the repair on the Secret, for `certguard fleet` and the sidecar.
func (s *SecretStore) RemoveKeys(ctx context.Context, sec *pki.Secret, keys []string) error {
	s.mu.Lock()
	obj := s.last
	s.mu.Unlock()
	if obj == nil || obj.Metadata.UID != sec.UID || obj.Metadata.ResourceVersion != sec.ResourceVersion {
		return fmt.Errorf("secret %s: %w", s.ref(), pki.ErrSecretChanged)
	}
	body, err := obj.edited(keys, map[string]string{pki.LastRepairAnnotation: time.Now().UTC().Format(time.RFC3339) + " leaves"})
	if err != nil {
		return err
	}
	updated, err := s.Client.updateSecret(ctx, s.Namespace, s.Name, body)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return fmt.Errorf("secret %s: %w", s.ref(), pki.ErrSecretChanged)
	}
	if err != nil {
		return Explain(err, "update", "Secret "+s.ref())
	}
	s.mu.Lock()
	s.last = updated
	s.mu.Unlock()
	return nil
}

// Delete deletes the Secret with UID and resourceVersion preconditions.
func (s *SecretStore) Delete(ctx context.Context, sec *pki.Secret) error {
	uid := types.UID(sec.UID)
	err := s.Client.delete(ctx, s.Namespace, "secrets", s.Name, &metav1.Preconditions{UID: &uid, ResourceVersion: &sec.ResourceVersion})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return fmt.Errorf("secret %s: %w", s.ref(), pki.ErrSecretChanged)
	case err != nil:
		return Explain(err, "delete", "Secret "+s.ref())
	}
	return nil
}

// ServerTime is the API server's clock.
func (s *SecretStore) ServerTime() time.Time { return s.Client.ServerTime() }

func toPKI(s *secret) *pki.Secret {
	return &pki.Secret{Namespace: s.Metadata.Namespace, Name: s.Metadata.Name, UID: s.Metadata.UID,
		ResourceVersion: s.Metadata.ResourceVersion, Annotations: s.Metadata.Annotations, Data: s.Data}
}
