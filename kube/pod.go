package kube

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ReleaseLabels are the pod labels that name the vcluster release, in order of preference.
var ReleaseLabels = []string{"release", "app.kubernetes.io/instance"}

// PodRelease reads the release name from the pod's labels: the fallback when the pod name is not
// a StatefulSet's <release>-<ordinal> (vcluster with persistence off runs a Deployment).
func PodRelease(ctx context.Context, c *Client, namespace, pod string) (string, error) {
	p, err := c.dyn.Resource(podsGVR).Namespace(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return "", Explain(err, "get", "Pod "+namespace+"/"+pod)
	}
	return releaseLabel(p.GetLabels()), nil
}

// PodState is what the fleet reads of a vcluster pod while restarting it.
type PodState struct {
	UID         string
	Ready       bool // condition Ready is True
	Terminating bool // a delete was accepted
	// Pending: status.phase is Pending (not scheduled, or its init containers have not finished):
	// its init container runs when it starts, so deleting it renews nothing.
	Pending bool
}

// GetPod reads a pod's UID and readiness; nil when there is no such pod.
func GetPod(ctx context.Context, c *Client, namespace, name string) (*PodState, error) {
	u, err := c.dyn.Resource(podsGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, Explain(err, "get", "Pod "+namespace+"/"+name)
	}
	p := &PodState{UID: string(u.GetUID()), Terminating: u.GetDeletionTimestamp() != nil}
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	p.Pending = phase == "Pending" || phase == ""
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" && m["status"] == "True" {
			p.Ready = true
		}
	}
	return p, nil
}
