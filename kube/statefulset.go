package kube

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/pager"

	"github.com/certguard/certguard/pki"
)

var statefulSetsGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}

// Container is the part of a pod template's container the fleet reads: its image (the k0s
// version), and for certguard's init container its command, args and literal env (its
// --renew-before).
type Container struct {
	Name    string
	Image   string
	Command []string
	Args    []string
	Env     map[string]string // literal values only; valueFrom entries are absent
	// ValueFrom names the env entries whose value comes from elsewhere (a ConfigMap, a Secret,
	// a field), and EnvFrom is set when the container imports whole ConfigMaps or Secrets: the
	// fleet cannot know those values, so it must not guess the container's settings.
	ValueFrom []string
	EnvFrom   bool
}

// StatefulSet is a vcluster's StatefulSet as the fleet reads it.
type StatefulSet struct {
	Namespace string
	Name      string
	Replicas  int64 // spec.replicas (1 when unset, the API's default)
	// Release is the release label (release, else app.kubernetes.io/instance): a StatefulSet not
	// named after its release is still found by it.
	Release string
	// RenewNow is the certguard.dev/renew-now annotation ("" when absent).
	RenewNow       string
	InitContainers []Container
	Containers     []Container
}

// StatefulSetHandler receives every StatefulSet an informer sees; s is nil when it was deleted.
type StatefulSetHandler func(key string, s *StatefulSet)

// StatefulSetInformer follows StatefulSets in namespace ("" = all) with one LIST, then one
// WATCH. The transform keeps only the fields StatefulSet holds, so the cache costs a few hundred
// bytes per StatefulSet whatever their templates hold.
func StatefulSetInformer(c *Client, namespace string, fn StatefulSetHandler, onErr func(error)) (inf cache.SharedIndexInformer, synced func() bool, err error) {
	inf = cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			if o.ResourceVersion == "0" {
				o.ResourceVersion = "" // a page at a time, as for Secrets
			}
			o.Limit = listPage
			list, err := c.dyn.Resource(statefulSetsGVR).Namespace(namespace).List(ctx, o)
			if err != nil {
				return nil, err
			}
			for i := range list.Items {
				list.Items[i] = *reduceStatefulSet(&list.Items[i])
			}
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.watch(ctx, statefulSetsGVR, namespace, o)
		},
	}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	if err := inf.SetTransform(func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			return reduceStatefulSet(u), nil
		}
		return obj, nil
	}); err != nil {
		return nil, nil, err
	}
	if err := inf.SetWatchErrorHandlerWithContext(explainWatchError("StatefulSets", "statefulsets (apps)", onErr)); err != nil {
		return nil, nil, err
	}
	handle := func(obj any) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			fn(u.GetNamespace()+"/"+u.GetName(), decodeStatefulSet(u))
		}
	}
	reg, err := inf.AddEventHandler(handlers(handle, func(key string) { fn(key, nil) }))
	if err != nil {
		return nil, nil, err
	}
	return inf, reg.HasSynced, nil
}

// reduceStatefulSet keeps metadata (without managedFields and annotations, which hold the last
// applied configuration), spec.replicas and the containers' fields Container reads.
func reduceStatefulSet(u *unstructured.Unstructured) *unstructured.Unstructured {
	out := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet"}}
	out.SetName(u.GetName())
	out.SetNamespace(u.GetNamespace())
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	if rel := releaseLabel(u.GetLabels()); rel != "" {
		out.SetLabels(map[string]string{ReleaseLabels[0]: rel})
	}
	if v, ok := u.GetAnnotations()[pki.RenewNowAnnotation]; ok {
		out.SetAnnotations(map[string]string{pki.RenewNowAnnotation: v})
	}
	spec := map[string]any{}
	if r, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "replicas"); ok {
		spec["replicas"] = r
	}
	podSpec := map[string]any{}
	for _, k := range []string{"initContainers", "containers"} {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", k)
		var kept []any
		for _, c := range cs {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			r := map[string]any{}
			for _, f := range []string{"name", "image", "command", "args", "env", "envFrom"} {
				if v, ok := m[f]; ok {
					r[f] = v
				}
			}
			kept = append(kept, r)
		}
		if kept != nil {
			podSpec[k] = kept
		}
	}
	spec["template"] = map[string]any{"spec": podSpec}
	out.Object["spec"] = spec
	return out
}

func decodeStatefulSet(u *unstructured.Unstructured) *StatefulSet {
	s := &StatefulSet{Namespace: u.GetNamespace(), Name: u.GetName(), Replicas: 1, Release: releaseLabel(u.GetLabels()),
		RenewNow: u.GetAnnotations()[pki.RenewNowAnnotation]}
	if r, ok, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); ok {
		s.Replicas = r
	}
	containers := func(k string) []Container {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", k)
		var out []Container
		for _, c := range cs {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			ct := Container{}
			ct.Name, _, _ = unstructured.NestedString(m, "name")
			ct.Image, _, _ = unstructured.NestedString(m, "image")
			ct.Command, _, _ = unstructured.NestedStringSlice(m, "command")
			ct.Args, _, _ = unstructured.NestedStringSlice(m, "args")
			env, _, _ := unstructured.NestedSlice(m, "env")
			for _, e := range env {
				em, ok := e.(map[string]any)
				if !ok {
					continue
				}
				n, _, _ := unstructured.NestedString(em, "name")
				if _, from := em["valueFrom"]; from {
					ct.ValueFrom = append(ct.ValueFrom, n)
					continue
				}
				v, _, _ := unstructured.NestedString(em, "value") // absent: the empty string
				if n != "" {
					if ct.Env == nil {
						ct.Env = map[string]string{}
					}
					ct.Env[n] = v
				}
			}
			if ef, _, _ := unstructured.NestedSlice(m, "envFrom"); len(ef) > 0 {
				ct.EnvFrom = true
			}
			out = append(out, ct)
		}
		return out
	}
	s.InitContainers, s.Containers = containers("initContainers"), containers("containers")
	return s
}

// EachStatefulSet lists StatefulSets in namespace ("" = all) a page at a time and hands each to
// fn, for the one-shot commands.
func EachStatefulSet(ctx context.Context, c *Client, namespace string, pageSize int64, fn func(*StatefulSet)) error {
	p := pager.New(pager.SimplePageFunc(func(opts metav1.ListOptions) (runtime.Object, error) {
		return c.dyn.Resource(statefulSetsGVR).Namespace(namespace).List(ctx, opts)
	}))
	p.PageSize = pageSize
	p.PageBufferSize = 0
	err := p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			fn(decodeStatefulSet(u)) // reads only the fields the reduction keeps
		}
		return nil
	})
	if err != nil {
		return Explain(err, "list", "StatefulSets")
	}
	return nil
}

// releaseLabel is the release a pod template or StatefulSet is labelled with.
func releaseLabel(l map[string]string) string {
	for _, k := range ReleaseLabels {
		if v := l[k]; v != "" {
			return v
		}
	}
	return ""
}
