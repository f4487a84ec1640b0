package kube

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/certguard/certguard/pki"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// The core resources certguard touches, served by the dynamic client as unstructured objects.
var (
	secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	podsGVR    = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	eventsGVR  = schema.GroupVersionResource{Version: "v1", Resource: "events"}
)

// secret is a Secret as certguard reads it: the domain's pki.Secret, and the server's object
// kept whole for writing back, so that an update changes the keys and annotations certguard
// means to change, nothing else.
type secret struct {
	pki.Secret
	obj *unstructured.Unstructured
	raw []byte // the server's JSON, when obj is not decoded yet
}

// secretJSON is the one Secret decoder: the part of a Secret's JSON certguard reads. It is the
// wire's shape (metadata nested, a deletion timestamp), which pki.Secret, the domain's, is not.
// A GET's or a LIST page's answer is decoded into it by encoding/json, which decodes the base64
// data values into bytes; an object the dynamic client already decoded into maps (a WATCH event,
// an Update's answer) is read into it by apimachinery's converter (secretFrom). Only the fields
// certguard reads are decoded: never managedFields, which the dynamic client's maps hold.
type secretJSON struct {
	Metadata struct {
		Name              string            `json:"name"`
		Namespace         string            `json:"namespace"`
		UID               string            `json:"uid"`
		ResourceVersion   string            `json:"resourceVersion"`
		Labels            map[string]string `json:"labels"`
		Annotations       map[string]string `json:"annotations"`
		Finalizers        []string          `json:"finalizers"`
		DeletionTimestamp *metav1.Time      `json:"deletionTimestamp"`
	} `json:"metadata"`
	Data map[string][]byte `json:"data"`
}

// secret is the decoded Secret, without the server's object.
func (j *secretJSON) secret() *secret {
	m := j.Metadata
	return &secret{Secret: pki.Secret{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels: m.Labels, Annotations: m.Annotations, Finalizers: m.Finalizers, Deleting: m.DeletionTimestamp != nil, Data: j.Data}}
}

// decodeSecret decodes a GET's answer once; the whole object is decoded again only when
// certguard writes it back (edited), which a healthy start never does.
func decodeSecret(raw []byte) (*secret, error) {
	var j secretJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("decode Secret: %w", err)
	}
	s := j.secret()
	s.raw = raw
	return s, nil
}

// secretFrom reads a Secret the dynamic client decoded, through secretJSON.
func secretFrom(u *unstructured.Unstructured) (*secret, error) {
	var j secretJSON
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &j); err != nil {
		return nil, fmt.Errorf("decode Secret %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	s := j.secret()
	s.obj = u
	return s, nil
}

// edited returns a copy of the server's object with keys removed from data and annotations set
// (an empty value removes one);
// every other field (and the resourceVersion, which makes a concurrent change a Conflict) stays
// as the server sent it.
func (s *secret) edited(remove []string, annotations map[string]string) (*unstructured.Unstructured, error) {
	if s.obj == nil {
		s.obj = &unstructured.Unstructured{}
		if err := s.obj.UnmarshalJSON(s.raw); err != nil {
			return nil, fmt.Errorf("decode Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	obj := s.obj.DeepCopy()
	for _, k := range remove {
		unstructured.RemoveNestedField(obj.Object, "data", k)
	}
	if len(annotations) > 0 {
		ann := obj.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		for k, v := range annotations {
			if v == "" {
				delete(ann, k) // "" removes: no certguard annotation has an empty value
				continue
			}
			ann[k] = v
		}
		obj.SetAnnotations(ann)
	}
	return obj, nil
}

func (c *Client) secrets(ns string) dynamic.ResourceInterface {
	return c.dyn.Resource(secretsGVR).Namespace(ns)
}

func (c *Client) getSecret(ctx context.Context, ns, name string) (*secret, error) {
	raw, err := c.raw.Get().AbsPath("/api/v1/namespaces", ns, "secrets", name).Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	return decodeSecret(raw)
}

// updateSecret writes obj back; the resourceVersion in it makes a concurrent change a Conflict.
// With dryRun the server runs every check (RBAC, admission, immutability, the precondition) and
// stores nothing.
func (c *Client) updateSecret(ctx context.Context, ns, _ string, obj *unstructured.Unstructured, dryRun bool) (*secret, error) {
	opts := metav1.UpdateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	u, err := c.secrets(ns).Update(ctx, obj, opts)
	if err != nil {
		return nil, err
	}
	return secretFrom(u)
}

func (c *Client) delete(ctx context.Context, ns string, gvr schema.GroupVersionResource, name string, pre *metav1.Preconditions, dryRun bool) error {
	opts := metav1.DeleteOptions{Preconditions: pre}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return c.dyn.Resource(gvr).Namespace(ns).Delete(ctx, name, opts)
}

func (c *Client) create(ctx context.Context, ns string, gvr schema.GroupVersionResource, obj map[string]any) error {
	_, err := c.dyn.Resource(gvr).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	return err
}

// watchSecrets opens a watch stream on the client without a request timeout: the server ends it
// after a while and the informer opens the next one from the last version seen.
func (c *Client) watchSecrets(ctx context.Context, ns string, opts metav1.ListOptions) (watch.Interface, error) {
	return c.watch(ctx, secretsGVR, ns, opts)
}
