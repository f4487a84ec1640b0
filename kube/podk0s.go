package kube

import (
	"context"

	"github.com/certguard/certguard/pki"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// PodK0s reads which k0s a vcluster pod runs from its spec: the image of the container that
// brings the k0s binary (vcluster v0.19–v0.25 copy it from the k0s image in the init container
// "vcluster"; any container whose image repository ends in /k0s counts). ok is false when no
// container has a k0s image with a version tag. One GET, which vcluster's own Role grants to its
// service account (pods: get).
func PodK0s(ctx context.Context, c *Client, namespace, pod string) (k pki.K0s, ok bool, err error) {
	u, err := c.dyn.Resource(podsGVR).Namespace(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return pki.K0s{}, false, Explain(err, "get", "Pod "+namespace+"/"+pod)
	}
	for _, field := range []string{"initContainers", "containers"} {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", field)
		for _, c := range cs {
			m, _ := c.(map[string]any)
			image, _ := m["image"].(string)
			if k, ok := pki.K0sFromImage(image); ok {
				k.From = pki.K0sFromPod
				return k, true, nil
			}
		}
	}
	return pki.K0s{}, false, nil
}

// IsNotFound reports an API error "not found" (wrapped or not).
func IsNotFound(err error) bool { return apierrors.IsNotFound(err) }
