// Package kube is certguard's side of the Kubernetes API: the <release>-certs Secret, Events
// on the vcluster pod, and the pod itself. It talks JSON over client-go's REST client and
// decodes only the fields it reads: client-go's typed clients register every API group (+22
// MiB of binary), and even k8s.io/api/core/v1 alone weighs 3 MiB, for five calls. An object
// certguard writes back is the server's own JSON with one edit, so no field is ever dropped.
package kube

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client is a REST client for the core API group that remembers the API server's clock.
type Client struct {
	rc    *rest.RESTClient
	clock *serverClock

	// The watch client is rc without a client-side timeout, for long watch streams; only the
	// sidecar needs it, so the init container never builds it.
	watchOnce sync.Once
	watchCfg  *rest.Config
	watch     *rest.RESTClient
	watchErr  error
}

// coreV1 is the core API group's version; its scheme knows only the meta types (Status for
// errors), since certguard decodes objects itself.
var (
	coreV1     = schema.GroupVersion{Version: "v1"}
	metaScheme = func() *runtime.Scheme {
		s := runtime.NewScheme()
		metav1.AddToGroupVersion(s, coreV1)
		return s
	}()
)

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
	clock := &serverClock{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return clock.wrap(rt) })
	cfg.APIPath = "/api"
	cfg.GroupVersion = &coreV1
	cfg.ContentType = "application/json"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(metaScheme).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = "certguard"
	}
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("build API client: %w", err)
	}
	wcfg := rest.CopyConfig(cfg)
	wcfg.Timeout = 0
	return &Client{rc: rc, watchCfg: wcfg, clock: clock}, nil
}

func (c *Client) watchClient() (*rest.RESTClient, error) {
	c.watchOnce.Do(func() { c.watch, c.watchErr = rest.RESTClientFor(c.watchCfg) })
	return c.watch, c.watchErr
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

// Explain turns an API error into what to do about it.
func Explain(err error, verb, what string) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s %s: forbidden: the service account lacks RBAC %q on it (the vcluster Role grants it unless rbac.role was overridden); nothing was changed: %w",
			verb, what, verb, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s %s: unauthorized: the credentials were rejected; check --kubeconfig or the pod's service account token: %w", verb, what, err)
	}
	return fmt.Errorf("%s %s: %w", verb, what, err)
}

// retriable reports errors worth another try: the API is down, slow or overloaded.
func retriable(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
			apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err)
	}
	return !strings.Contains(err.Error(), "context canceled")
}
