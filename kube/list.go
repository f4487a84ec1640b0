package kube

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/certguard/certguard/pki"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/pager"
)

// EachCertSecret lists Secrets of type Opaque (vcluster's) in namespace ("" = all) a page at a
// time with client-go's pager and calls fn for each vcluster certificate Secret, so memory holds
// one page, never the whole cluster's Secrets. It returns the number of LIST requests made.
//
// A continue token that expires between pages (410 Expired: etcd compacted the revision the
// listing started from) starts the listing again from the first page; Secrets already handed to
// fn are skipped by UID. The pager's own fallback (FullListIfExpired) exists only in List, which
// gathers every page into one list: the memory bound this function is for.
func EachCertSecret(ctx context.Context, c *Client, namespace string, pageSize int64, fn func(*pki.Secret)) (int, error) {
	var requests atomic.Int64
	// The pages are the informer's (listSecretsJSON, reduced): decoded once into the fields
	// certguard reads, each Secret reduced to its pki.Secret when it is a certificate Secret.
	reduce := func(s *secret) runtime.Object {
		var p *pki.Secret
		if pki.IsCertSecret(s.Name, s.Labels, func(k string) bool { _, ok := s.Data[k]; return ok }) {
			p = toPKI(s)
		}
		return reducedSecret(s, p)
	}
	p := pager.New(pager.SimplePageFunc(func(opts metav1.ListOptions) (runtime.Object, error) {
		requests.Add(1)
		l, err := c.listSecretsJSON(ctx, namespace, opts)
		if err != nil {
			return nil, err
		}
		return l.reduced(reduce), nil
	}))
	p.PageSize = pageSize
	p.PageBufferSize = 0 // one page at a time, not the pager's default of 10 fetched ahead
	seen := map[types.UID]bool{}
	each := func(obj runtime.Object) error {
		cs, ok := obj.(*cachedSecret)
		if !ok {
			return fmt.Errorf("list Secrets: unexpected item %T", obj)
		}
		if s, _ := cs.parsed.(*pki.Secret); s != nil && !seen[cs.UID] {
			seen[cs.UID] = true
			fn(s)
		}
		return nil
	}
	opts := metav1.ListOptions{FieldSelector: "type=Opaque"}
	err := p.EachListItem(ctx, opts, each)
	if apierrors.IsResourceExpired(err) {
		err = p.EachListItem(ctx, opts, each)
	}
	if err != nil {
		return int(requests.Load()), Explain(err, "list", "Secrets")
	}
	return int(requests.Load()), nil
}
