package kube

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/certguard/certguard/pki"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// SetKeys sets keys to new values in one Update carrying the resourceVersion that was read, so a
// concurrent writer makes it fail with a Conflict (pki.ErrSecretChanged) instead of being
// overwritten. Every other field stays as the server sent it; no annotation is written (this is
// no repair: certguard sets the kubeconfigs' server for vcluster's syncer). With dryRun the server
// checks the write and stores nothing.
func (s *SecretStore) SetKeys(ctx context.Context, sec *pki.Secret, set map[string][]byte, dryRun bool) error {
	return s.update(ctx, sec, dryRun, func(obj *secret) (*unstructured.Unstructured, error) {
		body, err := obj.edited(nil, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range set {
			if err := unstructured.SetNestedField(body.Object, base64.StdEncoding.EncodeToString(v), "data", k); err != nil {
				return nil, fmt.Errorf("secret %s: set key %s: %w", s.ref(), k, err)
			}
		}
		return body, nil
	})
}
