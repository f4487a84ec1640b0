package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/certguard/certguard/pki"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
)

// Watch calls fn with the Secret (nil while it does not exist) once at start and after every
// change, until ctx ends. It is a single-object LIST+WATCH (field selector on the name), so it
// sees a deleted and recreated Secret; after an error it lists again, with backoff, and reports
// the error through onErr.
func (s *SecretStore) Watch(ctx context.Context, fn func(*pki.Secret), onErr func(error)) {
	sel := fields.OneTermEqualSelector("metadata.name", s.Name).String()
	wait := time.Second
	for ctx.Err() == nil {
		list, err := s.Client.listSecrets(ctx, s.Namespace, sel, 0, "")
		if err == nil {
			if len(list.Items) == 0 {
				fn(nil)
			} else {
				fn(toPKI(&list.Items[0]))
			}
			err = s.watchFrom(ctx, sel, list.Metadata.ResourceVersion, fn)
			if err == nil {
				continue
			}
		} else {
			err = Explain(err, "list", "Secret "+s.ref())
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

// errRelist ends a watch whose resourceVersion is too old (410 Gone): list again.
var errRelist = errors.New("watch expired")

// watchFrom follows changes, watching again from the last version seen each time the server
// ends a stream, until an error says to list again.
func (s *SecretStore) watchFrom(ctx context.Context, sel, rv string, fn func(*pki.Secret)) error {
	for ctx.Err() == nil {
		stream, err := s.Client.watchSecrets(ctx, s.Namespace, sel, rv)
		if err != nil {
			return Explain(err, "watch", "Secret "+s.ref())
		}
		rv, err = follow(stream, rv, fn)
		stream.Close()
		if errors.Is(err, errRelist) {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("watch Secret %s: %w", s.ref(), err)
		}
	}
	return nil
}

// follow decodes one watch stream and returns the last resourceVersion seen.
func follow(stream io.Reader, rv string, fn func(*pki.Secret)) (string, error) {
	dec := json.NewDecoder(stream)
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err == io.EOF {
			return rv, nil
		} else if err != nil {
			return rv, err
		}
		if ev.Type == "ERROR" {
			var st metav1.Status
			_ = json.Unmarshal(ev.Object, &st)
			if st.Code == 410 {
				return rv, errRelist
			}
			return rv, apierrors.FromObject(&st)
		}
		obj, err := decodeSecret(ev.Object)
		if err != nil {
			return rv, err
		}
		rv = obj.Metadata.ResourceVersion
		switch ev.Type {
		case "ADDED", "MODIFIED":
			fn(toPKI(obj))
		case "DELETED":
			fn(nil)
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
		body, err := obj.edited(nil, map[string]string{key: value})
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
	if err := c.delete(ctx, namespace, "pods", name, pre, false); err != nil {
		return Explain(err, "delete", "Pod "+namespace+"/"+name)
	}
	return nil
}
