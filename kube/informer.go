package kube

import (
	"context"
	"fmt"
	"regexp"

	"github.com/certguard/certguard/pki"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// CertSecretHandler receives the vcluster certificate Secrets an informer sees: key is
// "<namespace>/<name>", s is nil when the Secret was deleted or is no longer a certificate
// Secret.
type CertSecretHandler func(key string, s *pki.Secret)

// CertSecretInformer follows every vcluster certificate Secret in namespace ("" = all) with
// client-go's shared informer over the dynamic client: one LIST, then one WATCH, of Secrets with
// the field selector type=Opaque (vcluster's type), resumed from the last version seen.
//
// v0.19 Secrets carry no labels, so a label selector would miss them; the informer sees every
// Opaque Secret once and pki.IsCertSecret picks vcluster's by name (-certs) and keys (ca.crt and
// apiserver.crt) or the v0.24+ label. The informer's transform empties the data of every other
// Secret before it enters the cache, so the cache holds metadata for those and whole objects only
// for certificate Secrets: a host cluster with thousands of unrelated Secrets costs their
// metadata, not their contents.
//
// fn runs on the informer's goroutine, once per change. onErr gets every failed LIST or WATCH,
// already explained (Explain); the informer retries with backoff after each. Run the returned
// informer with RunInformer. synced reports that fn has been handed every Secret of the first
// LIST: the informer's own HasSynced is true once they are in its cache, before fn has seen them
// all (handlers are notified asynchronously; measured: ready with 3 of 1,000 handed over).
func CertSecretInformer(c *Client, namespace string, fn CertSecretHandler, onErr func(error)) (inf cache.SharedIndexInformer, synced func() bool, err error) {
	// tools/cache's informer on hand-made list and watch functions, not dynamicinformer: that
	// package imports client-go/informers, hence the typed clientset and every API group
	// (measured: the binary went from 15.5 to 31.0 MB).
	const opaque = "type=Opaque"
	inf = cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = opaque
			// The reflector asks for resourceVersion "0", which the apiserver serves from its
			// watch cache in one answer whatever the limit: every Opaque Secret of the cluster
			// at once. "" (the latest) honours the limit, so the list comes a page at a time.
			if o.ResourceVersion == "0" {
				o.ResourceVersion = ""
			}
			o.Limit = listPage
			list, err := c.listSecrets(ctx, namespace, o)
			if err != nil {
				return nil, err
			}
			// The reflector gathers every page before the transform sees any item: strip each
			// page as it arrives, so unrelated Secrets' data never piles up.
			for i := range list.Items {
				if _, err := stripUnlessCert(&list.Items[i]); err != nil {
					return nil, err
				}
			}
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = opaque
			return c.watchSecrets(ctx, namespace, o)
		},
	}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	if err := inf.SetTransform(stripUnlessCert); err != nil {
		return nil, nil, err
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if verb := forbiddenVerb(err); verb != "" {
			// Not Explain's advice: that points at the vcluster's namespaced Role, and what is
			// missing here is a cluster-wide grant.
			onErr(fmt.Errorf("%s Secrets: forbidden: grant RBAC %q on secrets to this identity (cluster-wide: the chart's fleet ClusterRole has list and watch); the server said: %w",
				verb, verb, err))
			return
		}
		onErr(Explain(err, "list/watch", "Secrets"))
	}); err != nil {
		return nil, nil, err
	}
	handle := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		key := u.GetNamespace() + "/" + u.GetName()
		if !isCertSecret(u) {
			fn(key, nil)
			return
		}
		s, err := decodeSecret(u)
		if err != nil {
			onErr(err)
			fn(key, nil)
			return
		}
		fn(key, toPKI(s))
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				fn(d.Key, nil)
				return
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				fn(u.GetNamespace()+"/"+u.GetName(), nil)
			}
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return inf, reg.HasSynced, nil
}

// RunInformer runs inf until ctx ends, with client-go's own logging discarded: every error it
// meets reaches the watch error handler, and certguard logs through slog alone.
func RunInformer(ctx context.Context, inf cache.SharedIndexInformer) {
	inf.RunWithContext(klog.NewContext(ctx, logr.Discard()))
}

func isCertSecret(u *unstructured.Unstructured) bool {
	data, _, _ := unstructured.NestedMap(u.Object, "data")
	return pki.IsCertSecret(u.GetName(), u.GetLabels(), func(k string) bool { _, ok := data[k]; return ok })
}

// stripUnlessCert keeps a certificate Secret whole and empties every other Secret's data; it
// also drops managedFields, which no reader here needs.
func stripUnlessCert(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown: its key is all a handler reads
	}
	u.SetManagedFields(nil)
	if !isCertSecret(u) {
		unstructured.RemoveNestedField(u.Object, "data")
		unstructured.RemoveNestedField(u.Object, "stringData")
	}
	return u, nil
}

// listPage is the informer's LIST page size: a page of vcluster Secrets (39 keys, ~80 KiB of
// JSON each) is a few MiB.
const listPage = 100

var cannotVerb = regexp.MustCompile(`cannot (\w+) resource`)

// forbiddenVerb is the verb RBAC refused, from the server's message ("User "x" cannot watch
// resource "secrets" …"), or "" for any other error.
func forbiddenVerb(err error) string {
	if !apierrors.IsForbidden(err) {
		return ""
	}
	if m := cannotVerb.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return ""
}

// IsForbidden reports an RBAC refusal, for callers that stop rather than retry on one.
func IsForbidden(err error) bool { return apierrors.IsForbidden(err) }
