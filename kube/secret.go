package kube

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/certguard/certguard/pki"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
// records the repair on the Secret, for `certguard fleet` and the sidecar. With dryRun the server
// checks the write (RBAC, admission, an immutable Secret, the precondition) and stores nothing.
func (s *SecretStore) RemoveKeys(ctx context.Context, sec *pki.Secret, keys []string, dryRun bool) error {
	return s.update(ctx, sec, dryRun, func(obj *secret) (*unstructured.Unstructured, error) {
		return obj.edited(keys, map[string]string{pki.LastRepairAnnotation: pki.RepairRecord{At: time.Now(), Decision: pki.DecideLeaves}.Format()})
	})
}

// update writes edit's copy of the Secret last read, on condition that it is still the one the
// plan judged (sec: its UID and resourceVersion), in one Update carrying that resourceVersion: a
// concurrent writer makes it fail with pki.ErrSecretChanged instead of being overwritten. With
// dryRun the server checks the write and stores nothing.
func (s *SecretStore) update(ctx context.Context, sec *pki.Secret, dryRun bool, edit func(*secret) (*unstructured.Unstructured, error)) error {
	s.mu.Lock()
	obj := s.last
	s.mu.Unlock()
	if obj == nil || obj.UID != sec.UID || obj.ResourceVersion != sec.ResourceVersion {
		return fmt.Errorf("secret %s: %w", s.ref(), pki.ErrSecretChanged)
	}
	body, err := edit(obj)
	if err != nil {
		return err
	}
	updated, err := s.Client.updateSecret(ctx, s.Namespace, s.Name, body, dryRun)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return fmt.Errorf("secret %s: %w", s.ref(), pki.ErrSecretChanged)
	}
	if err != nil {
		return Explain(err, "update", "Secret "+s.ref())
	}
	if !dryRun {
		s.mu.Lock()
		s.last = updated
		s.mu.Unlock()
	}
	return nil
}

// Delete deletes the Secret with UID and resourceVersion preconditions and returns once it is
// gone: a finalizer keeps a deleted Secret readable, and vcluster would write the old PKI from it
// back to the volume. It waits at most Retry (at least 10 s), then fails naming the finalizers.
// With dryRun the server checks the delete and nothing is deleted.
func (s *SecretStore) Delete(ctx context.Context, sec *pki.Secret, dryRun bool) error {
	uid := types.UID(sec.UID)
	err := s.Client.delete(ctx, s.Namespace, secretsGVR, s.Name, &metav1.Preconditions{UID: &uid, ResourceVersion: &sec.ResourceVersion}, dryRun)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return fmt.Errorf("secret %s: %w", s.ref(), pki.ErrSecretChanged)
	case err != nil:
		return Explain(err, "delete", "Secret "+s.ref())
	case dryRun:
		return nil
	}
	return s.waitGone(ctx, sec.UID)
}

// waitGone polls until the Secret with uid no longer exists (a new one of the same name is not
// it: vcluster may already have created the next PKI's Secret).
func (s *SecretStore) waitGone(ctx context.Context, uid string) error {
	deadline := time.Now().Add(max(s.Retry, 10*time.Second))
	wait := 100 * time.Millisecond
	for {
		obj, err := s.Client.getSecret(ctx, s.Namespace, s.Name)
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil && !retriable(err):
			return Explain(err, "get", "Secret "+s.ref())
		case err == nil && obj.UID != uid:
			return nil
		}
		if !time.Now().Before(deadline) {
			var fin []string
			if obj != nil {
				fin = obj.Finalizers
			}
			return fmt.Errorf("secret %s: %w: deleted but still there after %s, held by finalizers %q: remove them "+
				"(kubectl patch secret -n %s %s --type=merge -p '{\"metadata\":{\"finalizers\":null}}') or fix the controller "+
				"that owns them; the pki dir was not moved, and the next start finishes the reset",
				s.ref(), pki.ErrSecretNotGone, max(s.Retry, 10*time.Second), fin, s.Namespace, s.Name)
		}
		select {
		case <-ctx.Done():
			return Explain(ctx.Err(), "delete", "Secret "+s.ref())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// ServerTime is the API server's clock.
func (s *SecretStore) ServerTime() time.Time { return s.Client.ServerTime() }

// toPKI is the domain's Secret, a copy: what a caller does with it leaves the one kept for
// writing back as it was.
func toPKI(s *secret) *pki.Secret {
	p := s.Secret
	return &p
}
