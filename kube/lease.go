package kube

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var leasesGVR = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}

// Lease is a coordination.k8s.io/v1 Lease held the way client-go's leader election holds one
// (holderIdentity, leaseDurationSeconds, acquireTime, renewTime, leaseTransitions), so that
// `kubectl get lease` reads it as usual. client-go's own leaderelection package is not used: its
// resourcelock imports the typed clientset, which doubled the binary (measured 22.8 → 44.0 MB)
// that also runs as every vcluster's init container.
//
// As in client-go, expiry is judged on this process's own clock from when it first saw the
// Lease's current resourceVersion, never from the timestamps another node wrote: two replicas
// with skewed clocks still never hold it at once. Every take or renewal is an Update carrying
// the resourceVersion read, so of two contenders exactly one wins.
type Lease struct {
	Client    *Client
	Namespace string
	Name      string
	Identity  string
	Duration  time.Duration
	// Clock is this process's clock (nil: time.Now); a test injects one to age a Lease.
	Clock func() time.Time

	observedRV string
	observedAt time.Time // local, monotonic
}

const microTime = "2006-01-02T15:04:05.000000Z07:00"

// Hold takes the Lease, or renews it when this process holds it. true: this process holds it
// until at least now+Duration on any other contender's clock; act only for a fraction of
// Duration before calling Hold again.
func (l *Lease) Hold(ctx context.Context) (bool, error) {
	res := l.Client.dyn.Resource(leasesGVR).Namespace(l.Namespace)
	clock := l.Clock
	if clock == nil {
		clock = time.Now
	}
	secs := int64(l.Duration / time.Second)
	u, err := res.Get(ctx, l.Name, metav1.GetOptions{})
	// Stamped after the GET, as client-go does: a waiter's wait starts when it saw the record,
	// never earlier by the request's latency.
	now := clock()
	stamp := now.UTC().Format(microTime)
	if apierrors.IsNotFound(err) {
		u = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
			"metadata": map[string]any{"name": l.Name, "namespace": l.Namespace},
			"spec": map[string]any{"holderIdentity": l.Identity, "leaseDurationSeconds": secs,
				"acquireTime": stamp, "renewTime": stamp, "leaseTransitions": int64(0)},
		}}
		got, err := res.Create(ctx, u, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		if err != nil {
			return false, Explain(err, "create", l.ref())
		}
		l.observedRV, l.observedAt = got.GetResourceVersion(), now
		return true, nil
	}
	if err != nil {
		return false, Explain(err, "get", l.ref())
	}
	if u.GetResourceVersion() != l.observedRV {
		l.observedRV, l.observedAt = u.GetResourceVersion(), now
	}
	holder, _, _ := unstructured.NestedString(u.Object, "spec", "holderIdentity")
	held, _, _ := unstructured.NestedInt64(u.Object, "spec", "leaseDurationSeconds")
	if holder != l.Identity && holder != "" && now.Sub(l.observedAt) < time.Duration(held)*time.Second {
		return false, nil
	}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	if spec == nil {
		spec = map[string]any{}
	}
	if holder != l.Identity {
		spec["acquireTime"] = stamp
		n, _, _ := unstructured.NestedInt64(u.Object, "spec", "leaseTransitions")
		spec["leaseTransitions"] = n + 1
	}
	spec["holderIdentity"], spec["leaseDurationSeconds"], spec["renewTime"] = l.Identity, secs, stamp
	if err := unstructured.SetNestedMap(u.Object, spec, "spec"); err != nil {
		return false, err
	}
	got, err := res.Update(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return false, nil
	}
	if err != nil {
		return false, Explain(err, "update", l.ref())
	}
	l.observedRV, l.observedAt = got.GetResourceVersion(), now
	return true, nil
}

// Release gives the Lease up at shutdown (as client-go's ReleaseOnCancel does: no holder, a
// one-second duration), so that a successor need not wait for it to expire.
func (l *Lease) Release(ctx context.Context) {
	res := l.Client.dyn.Resource(leasesGVR).Namespace(l.Namespace)
	u, err := res.Get(ctx, l.Name, metav1.GetOptions{})
	if err != nil {
		return
	}
	if h, _, _ := unstructured.NestedString(u.Object, "spec", "holderIdentity"); h != l.Identity {
		return
	}
	_ = unstructured.SetNestedField(u.Object, "", "spec", "holderIdentity")
	_ = unstructured.SetNestedField(u.Object, int64(1), "spec", "leaseDurationSeconds")
	_, _ = res.Update(ctx, u, metav1.UpdateOptions{})
}

func (l *Lease) ref() string { return fmt.Sprintf("Lease %s/%s", l.Namespace, l.Name) }
