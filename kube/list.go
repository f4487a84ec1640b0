package kube

import (
	"context"

	"github.com/certguard/certguard/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EachCertSecret lists Secrets of type Opaque (vcluster's) in namespace ("" = all) a page at a
// time and calls fn for each vcluster certificate Secret, so memory holds one page, never the
// whole cluster's Secrets. It returns the number of LIST requests made.
func EachCertSecret(ctx context.Context, c *Client, namespace string, pageSize int64, fn func(*pki.Secret)) (int, error) {
	opts := metav1.ListOptions{Limit: pageSize, FieldSelector: "type=" + string(corev1.SecretTypeOpaque)}
	for pages := 1; ; pages++ {
		var list corev1.SecretList
		req := c.rc.Get().Resource("secrets").VersionedParams(&opts, c.params)
		if namespace != "" {
			req = req.Namespace(namespace)
		}
		if err := req.Do(ctx).Into(&list); err != nil {
			return pages, Explain(err, "list", "Secrets")
		}
		for i := range list.Items {
			s := &list.Items[i]
			if !pki.IsCertSecret(s.Name, s.Labels, func(k string) bool { _, ok := s.Data[k]; return ok }) {
				continue
			}
			fn(toPKI(s))
		}
		if list.Continue == "" {
			return pages, nil
		}
		opts.Continue = list.Continue
	}
}
