package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
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

// secretListJSON is one page of a Secret LIST, decoded once into the fields certguard reads, from
// the JSON or the protobuf answer.
type secretListJSON struct {
	Metadata struct {
		ResourceVersion    string `json:"resourceVersion"`
		Continue           string `json:"continue"`
		RemainingItemCount *int64 `json:"remainingItemCount"`
	} `json:"metadata"`
	Items []secretJSON `json:"items"`
}

// listSecretsJSON is one LIST request, its answer decoded into secretListJSON: the dynamic
// client's List decodes each page into maps, scanning the JSON three times (measured: most of
// fleet serve's CPU during its first LIST). The page is asked for in protobuf
// (decodeSecretListPB), read as JSON when the server answers JSON.
func (c *Client) listSecretsJSON(ctx context.Context, ns string, opts metav1.ListOptions) (*secretListJSON, error) {
	l, err := c.listSecretPage(ctx, ns, opts, protobufMedia+", application/json")
	if apierrors.HasStatusCause(err, metav1.CauseTypeUnexpectedServerResponse) {
		// The apiserver writes an error in the media type asked for, and this client decodes JSON
		// errors only: a protobuf refusal or 410 Expired comes out without the server's words
		// (client-go marks such an error with this cause). Asked again in JSON, it reads as the
		// server wrote it.
		l, err = c.listSecretPage(ctx, ns, opts, "application/json")
	}
	return l, err
}

// listSecretPage is one LIST request asking for accept.
func (c *Client) listSecretPage(ctx context.Context, ns string, opts metav1.ListOptions, accept string) (*secretListJSON, error) {
	rc, err := c.streamClient()
	if err != nil {
		return nil, err
	}
	// The stream client has no timeout of its own (watches): this page gets the one of a request,
	// on the server (the timeout parameter, as raw sends it) and here (Stream leaves reading the
	// body to the caller, so the deadline is on the context).
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	path := []string{"/api/v1/secrets"}
	if ns != "" {
		path = []string{"/api/v1/namespaces", ns, "secrets"}
	}
	// No compressed answer: the apiserver gzips any answer over 128 KiB for a client that
	// accepts it (Go's transport asks when the request does not say), which on the host
	// cluster's network cost both sides more CPU than the bytes it saved (measured: a fifth of
	// fleet serve's CPU during its first LIST was inflating).
	req := rc.Get().AbsPath(path...).SetHeader("Accept-Encoding", "identity").SetHeader("Accept", accept).Timeout(c.timeout)
	for k, v := range map[string]string{"fieldSelector": opts.FieldSelector, "labelSelector": opts.LabelSelector, "continue": opts.Continue,
		"resourceVersion": opts.ResourceVersion, "resourceVersionMatch": string(opts.ResourceVersionMatch)} {
		if v != "" {
			req = req.Param(k, v)
		}
	}
	if opts.Limit > 0 {
		req = req.Param("limit", strconv.FormatInt(opts.Limit, 10))
	}
	if opts.TimeoutSeconds != nil {
		req = req.Param("timeoutSeconds", strconv.FormatInt(*opts.TimeoutSeconds, 10))
	}
	body, err := req.Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	// A page is ~8 MB of protobuf (11 of JSON); reading each into a fresh, growing buffer zeroed
	// ~2.5× that and took a fifth of fleet serve's CPU. The buffers are reused (both decoders
	// copy what they keep out of them).
	buf := c.pages.get()
	l, err := readSecretPage(buf, body)
	c.pages.put(buf, err == nil && l.Metadata.Continue == "")
	return l, err
}

func readSecretPage(buf *bytes.Buffer, body io.Reader) (*secretListJSON, error) {
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("read Secret list: %w", err)
	}
	if bytes.HasPrefix(buf.Bytes(), protobufMagic) {
		return decodeSecretListPB(buf.Bytes())
	}
	var l secretListJSON
	if err := json.Unmarshal(buf.Bytes(), &l); err != nil {
		return nil, fmt.Errorf("decode Secret list: %w", err)
	}
	return &l, nil
}

// pageBuffers keeps the LIST pages' buffers from one page of a listing to the next. It is not a
// sync.Pool: the GC empties a pool within two cycles, and a listing's 8 MB pages start a cycle
// about every page, so each page grew a new buffer from nothing again (measured in-process at
// 1,000 vclusters: zeroing them was 1.6 s of CPU against 2.6 s for parsing the Secrets). The
// buffers go once a listing's last page is read: they do not outlive the first sync.
type pageBuffers struct {
	mu   sync.Mutex
	free []*bytes.Buffer
}

func (p *pageBuffers) get() *bytes.Buffer {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

// put returns b; last (the listing's last page was read) lets every buffer go.
func (p *pageBuffers) put(b *bytes.Buffer, last bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last {
		p.free = nil
		return
	}
	if len(p.free) < 2 { // a page being read and one fetched ahead (prefetch)
		p.free = append(p.free, b)
	}
}
