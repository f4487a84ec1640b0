package kube

import (
	"slices"
	"testing"
)

// TestSliceEndpoints reads EndpointSlices as the API serves them (unstructured JSON): the
// addresses of the named port, by Service, each ready unless known not to be (ready absent is
// ready); a slice without the port or without its Service's name gives none.
func TestSliceEndpoints(t *testing.T) {
	slice := func(svc string, ports []any, eps ...any) map[string]any {
		labels := map[string]any{}
		if svc != "" {
			labels["kubernetes.io/service-name"] = svc
		}
		return map[string]any{"metadata": map[string]any{"namespace": "team-a", "labels": labels}, "ports": ports, "endpoints": eps}
	}
	https := []any{map[string]any{"name": "kubelet", "port": int64(10250)}, map[string]any{"name": "https", "port": int64(8443)}}
	ep := func(ready any, addrs ...any) map[string]any {
		e := map[string]any{"addresses": addrs}
		if ready != nil {
			e["conditions"] = map[string]any{"ready": ready}
		}
		return e
	}
	cases := []struct {
		name  string
		slice map[string]any
		want  []string
	}{
		{"ready and unknown", slice("vc1", https, ep(true, "10.0.0.1"), ep(nil, "10.0.0.2", "10.0.0.3")), []string{"10.0.0.1:8443 ready", "10.0.0.2:8443 ready", "10.0.0.3:8443 ready"}},
		{"not ready, marked", slice("vc1", https, ep(false, "10.0.0.1"), ep(true, "fd00::1")), []string{"10.0.0.1:8443", "[fd00::1]:8443 ready"}},
		{"no https port", slice("vc1", []any{map[string]any{"name": "kubelet", "port": int64(10250)}}, ep(true, "10.0.0.1")), nil},
		{"no Service name", slice("", https, ep(true, "10.0.0.1")), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, e := range sliceEndpoints(c.slice, "https") {
				if e.Namespace != "team-a" || e.Service != "vc1" {
					t.Fatalf("endpoint %+v", e)
				}
				if e.Ready {
					e.Addr += " ready"
				}
				got = append(got, e.Addr)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}
