package kube

import (
	"context"
	"fmt"
	"time"

	"github.com/certguard/certguard/pki"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// Watch calls fn with the Secret (nil while it does not exist) once at start and after every
// change, until ctx ends. It is a single-object LIST+WATCH (field selector on the name), so it
// sees a deleted and recreated Secret; after an error it lists again, with backoff, and reports
// the error through onErr.
func (s *SecretStore) Watch(ctx context.Context, fn func(*pki.Secret), onErr func(error)) {
	sel := fields.OneTermEqualSelector("metadata.name", s.Name).String()
	wait := time.Second
	for ctx.Err() == nil {
		rv, err := s.listOnce(ctx, sel, fn)
		if err == nil {
			err = s.watchFrom(ctx, sel, rv, fn)
			if err == nil {
				wait = time.Second
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		onErr(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

func (s *SecretStore) listOnce(ctx context.Context, sel string, fn func(*pki.Secret)) (string, error) {
	var list corev1.SecretList
	err := s.Client.rc.Get().Namespace(s.Namespace).Resource("secrets").
		VersionedParams(&metav1.ListOptions{FieldSelector: sel}, s.Client.params).Do(ctx).Into(&list)
	if err != nil {
		return "", Explain(err, "list", "Secret "+s.ref())
	}
	if len(list.Items) == 0 {
		fn(nil)
	} else {
		fn(toPKI(&list.Items[0]))
	}
	return list.ResourceVersion, nil
}

// watchFrom follows changes until the server ends the watch (nil: watch again from the last
// version) or an error says to list again.
func (s *SecretStore) watchFrom(ctx context.Context, sel, rv string, fn func(*pki.Secret)) error {
	for {
		w, err := s.Client.rc.Get().Namespace(s.Namespace).Resource("secrets").
			VersionedParams(&metav1.ListOptions{Watch: true, FieldSelector: sel, ResourceVersion: rv, AllowWatchBookmarks: true}, s.Client.params).
			Watch(ctx)
		if err != nil {
			return Explain(err, "watch", "Secret "+s.ref())
		}
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Added, watch.Modified:
				if sec, ok := ev.Object.(*corev1.Secret); ok {
					rv = sec.ResourceVersion
					fn(toPKI(sec))
				}
			case watch.Deleted:
				if sec, ok := ev.Object.(*corev1.Secret); ok {
					rv = sec.ResourceVersion
				}
				fn(nil)
			case watch.Bookmark:
				if sec, ok := ev.Object.(*corev1.Secret); ok {
					rv = sec.ResourceVersion
				}
			case watch.Error:
				w.Stop()
				return fmt.Errorf("watch Secret %s: %v", s.ref(), apierrors.FromObject(ev.Object))
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// Annotate sets one annotation on the Secret with an Update that carries the resourceVersion
// just read; a conflict is retried once with a fresh read.
func (s *SecretStore) Annotate(ctx context.Context, key, value string) error {
	for attempt := 0; ; attempt++ {
		obj, err := s.Client.getSecret(ctx, s.Namespace, s.Name)
		if err != nil {
			return Explain(err, "get", "Secret "+s.ref())
		}
		if obj.Annotations == nil {
			obj.Annotations = map[string]string{}
		}
		obj.Annotations[key] = value
		_, err = s.Client.updateSecret(ctx, obj)
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
	opts := &metav1.DeleteOptions{}
	if uid != "" {
		u := types.UID(uid)
		opts.Preconditions = &metav1.Preconditions{UID: &u}
	}
	err := c.rc.Delete().Namespace(namespace).Resource("pods").Name(name).Body(opts).Do(ctx).Error()
	if err != nil {
		return Explain(err, "delete", "Pod "+namespace+"/"+name)
	}
	return nil
}
