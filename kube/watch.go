package kube

import (
	"context"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
)

// Backoff between failed LIST+WATCH rounds. It grows while rounds keep failing and starts over
// once a round has run healthy for resetAfter, as client-go's reflector does: an API server
// restart a month after the last one is not met with the last one's backoff.
const (
	minBackoff = time.Second
	maxBackoff = time.Minute
	resetAfter = time.Minute
)

// Watch calls fn with the Secret (nil while it does not exist) once at start and after every
// change, until ctx ends. It is a single-object LIST+WATCH (field selector on the name), so it
// sees a deleted and recreated Secret. client-go's RetryWatcher keeps the watch going from the
// last version seen; when it cannot (410 Gone: the version is compacted away; 403), Watch lists
// again, with backoff, and reports errors through onErr.
func (s *SecretStore) Watch(ctx context.Context, fn func(*pki.Secret), onErr func(error)) {
	sel := fields.OneTermEqualSelector("metadata.name", s.Name).String()
	wait := minBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := s.listAndWatch(ctx, sel, fn)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) >= resetAfter {
			wait = minBackoff
		}
		if err == nil {
			continue // the watch expired: list again at once
		}
		onErr(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxBackoff)
	}
}

// listAndWatch lists the Secret, then follows it until the watch ends. A nil error means list
// again now (410 Gone, or the watcher stopped).
func (s *SecretStore) listAndWatch(ctx context.Context, sel string, fn func(*pki.Secret)) error {
	list, err := s.Client.listSecretsJSON(ctx, s.Namespace, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return Explain(err, "list", "Secret "+s.ref())
	}
	if len(list.Items) == 0 {
		fn(nil)
	} else {
		fn(toPKI(list.Items[0].secret()))
	}
	// RetryWatcher logs through klog, which would print its own lines beside certguard's slog
	// output; every error it hands back reaches onErr, so its log is discarded.
	ctx = klog.NewContext(ctx, logr.Discard())
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, list.Metadata.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = sel
			return s.Client.watchSecrets(ctx, s.Namespace, opts)
		},
	})
	if err != nil {
		return Explain(err, "watch", "Secret "+s.ref())
	}
	defer rw.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-rw.ResultChan():
			if !ok {
				return nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				sec, err := secretFrom(u)
				if err != nil {
					return err
				}
				fn(toPKI(sec))
			case watch.Deleted:
				fn(nil)
			case watch.Error:
				err := apierrors.FromObject(ev.Object)
				if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
					return nil
				}
				return Explain(err, "watch", "Secret "+s.ref())
			}
		}
	}
}

// Annotate sets annotations on the Secret with one Update that carries the resourceVersion just
// read; a conflict is retried once with a fresh read.
func (s *SecretStore) Annotate(ctx context.Context, annotations map[string]string) error {
	for attempt := 0; ; attempt++ {
		obj, err := s.Client.getSecret(ctx, s.Namespace, s.Name)
		if err != nil {
			return Explain(err, "get", "Secret "+s.ref())
		}
		body, err := obj.edited(nil, annotations)
		if err != nil {
			return err
		}
		_, err = s.Client.updateSecret(ctx, s.Namespace, s.Name, body, false)
		if apierrors.IsConflict(err) && attempt == 0 {
			continue
		}
		if err != nil {
			return Explain(err, "update", "Secret "+s.ref())
		}
		return nil
	}
}

// DeletePod deletes a pod, on condition that it is still the one with this UID ("" = any).
func DeletePod(ctx context.Context, c *Client, namespace, name, uid string) error {
	var pre *metav1.Preconditions
	if uid != "" {
		u := types.UID(uid)
		pre = &metav1.Preconditions{UID: &u}
	}
	if err := c.delete(ctx, namespace, podsGVR, name, pre, false); err != nil {
		return Explain(err, "delete", "Pod "+namespace+"/"+name)
	}
	return nil
}
