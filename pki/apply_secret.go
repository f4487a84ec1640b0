package pki

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"time"
)

// SecretAPI is what the executor needs of the Kubernetes API; package kube implements it.
type SecretAPI interface {
	// Get returns the Secret, or nil and no error when it does not exist.
	Get(ctx context.Context) (*Secret, error)
	// RemoveKeys removes keys in one write, on condition that s is still the Secret's current
	// version; otherwise it returns an error wrapping ErrSecretChanged. With dryRun the server
	// checks the write (RBAC, admission, immutability) and stores nothing.
	RemoveKeys(ctx context.Context, s *Secret, keys []string, dryRun bool) error
	// Delete deletes the Secret on the same condition and returns once it is gone (an error
	// wrapping ErrSecretNotGone when finalizers keep it). An already deleted Secret is no
	// error. With dryRun the server checks the delete and nothing is deleted.
	Delete(ctx context.Context, s *Secret, dryRun bool) error
	// SetKeys sets keys to the given values in one write, on the same condition as RemoveKeys.
	// With dryRun the server checks the write and stores nothing.
	SetKeys(ctx context.Context, s *Secret, set map[string][]byte, dryRun bool) error
	// ServerTime is the API server's clock at its last answer (zero when unknown).
	ServerTime() time.Time
}

// ErrSecretChanged means the Secret changed since it was read: read again, plan again.
var ErrSecretChanged = errors.New("the Secret changed since it was read")

// ErrSecretNotGone means a deleted Secret is still there (finalizers): vcluster would write the
// old PKI from it back to the volume, so a full reset does not go on.
var ErrSecretNotGone = errors.New("the Secret is not gone")

// dryRun asks the API server to check the Secret step before the first write to the volume: a
// 403, an immutable Secret or an admission webhook's refusal then ends the run with nothing
// written anywhere.
func (x *Executor) dryRun(ctx context.Context, p Plan, s *Secret) error {
	if s == nil {
		return nil
	}
	for _, st := range p.Steps {
		var err error
		switch st.Action {
		case ActionRemoveSecretKeys:
			err = x.Secrets.RemoveKeys(ctx, s, st.Keys, true)
		case ActionDeleteSecret:
			err = x.Secrets.Delete(ctx, s, true)
		default:
			continue
		}
		if errors.Is(err, ErrSecretChanged) {
			return err
		}
		if err != nil {
			return fmt.Errorf("the API server refuses the Secret change (checked as a dry run): %w; nothing was changed", err)
		}
	}
	return nil
}

// removeSecretKeys removes the step's keys that the Secret still holds, only while each holds
// what the backup recorded.
func (x *Executor) removeSecretKeys(ctx context.Context, st Step, s, saved *Secret, allow bool, notCalledFor error) (bool, error) {
	if s == nil {
		return false, nil
	}
	var rm []string
	for _, k := range st.Keys {
		cur, ok := s.Data[k]
		if !ok {
			continue
		}
		if saved == nil || !bytes.Equal(cur, saved.Data[k]) {
			return false, fmt.Errorf("%w: Secret key %s differs from the backup", errSuperseded, k)
		}
		rm = append(rm, k)
	}
	if len(rm) == 0 {
		return false, nil
	}
	if !allow {
		return false, notCalledFor
	}
	if err := x.Secrets.RemoveKeys(ctx, s, rm, false); err != nil {
		return false, fmt.Errorf("remove %d keys from Secret %s: %w", len(rm), x.Secret.Ref(), err)
	}
	return true, nil
}

// deleteSecret deletes the Secret, only while it holds exactly what the backup recorded.
func (x *Executor) deleteSecret(ctx context.Context, s, saved *Secret, allow bool, notCalledFor error) (bool, error) {
	if s == nil {
		return false, nil
	}
	if saved == nil || !maps.EqualFunc(s.Data, saved.Data, bytes.Equal) {
		return false, fmt.Errorf("%w: Secret %s differs from the backup", errSuperseded, x.Secret.Ref())
	}
	if !allow {
		return false, notCalledFor
	}
	if err := x.Secrets.Delete(ctx, s, false); err != nil {
		return false, fmt.Errorf("delete Secret %s: %w", x.Secret.Ref(), err)
	}
	return true, nil
}
