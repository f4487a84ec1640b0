package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
)

// k0sSource returns how repair, check and watch learn which k0s starts on the PKI: the answer
// decides whether the Secret's copies of k0s's leaves are the next start's input (k0s < v1.35.1)
// or stale copies nothing reads (k0s ≥ v1.35.1 re-signs them at every start). In order:
// --k0s-version (CERTGUARD_K0S_VERSION); else the k0s image in this pod's spec, one GET asked
// only when the answer matters (pki.Report.K0sMatters) and remembered; else unknown, which
// judges as certguard always did. t is nil when there is no cluster (check --no-secret).
func k0sSource(cfg config, t *target, log *slog.Logger) (func(context.Context) pki.K0s, error) {
	if cfg.K0sVersion != "" {
		k, err := pki.ParseK0sVersion(cfg.K0sVersion)
		if err != nil {
			return nil, usageError{"--k0s-version: " + err.Error()}
		}
		k.From = pki.K0sFromFlag
		return func(context.Context) pki.K0s { return k }, nil
	}
	if t == nil || t.pod == "" {
		return func(context.Context) pki.K0s { return pki.K0s{} }, nil
	}
	var (
		mu    sync.Mutex
		known *pki.K0s
	)
	return func(ctx context.Context) pki.K0s {
		mu.Lock()
		defer mu.Unlock()
		if known != nil {
			return *known
		}
		k, ok, err := kube.PodK0s(ctx, t.client, t.namespace, t.pod)
		switch {
		case err != nil:
			log.Warn("k0s version unknown: the Secret is judged as the next start's input; set --k0s-version to tell it",
				"pod", t.namespace+"/"+t.pod, "err", err)
			if !kube.IsForbidden(err) && !kube.IsNotFound(err) {
				return k // a passing failure: asked again when it matters
			}
		case !ok:
			log.Info("no k0s image with a version in this pod's spec: the Secret is judged as the next start's input; set --k0s-version to tell it",
				"pod", t.namespace+"/"+t.pod)
		default:
			log.Info("k0s version read from this pod's spec", "k0s_version", k.Version, "renews_leaves", k.RenewsLeaves)
		}
		known = &k
		return k
	}, nil
}
