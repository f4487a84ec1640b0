package kube

import (
	"context"
	"fmt"
	"regexp"
	goruntime "runtime"
	"slices"
	"sync"

	"github.com/certguard/certguard/pki"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// CertSecretInformer follows every Secret of type Opaque (vcluster's) in namespace ("" = all)
// with client-go's shared informer over the dynamic client: one LIST, then one WATCH, with the
// field selector type=Opaque, resumed from the last version seen. parse picks the Secrets the
// caller follows (vcluster certificate Secrets, kubeconfig Secrets) and reduces each to what it
// keeps; it returns nil for any other Secret.
//
// v0.19 Secrets carry no labels, so a label selector would miss them; the informer sees every
// Opaque Secret once, and parse picks vcluster's by name and keys (pki.IsCertSecret).
//
// No Secret is kept whole. Each is reduced as it arrives (each LIST page, each WATCH event) to a
// cachedSecret: its name, namespace, UID and resourceVersion, plus what parse made of it. So the
// informer's cache holds metadata and parse's results, never a Secret's bytes (measured at
// 10,000 vcluster Secrets: the whole objects were 4 GiB).
//
// fn runs on the informer's goroutine, once per change, with parse's result (nil: deleted, or
// not followed, or no longer). parse runs on the LIST and WATCH goroutines and must be pure and
// safe to call concurrently. onErr gets every failed LIST or WATCH, already explained (Explain),
// and every Secret whose data could not be decoded; the informer retries with backoff after a
// failed LIST or WATCH. Run the returned informer with RunInformer. synced reports that fn has
// been handed every Secret of the first LIST: the informer's own HasSynced is true once they are
// in its cache, before fn has seen them all (handlers are notified asynchronously; measured:
// ready with 3 of 1,000 handed over).
func CertSecretInformer[T any](c *Client, namespace string, parse func(*pki.Secret) *T, fn func(key string, v *T), onErr func(error)) (inf cache.SharedIndexInformer, synced func() bool, err error) {
	return secretInformer(c, namespace, "type=Opaque", parse, fn, onErr, explainWatchError("Secrets", "secrets", onErr))
}

// secretInformer is CertSecretInformer's informer on the Secrets that fieldSelector picks; the
// sidecar's Watch runs it on one Secret. onWatchErr explains a failed LIST or WATCH.
func secretInformer[T any](c *Client, namespace, fieldSelector string, parse func(*pki.Secret) *T, fn func(key string, v *T), onErr func(error),
	onWatchErr cache.WatchErrorHandlerWithContext) (inf cache.SharedIndexInformer, synced func() bool, err error) {
	// tools/cache's informer on hand-made list and watch functions, not dynamicinformer: that
	// package imports client-go/informers, hence the typed clientset and every API group
	// (measured: the binary went from 15.5 to 31.0 MB).
	reduce := func(s *secret) runtime.Object {
		return reducedSecret(s, parse(toPKI(s)))
	}
	next := &prefetch{}
	inf = cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fieldSelector
			// The reflector asks for resourceVersion "0", which the apiserver serves from its
			// watch cache in one answer whatever the limit: every Opaque Secret of the cluster
			// at once. "" (the latest) honours the limit, so the list comes a page at a time.
			if o.ResourceVersion == "0" {
				o.ResourceVersion = ""
			}
			o.Limit = listPage
			list, err := next.take(ctx, o, func(o metav1.ListOptions) (*secretListJSON, error) { return c.listSecretsJSON(ctx, namespace, o) })
			if err != nil {
				return nil, err
			}
			// The reflector gathers every page before the transform sees any item: reduce each
			// page as it arrives, so that no Secret's data piles up.
			return list.reduced(reduce), nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fieldSelector
			return c.watchSecrets(ctx, namespace, o)
		},
	}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	if err := inf.SetTransform(func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok { // a WATCH event
			s, err := secretFrom(u)
			if err != nil {
				cs := &cachedSecret{err: err}
				cs.Name, cs.Namespace, cs.UID, cs.ResourceVersion = u.GetName(), u.GetNamespace(), u.GetUID(), u.GetResourceVersion()
				return cs, nil
			}
			return reduce(s), nil
		}
		return obj, nil // a LIST item, already reduced; or a DeletedFinalStateUnknown
	}); err != nil {
		return nil, nil, err
	}
	if err := inf.SetWatchErrorHandlerWithContext(onWatchErr); err != nil {
		return nil, nil, err
	}
	handle := func(obj any) {
		cs, ok := obj.(*cachedSecret)
		if !ok {
			return
		}
		key := cs.Namespace + "/" + cs.Name
		if cs.err != nil {
			onErr(cs.err)
		}
		v, _ := cs.parsed.(*T)
		fn(key, v)
	}
	reg, err := inf.AddEventHandler(handlers(handle, func(key string) { fn(key, nil) }))
	if err != nil {
		return nil, nil, err
	}
	return inf, reg.HasSynced, nil
}

// prefetch asks for the next LIST page as soon as the current one is decoded, so that the
// apiserver serves page k+1 while certguard parses page k (the reflector asks for pages one
// after the other: measured at 10,000 Secrets, ready at 2.3× the apiserver's own LIST time).
type prefetch struct {
	mu   sync.Mutex
	cont string // the continue token of the page being fetched ahead; "" for none
	page chan pageResult
}

type pageResult struct {
	list *secretListJSON
	err  error
}

// take returns the page o asks for: the one fetched ahead when it is that page, else fetched
// now; then it starts fetching the page after it.
func (p *prefetch) take(ctx context.Context, o metav1.ListOptions, fetch func(metav1.ListOptions) (*secretListJSON, error)) (*secretListJSON, error) {
	p.mu.Lock()
	ahead := p.page
	if o.Continue == "" || o.Continue != p.cont {
		ahead = nil // a first page, or a listing started over (410 Expired): what was ahead is stale
	}
	p.cont, p.page = "", nil
	p.mu.Unlock()
	var r pageResult
	if ahead != nil {
		select {
		case r = <-ahead:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	} else {
		r.list, r.err = fetch(o)
	}
	if r.err != nil || r.list.Metadata.Continue == "" {
		return r.list, r.err
	}
	o.Continue = r.list.Metadata.Continue
	ch := make(chan pageResult, 1)
	p.mu.Lock()
	p.cont, p.page = o.Continue, ch
	p.mu.Unlock()
	go func() {
		var n pageResult
		n.list, n.err = fetch(o)
		ch <- n
	}()
	return r.list, nil
}

// cachedSecret is a Secret as the informer's cache keeps it: the metadata the cache keys and
// versions it by, and what the caller made of it (a nil *T for a Secret parse does not follow,
// nil when its data could not be decoded: err). It is never modified once made. It is a shape of
// its own, not secret, because the cache must hold no Secret's bytes (measured at 10,000 vcluster
// Secrets: the whole objects were 4 GiB), and client-go's cache and pager take runtime.Objects.
type cachedSecret struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	parsed any
	err    error
}

func reducedSecret(s *secret, parsed any) *cachedSecret {
	cs := &cachedSecret{parsed: parsed}
	cs.Name, cs.Namespace, cs.UID, cs.ResourceVersion = s.Name, s.Namespace, types.UID(s.UID), s.ResourceVersion
	return cs
}

func (c *cachedSecret) DeepCopyObject() runtime.Object {
	out := *c
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}

// cachedList is one reduced LIST page.
type cachedList struct {
	metav1.TypeMeta
	metav1.ListMeta
	Items []runtime.Object
}

func (l *cachedList) DeepCopyObject() runtime.Object {
	out := *l
	out.Items = slices.Clone(l.Items)
	return &out
}

// reduced is the page as client-go's reflector and pager take it, each Secret reduced as it is
// reached and its bytes let go. Reducing is spread over the cores: at 10,000 Secrets, parsing
// them is most of the informer's CPU.
func (l *secretListJSON) reduced(reduce func(*secret) runtime.Object) *cachedList {
	out := &cachedList{ListMeta: metav1.ListMeta{ResourceVersion: l.Metadata.ResourceVersion, Continue: l.Metadata.Continue,
		RemainingItemCount: l.Metadata.RemainingItemCount}, Items: make([]runtime.Object, len(l.Items))}
	var wg sync.WaitGroup
	workers := goruntime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(l.Items); i += workers {
				out.Items[i] = reduce(l.Items[i].secret())
				l.Items[i] = secretJSON{} // its bytes can go now
			}
		})
	}
	wg.Wait()
	return out
}

// RunInformer runs inf until ctx ends, with client-go's own logging discarded: every error it
// meets reaches the watch error handler, and certguard logs through slog alone.
func RunInformer(ctx context.Context, inf cache.SharedIndexInformer) {
	inf.RunWithContext(klog.NewContext(ctx, logr.Discard()))
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

// explainWatchError turns a failed LIST or WATCH of resource into one error for onErr. RBAC's
// refusal names the verb and the cluster-wide grant (not Explain's advice, which points at the
// vcluster's namespaced Role).
func explainWatchError(resource, grant string, onErr func(error)) cache.WatchErrorHandlerWithContext {
	return func(_ context.Context, _ *cache.Reflector, err error) {
		if verb := forbiddenVerb(err); verb != "" {
			onErr(fmt.Errorf("%s %s: forbidden: grant RBAC %q on %s to this identity (cluster-wide: the chart's fleet ClusterRole has list and watch); the server said: %w",
				verb, resource, verb, grant, err))
			return
		}
		onErr(Explain(err, "list/watch", resource))
	}
}

// handlers calls handle on every add and update, and gone with the "<namespace>/<name>" key of
// every delete (a DeletedFinalStateUnknown included).
func handlers(handle func(obj any), gone func(key string)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				gone(key)
			}
		},
	}
}
