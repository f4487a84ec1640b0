// Package kube is certguard's side of the Kubernetes API: the <release>-certs Secret, Events
// on the vcluster pod, and the pod itself. It uses client-go's dynamic client with unstructured
// objects, its pager and its informer (tools/cache): client-go's typed clientset registers every
// API group (+22 MiB of binary), and even k8s.io/api/core/v1 alone weighs 3 MiB, for five calls. An object
// certguard writes back is the server's own object with one edit, so no field is ever dropped.
package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client is a dynamic client for the core API group that remembers the API server's clock.
//
// It holds two REST clients, for the two kinds of request that need different transports (one
// was four: a dynamic client, a raw client beside it, a watch client and a bulk client):
//   - raw, for every ordinary request: a 10 s timeout and client-go's rate limit. dyn is the
//     dynamic client over it; the one GET of a healthy start uses raw itself, its answer decoded
//     once into the fields certguard reads (the dynamic Get decodes the whole Secret twice, into
//     maps, which was most of the API layer's CPU in a healthy run).
//   - stream, for long or bulky answers: the WATCH streams (no client-side timeout: the server
//     ends a watch after a while and the informer opens the next one) and the informer's and the
//     one-shot commands' LIST pages (their timeout is a deadline on each page's context instead).
//     It has no rate limit, and its LIST pages ask for no compression (listSecretsJSON). It
//     shares raw's transport, hence its connection. Built on first use: the init container
//     never lists nor watches.
type Client struct {
	raw     rest.Interface
	dyn     dynamic.Interface
	clock   *serverClock
	timeout time.Duration // of a request on raw, and of each LIST page on stream

	streamOnce sync.Once
	streamCfg  *rest.Config
	stream     rest.Interface
	streamErr  error
	pages      pageBuffers
}

// Config builds a REST config: an explicit kubeconfig path wins, then $KUBECONFIG, then the
// in-cluster service account.
func Config(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		kubeconfig = os.Getenv("KUBECONFIG")
	}
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no kubeconfig given and not in a cluster (%w): set --kubeconfig or KUBECONFIG", err)
	}
	return cfg, nil
}

// NewClient wraps cfg's transport to read the Date header of every answer, which is how a
// repair notices that this node's clock is off without an extra request.
func NewClient(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	// The dynamic client and the raw client were two REST clients with client-go's default
	// limit each (5 requests a second, burst 10); as one they keep the sum.
	if cfg.QPS == 0 && cfg.Burst == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = 2*rest.DefaultQPS, 2*rest.DefaultBurst
	}
	clock := &serverClock{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return clock.wrap(rt) })
	if cfg.UserAgent == "" {
		cfg.UserAgent = "certguard"
	}
	// As dynamic.NewForConfig builds its REST client (every path is absolute), so that the
	// dynamic client and the raw GET share it.
	rcfg := dynamic.ConfigFor(cfg)
	rcfg.GroupVersion = nil
	raw, err := rest.UnversionedRESTClientFor(rcfg)
	if err != nil {
		return nil, fmt.Errorf("build API client: %w", err)
	}
	scfg := rest.CopyConfig(rcfg)
	scfg.Timeout = 0
	// No client-side rate limit (client-go's default is 5 requests a second, burst 10): a LIST
	// is one request split into pages, and at 10,000 vcluster Secrets its 200 pages waited 38 s
	// on the limiter. The apiserver's priority and fairness is what protects it.
	scfg.QPS, scfg.Burst, scfg.RateLimiter = -1, 0, nil
	return &Client{raw: raw, dyn: dynamic.New(raw), timeout: cfg.Timeout, streamCfg: scfg, clock: clock}, nil
}

// streamClient is the client of WATCH streams and LIST pages, built on first use. Its config
// differs from raw's only in what is not part of the transport (timeout, rate limit), so client-go
// hands it the same transport: no second connection (the sidecar's budget is 20 MiB).
func (c *Client) streamClient() (rest.Interface, error) {
	c.streamOnce.Do(func() { c.stream, c.streamErr = rest.UnversionedRESTClientFor(c.streamCfg) })
	return c.stream, c.streamErr
}

// watch opens a watch stream of resource in namespace on the stream client.
func (c *Client) watch(ctx context.Context, gvr schema.GroupVersionResource, namespace string, opts metav1.ListOptions) (watch.Interface, error) {
	sc, err := c.streamClient()
	if err != nil {
		return nil, err
	}
	return dynamic.New(sc).Resource(gvr).Namespace(namespace).Watch(ctx, opts)
}

// ServerTime is the API server's clock at its last answer, advanced by the time since.
func (c *Client) ServerTime() time.Time { return c.clock.now() }

type serverClock struct {
	mu    sync.Mutex
	at    time.Time // local time of the last answer
	their time.Time // the server's Date then
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (c *serverClock) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err == nil {
			if t, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
				c.mu.Lock()
				c.at, c.their = time.Now(), t
				c.mu.Unlock()
			}
		}
		return resp, err
	})
}

func (c *serverClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.their.IsZero() {
		return time.Time{}
	}
	// Date has a resolution of one second: half a second is the expected error.
	return c.their.Add(time.Since(c.at) + 500*time.Millisecond)
}

// Explain turns an API error into one line: what certguard tried, what the server said (its
// message names the user, the verb and the object; its reason says why), and what to do.
func Explain(err error, verb, what string) error {
	said := serverSaid(err)
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s %s: forbidden (%s): grant RBAC %q on it to this identity (the vcluster Role grants it unless rbac.role was overridden); nothing was changed; the server said: %w",
			verb, what, said, verb, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s %s: unauthorized (%s): the credentials were rejected; check --kubeconfig or the pod's service account token; the server said: %w", verb, what, said, err)
	case immutable(err):
		return fmt.Errorf("%s %s: the Secret is immutable (immutable: true), so no key can be removed (%s): recreate it without immutable (kubectl get -o yaml, delete, apply without the field), then run again; nothing was changed; the server said: %w",
			verb, what, said, err)
	case apierrors.IsInvalid(err):
		return fmt.Errorf("%s %s: the server refused the object (%s): %w", verb, what, said, err)
	case apierrors.IsConflict(err):
		return fmt.Errorf("%s %s: conflict (%s): changed by another writer since it was read; run again to act on what is there now; the server said: %w", verb, what, said, err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s %s: not found (%s): %w", verb, what, said, err)
	case apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err):
		return fmt.Errorf("%s %s: the API server is overloaded or unavailable (%s); the next run tries again; the server said: %w", verb, what, said, err)
	}
	return fmt.Errorf("%s %s: %w", verb, what, err)
}

// serverSaid is the reason the server gave for an API error ("Forbidden", "Invalid",
// "Conflict"); the error itself, wrapped last in Explain's line, carries its message.
func serverSaid(err error) string {
	if r := apierrors.ReasonForError(err); r != "" {
		return string(r)
	}
	return "Unknown"
}

// immutable reports the server's refusal to change an immutable Secret: an Invalid whose cause
// is a Forbidden field error on the Secret's data ("field is immutable when `immutable` is set").
func immutable(err error) bool {
	if !apierrors.IsInvalid(err) {
		return false
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Details != nil {
		for _, c := range st.Status().Details.Causes {
			if strings.Contains(c.Message, "immutable") {
				return true
			}
		}
	}
	return strings.Contains(err.Error(), "immutable")
}

// retriable reports errors worth another try: the API is down, slow or overloaded. A context
// that ended is not (the caller gave up), nor is any answer the server gave on purpose.
func retriable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
			apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err)
	}
	return true // no answer: connection refused, reset, DNS, TLS handshake timeout
}
