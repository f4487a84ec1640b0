package kube

import "context"

// ReleaseLabels are the pod labels that name the vcluster release, in order of preference.
var ReleaseLabels = []string{"release", "app.kubernetes.io/instance"}

// PodRelease reads the release name from the pod's labels: the fallback when the pod name is not
// a StatefulSet's <release>-<ordinal> (vcluster with persistence off runs a Deployment).
func PodRelease(ctx context.Context, c *Client, namespace, pod string) (string, error) {
	p, err := c.getMeta(ctx, namespace, podsGVR, pod)
	if err != nil {
		return "", Explain(err, "get", "Pod "+namespace+"/"+pod)
	}
	for _, l := range ReleaseLabels {
		if v := p.Labels[l]; v != "" {
			return v, nil
		}
	}
	return "", nil
}
