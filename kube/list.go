package kube

import (
	"context"

	"github.com/certguard/certguard/pki"
)

// EachCertSecret lists Secrets of type Opaque (vcluster's) in namespace ("" = all) a page at a
// time and calls fn for each vcluster certificate Secret, so memory holds one page, never the
// whole cluster's Secrets. It returns the number of LIST requests made.
func EachCertSecret(ctx context.Context, c *Client, namespace string, pageSize int64, fn func(*pki.Secret)) (int, error) {
	cont := ""
	for pages := 1; ; pages++ {
		list, err := c.listSecrets(ctx, namespace, "type=Opaque", pageSize, cont)
		if err != nil {
			return pages, Explain(err, "list", "Secrets")
		}
		for i := range list.Items {
			s := &list.Items[i]
			if pki.IsCertSecret(s.Metadata.Name, s.Metadata.Labels, func(k string) bool { _, ok := s.Data[k]; return ok }) {
				fn(toPKI(s))
			}
		}
		if list.Metadata.Continue == "" {
			return pages, nil
		}
		cont = list.Metadata.Continue
	}
}
