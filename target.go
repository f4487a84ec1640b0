package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
)

// target resolves namespace, release and Secret, building the API client on the way.
type target struct {
	client    *kube.Client
	namespace string
	release   string
	secret    string
	pod       string
}

var statefulSetPod = regexp.MustCompile(`^(.+)-([0-9]+)$`)

func resolve(ctx context.Context, cfg *InPod) (*target, error) {
	rc, err := kube.Config(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	c, err := kube.NewClient(rc)
	if err != nil {
		return nil, err
	}
	t := &target{client: c, namespace: cfg.Namespace, release: cfg.VclusterName, pod: cfg.PodName}
	if t.namespace == "" {
		if t.namespace, err = podNamespace("--namespace"); err != nil {
			return nil, err
		}
	}
	if t.pod == "" {
		t.pod, _ = os.Hostname()
	}
	if t.release == "" && cfg.SecretName == "" {
		if m := statefulSetPod.FindStringSubmatch(t.pod); m != nil {
			t.release = m[1]
		} else if t.pod != "" {
			// A Deployment's pod name has hashes, not an ordinal: ask the pod's labels.
			if r, err := kube.PodRelease(ctx, c, t.namespace, t.pod); err == nil {
				t.release = r
			}
		}
		if t.release == "" {
			return nil, usageError{fmt.Sprintf("cannot tell the vcluster release from pod %q: set --vcluster-name=<release> (in vcluster.yaml: the plugin's args)", t.pod)}
		}
	}
	t.secret = cfg.SecretName
	if t.secret == "" {
		t.secret = t.release + "-certs"
	}
	return t, nil
}

// saNamespaceFile is where a pod finds its namespace.
var saNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// podNamespace is this pod's namespace, from its service account; flag names the flag that
// sets it instead.
func podNamespace(flag string) (string, error) {
	b, err := os.ReadFile(saNamespaceFile)
	if err != nil {
		return "", usageError{"cannot tell the namespace (no " + saNamespaceFile + "): set " + flag}
	}
	return strings.TrimSpace(string(b)), nil
}

// k0sSource returns how repair, check and watch learn which k0s starts on the PKI: the answer
// decides whether the Secret's copies of k0s's leaves are the next start's input (k0s < v1.35.1)
// or stale copies nothing reads (k0s ≥ v1.35.1 re-signs them at every start). In order:
// --k0s-version (CERTGUARD_K0S_VERSION, parsed by InPod.validate); else the k0s image in this pod's spec, one GET asked
// only when the answer matters (pki.Report.K0sMatters) and remembered; else unknown, which
// judges as certguard always did. t is nil when there is no cluster (check --no-secret).
func k0sSource(fixed *pki.K0s, t *target, log *slog.Logger) func(context.Context) pki.K0s {
	if fixed != nil {
		k := *fixed
		return func(context.Context) pki.K0s { return k }
	}
	if t == nil || t.pod == "" {
		return func(context.Context) pki.K0s { return pki.K0s{} }
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
	}
}

// ref names the vcluster's certificate Secret in plans and findings.
func (t *target) ref() pki.SecretRef { return pki.SecretRef{Namespace: t.namespace, Name: t.secret} }

// secretStore is the vcluster's certificate Secret, retried for up to retry while the API
// server is unreachable.
func (t *target) secretStore(retry duration) *kube.SecretStore {
	return &kube.SecretStore{Client: t.client, Namespace: t.namespace, Name: t.secret, Retry: time.Duration(retry)}
}

// events records Events on this pod.
func (t *target) events(log *slog.Logger) *kube.Events {
	return &kube.Events{Client: t.client, Namespace: t.namespace, Pod: t.pod, Log: log}
}
