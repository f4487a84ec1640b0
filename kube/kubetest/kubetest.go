// Package kubetest starts a real kube-apiserver + etcd (built by .ci/k8s-testbin.sh from the Go
// module proxy) for tests, through controller-runtime's envtest. It never falls back to a fake:
// without the binaries, tests fail and say how to build them.
package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Versions must match .ci/k8s-testbin.sh and the k8s.io modules in go.mod.
const (
	K8sVersion  = "1.34.4"
	EtcdVersion = "3.6.5"
)

// Env is one apiserver for a test package (start it in TestMain: ~4 s).
type Env struct {
	env    *envtest.Environment
	Config *rest.Config // system:masters
	Client kubernetes.Interface
	work   string
}

// AssetsDir finds the kube-apiserver and etcd binaries: $KUBEBUILDER_ASSETS, else the cache
// .ci/k8s-testbin.sh fills.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(cache, "k8s-testbin", "k8s-"+K8sVersion+"-etcd-"+EtcdVersion)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("no %s in %s: build the test binaries with `bash .ci/k8s-testbin.sh` (or run `bash .ci/run`)", b, dir)
		}
	}
	return dir, nil
}

// Start starts etcd and kube-apiserver with RBAC on and the ServiceAccount admission plugin off
// (there is no controller-manager to create default service accounts).
func Start() (*Env, error) {
	dir, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, err
	}
	policy := filepath.Join(work, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	// envtest waits 20 s for the apiserver by default: on a loaded 2-core machine (several test
	// binaries starting their own at once) it has been seen to need more.
	// envtest logs through controller-runtime's logger, which prints a stack trace to every test's
	// output when nothing was set; what it would log (start and stop) is not needed.
	ctrllog.SetLogger(logr.Discard())
	env := &envtest.Environment{BinaryAssetsDirectory: dir, ControlPlaneStartTimeout: 2 * time.Minute}
	api := env.ControlPlane.GetAPIServer()
	args := api.Configure()
	args.Set("disable-admission-plugins", "ServiceAccount")
	args.Set("audit-policy-file", policy)
	args.Set("audit-log-path", filepath.Join(work, "audit.log"))
	args.Set("audit-log-format", "json")
	args.Set("audit-log-mode", "blocking")
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver + etcd from %s: %w", dir, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, errors.Join(err, env.Stop())
	}
	return &Env{env: env, Config: cfg, Client: cs, work: work}, nil
}

// auditPolicy logs every request once, when its response is complete: the apiserver's own count
// of what a client did.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted, Panic]
rules:
- level: Metadata
`

// AuditEvent is one request as the apiserver's audit log records it.
type AuditEvent struct {
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// Requests returns every request the apiserver served for a user, in order.
func (e *Env) Requests(user string) ([]AuditEvent, error) {
	data, err := os.ReadFile(filepath.Join(e.work, "audit.log"))
	if err != nil {
		return nil, err
	}
	var out []AuditEvent
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev AuditEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return nil, err
		}
		if ev.User.Username == user {
			out = append(out, ev)
		}
	}
	return out, nil
}

// Stop stops the apiserver and etcd.
func (e *Env) Stop() error { return errors.Join(e.env.Stop(), os.RemoveAll(e.work)) }

// User returns a config for a user that is only what RBAC grants it (no system:masters).
func (e *Env) User(name string, groups ...string) (*rest.Config, error) {
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// Kubeconfig writes a kubeconfig file for cfg, for a certguard binary run as a subprocess.
func (e *Env) Kubeconfig(dir, name string, groups ...string) (string, error) {
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return "", err
	}
	b, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name+".kubeconfig")
	return p, os.WriteFile(p, b, 0o600)
}

// Namespace creates a namespace with a unique name and returns it.
func (e *Env) Namespace(ctx context.Context, prefix string) (string, error) {
	ns, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return ns.Name, nil
}

// Counting wraps a config so that every HTTP request it makes is counted, by method.
type Counting struct {
	Total atomic.Int64
	Gets  atomic.Int64
}

// Wrap returns a copy of cfg whose requests are counted.
func (c *Counting) Wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return rtFunc(func(r *http.Request) (*http.Response, error) {
			c.Total.Add(1)
			if r.Method == http.MethodGet {
				c.Gets.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// BuildCertguard builds the certguard binary (with extra build flags, e.g. -tags failpoint) into
// dir and returns its path.
func BuildCertguard(dir string, args ...string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := filepath.Join(dir, "certguard")
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, args...), ".")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build certguard: %w\n%s", err, b)
	}
	return out, nil
}

// Main is a TestMain body: it starts one apiserver for the package into *env, runs the tests,
// stops it, and returns the exit code for os.Exit.
func Main(m interface{ Run() int }, env **Env) int {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*env = e
	code := m.Run()
	_ = e.Stop()
	return code
}
