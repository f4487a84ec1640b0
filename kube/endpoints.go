package kube

import (
	"context"
	"fmt"
	"net"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/pager"
)

var endpointSlicesGVR = schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}

// ServiceEndpoint is one address of a Service's port, as its EndpointSlices list it.
type ServiceEndpoint struct {
	Namespace, Service string
	Addr               string // host:port
	// Ready is false for an endpoint known not ready (conditions.ready false): a pod starting,
	// stopping, or failing its readiness probe, as a syncer that stopped answering does.
	Ready bool
}

// ServiceEndpoints lists the EndpointSlices in namespace ("" = all) that match selector, a page
// at a time, and returns every address of the port named port, ready or not, by Service
// (kubernetes.io/service-name). The EndpointSlice controller copies a Service's labels onto its
// slices, so a vcluster Service's app=vcluster selects them (certguard fleet serve --probe-served).
func ServiceEndpoints(ctx context.Context, c *Client, namespace, selector, port string) ([]ServiceEndpoint, error) {
	p := pager.New(pager.SimplePageFunc(func(opts metav1.ListOptions) (runtime.Object, error) {
		return c.dyn.Resource(endpointSlicesGVR).Namespace(namespace).List(ctx, opts)
	}))
	p.PageSize = 500
	p.PageBufferSize = 0
	var out []ServiceEndpoint
	err := p.EachListItem(ctx, metav1.ListOptions{LabelSelector: selector}, func(obj runtime.Object) error {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return fmt.Errorf("list EndpointSlices: unexpected item %T", obj)
		}
		out = append(out, sliceEndpoints(u.Object, port)...)
		return nil
	})
	if err != nil {
		return nil, Explain(err, "list", "EndpointSlices")
	}
	return out, nil
}

// sliceEndpoints reads one EndpointSlice: the port named port and the addresses of its endpoints,
// each ready unless known not to be (conditions.ready absent counts as ready, as kube-proxy reads it).
func sliceEndpoints(o map[string]any, port string) []ServiceEndpoint {
	svc, _, _ := unstructured.NestedString(o, "metadata", "labels", "kubernetes.io/service-name")
	ns, _, _ := unstructured.NestedString(o, "metadata", "namespace")
	ports, _, _ := unstructured.NestedSlice(o, "ports")
	var num int64
	for _, p := range ports {
		pm, _ := p.(map[string]any)
		if name, _, _ := unstructured.NestedString(pm, "name"); name == port {
			num, _, _ = unstructured.NestedInt64(pm, "port")
		}
	}
	if svc == "" || num == 0 {
		return nil
	}
	eps, _, _ := unstructured.NestedSlice(o, "endpoints")
	var out []ServiceEndpoint
	for _, e := range eps {
		em, _ := e.(map[string]any)
		ready, found, _ := unstructured.NestedBool(em, "conditions", "ready")
		addrs, _, _ := unstructured.NestedStringSlice(em, "addresses")
		for _, a := range addrs {
			out = append(out, ServiceEndpoint{Namespace: ns, Service: svc, Addr: net.JoinHostPort(a, strconv.FormatInt(num, 10)), Ready: ready || !found})
		}
	}
	return out
}
