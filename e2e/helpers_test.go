package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	day     = 24 * time.Hour
	release = "my-vc"
)

// scenario is one vcluster: a namespace with its Secret on the host apiserver, a data dir
// <tmp>/data/k0s, and a user with its own kubeconfig for certguard (so that the audit log tells
// its requests apart).
type scenario struct {
	t          *testing.T
	node       *Node
	root       string // <tmp>
	pki        *pkigen.PKI
	user       string
	kubeconfig string
	boots      int
}

type scenarioOpt func(*scenarioConfig)

type scenarioConfig struct {
	dataDir  string // overrides <tmp>/data/k0s (for the tmpfs test)
	noSecret bool
}

func withDataDir(d string) scenarioOpt { return func(c *scenarioConfig) { c.dataDir = d } }

// newScenario lays out a vcluster v0.25 + k0s PKI made by pkigen with opts on disk, and the
// Secret exactly as vcluster v0.25 keeps it after a boot (certMap keys + extraFiles + the 14 k0s
// files: pkigen's SecretData).
func newScenario(t *testing.T, opts pkigen.Options, so ...scenarioOpt) *scenario {
	t.Helper()
	var cfg scenarioConfig
	for _, o := range so {
		o(&cfg)
	}
	ctx := context.Background()
	root := t.TempDir()
	if cfg.dataDir == "" {
		cfg.dataDir = filepath.Join(root, "data", "k0s")
	}
	ns, err := env.Namespace(ctx, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	user := "certguard-" + ns
	kc, err := env.Kubeconfig(root, user, "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	p, err := pkigen.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	s := &scenario{t: t, root: root, pki: p, user: user, kubeconfig: kc,
		node: &Node{Host: env.Client, Namespace: ns, Release: release, DataDir: cfg.dataDir, Assets: assets,
			LogDir: filepath.Join(root, "logs")}}
	if err := pkigen.WriteDir(s.node.PKIDir(), p.Files); err != nil {
		t.Fatal(err)
	}
	if !cfg.noSecret {
		s.putSecret(p.SecretData())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of the failed scenario are in %s (kept: E2E_KEEP=1 keeps them past the test)", s.node.LogDir)
			if os.Getenv("E2E_KEEP") != "" {
				keep, _ := os.MkdirTemp("", "e2e-failed-")
				_ = exec.Command("cp", "-a", s.node.LogDir, keep).Run()
				t.Logf("copied to %s", keep)
			}
		}
	})
	return s
}

func (s *scenario) ctx() context.Context { return context.Background() }

func (s *scenario) secrets() func() (*corev1.Secret, error) {
	return func() (*corev1.Secret, error) {
		return env.Client.CoreV1().Secrets(s.node.Namespace).Get(s.ctx(), s.node.SecretName(), metav1.GetOptions{})
	}
}

// putSecret creates or replaces the Secret, with vcluster v0.24+'s labels.
func (s *scenario) putSecret(data map[string][]byte) {
	s.t.Helper()
	c := env.Client.CoreV1().Secrets(s.node.Namespace)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.node.SecretName(), Namespace: s.node.Namespace,
		Labels: map[string]string{"app": "vcluster", "vcluster-name": release}}, Data: data}
	cur, err := c.Get(s.ctx(), sec.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.Create(s.ctx(), sec, metav1.CreateOptions{})
	case err == nil:
		cur.Data = data
		_, err = c.Update(s.ctx(), cur, metav1.UpdateOptions{})
	}
	if err != nil {
		s.t.Fatal(err)
	}
}

// secretData returns the Secret's data, or nil when it does not exist.
func (s *scenario) secretData() map[string][]byte {
	s.t.Helper()
	sec, err := s.secrets()()
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return sec.Data
}

func (s *scenario) deleteSecret() {
	s.t.Helper()
	if err := env.Client.CoreV1().Secrets(s.node.Namespace).Delete(s.ctx(), s.node.SecretName(), metav1.DeleteOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *scenario) manifest() Manifest {
	s.t.Helper()
	m, err := TakeManifest(s.node.PKIDir(), s.secretData())
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

func (s *scenario) backupDir() string { return s.node.PKIDir() + ".old" }

func (s *scenario) read(rel string) []byte {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.node.PKIDir(), filepath.FromSlash(rel)))
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// boot starts the pod and requires the control plane to serve; it is stopped at the end of the
// test (or by the caller).
func (s *scenario) boot() *ControlPlane {
	s.t.Helper()
	s.boots++
	cp, err := s.node.Boot(s.ctx(), bootTimeout)
	if err != nil {
		var be *BootError
		errors.As(err, &be)
		recordBoot(s.t, fmt.Sprintf("boot %d FAILED after %s (expected to serve)", s.boots, took(be)))
		s.t.Fatalf("boot %d: the control plane did not come up: %v\n(model trace and process logs: %s)", s.boots, err, s.node.LogDir)
	}
	s.t.Cleanup(cp.Stop)
	recordBoot(s.t, fmt.Sprintf("boot %d serves: /readyz ok %s after the pod start (waited %s for a slot)",
		s.boots, cp.Took.Round(10*time.Millisecond), cp.Waited.Round(10*time.Millisecond)))
	s.t.Logf("boot %d: control plane serves, /readyz ok after %s", s.boots, cp.Took.Round(10*time.Millisecond))
	return cp
}

// bootFails starts the pod and requires it not to serve, with want in the error.
func (s *scenario) bootFails(want string) *BootError {
	s.t.Helper()
	s.boots++
	cp, err := s.node.Boot(s.ctx(), bootTimeout)
	if err == nil {
		cp.Stop()
		recordBoot(s.t, fmt.Sprintf("boot %d SERVED (expected to fail)", s.boots))
		s.t.Fatalf("boot %d: the control plane came up, but it must fail with %q", s.boots, want)
	}
	var be *BootError
	if !errors.As(err, &be) {
		s.t.Fatalf("boot %d: %v", s.boots, err)
	}
	if !strings.Contains(err.Error(), want) {
		s.t.Fatalf("boot %d failed, but not with %q: %v", s.boots, want, err)
	}
	recordBoot(s.t, fmt.Sprintf("boot %d fails as expected after %s: %s", s.boots, took(be), be.Stage))
	s.t.Logf("boot %d: fails as expected after %s: %v", s.boots, took(be), firstLine(err.Error()))
	return be
}

func took(be *BootError) time.Duration {
	if be == nil {
		return 0
	}
	return be.Took.Round(10 * time.Millisecond)
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

// cgResult is one run of the certguard binary.
type cgResult struct {
	Stdout, Stderr string
	Code           int
	Killed         bool // ended by SIGKILL
	Outcome        *pki.Outcome
}

// certguard runs `certguard repair` against the scenario, as the init container would, with the
// scenario's own kubeconfig; extra are more flags, envs are more environment variables.
func (s *scenario) certguard(bin string, envs []string, extra ...string) cgResult {
	s.t.Helper()
	args := append([]string{"repair", "--pki-dir=" + s.node.PKIDir(), "--vcluster-name=" + release,
		"--namespace=" + s.node.Namespace, "--kubeconfig=" + s.kubeconfig, "--pod-name=" + release + "-0",
		"--api-timeout=10s", "-o", "json"}, extra...)
	ctx, cancel := context.WithTimeout(s.ctx(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CERTGUARD_") && !strings.HasPrefix(e, "KUBECONFIG=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, envs...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cgResult{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.Killed = true
		}
	default:
		s.t.Fatalf("run certguard: %v", err)
	}
	if strings.TrimSpace(r.Stdout) != "" {
		var o pki.Outcome
		if err := json.Unmarshal(out.Bytes(), &o); err == nil {
			r.Outcome = &o
		}
	}
	return r
}

// repair runs the release binary and requires exit code want.
func (s *scenario) repair(want int, extra ...string) cgResult {
	s.t.Helper()
	r := s.certguard(certguardBin, nil, extra...)
	if r.Code != want || r.Killed {
		s.t.Fatalf("certguard repair exited %d (killed: %v), want %d\nstderr:\n%s", r.Code, r.Killed, want, r.Stderr)
	}
	return r
}

func decision(r cgResult) pki.Decision {
	if r.Outcome == nil {
		return ""
	}
	return r.Outcome.Plan.Decision
}

// clientFor is a client for the virtual cluster with other credentials than admin.conf's, TLS
// still verified against ca.crt.
func clientFor(t *testing.T, pkiDir string, mod func(*rest.Config)) *kubernetes.Clientset {
	t.Helper()
	admin, err := AdminConfig(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: admin.Host, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}, Timeout: 10 * time.Second}
	mod(cfg)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// whoami asks the virtual apiserver who the client is (SelfSubjectReview): proof that its
// credentials authenticate.
func whoami(cs kubernetes.Interface) (authnv1.UserInfo, error) {
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authnv1.UserInfo{}, err
	}
	return r.Status.UserInfo, nil
}

// k0sLeafTable is what k0s's Certificates.Init issues under ca.crt (CN, O), for tests that lay
// out k0s leaves of another age next to an existing CA.
var k0sLeafTable = []struct{ name, cn, o string }{
	{"server", "kubernetes", "kubernetes"},
	{"k0s-api", "k0s-api", "kubernetes"},
	{"admin", "kubernetes-admin", "system:masters"},
	{"scheduler", "system:kube-scheduler", "system:kube-scheduler"},
	{"ccm", "system:kube-controller-manager", "system:kube-controller-manager"},
	{"konnectivity", "kubernetes-konnectivity", "system:masters"},
}

// issueK0sLeaves signs the 14 K0sFiles with p's CA, issued at issued for a year, the way k0s
// does.
func issueK0sLeaves(t *testing.T, p *pkigen.PKI, issued time.Time) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, l := range k0sLeafTable {
		leaf := pkigen.Leaf{CN: []string{l.cn}, O: []string{l.o}, Server: true, Client: true, Issued: issued, Lifetime: pkigen.Year}
		if l.name == "server" || l.name == "k0s-api" {
			leaf.Hosts = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
			leaf.IPs = []net.IP{net.ParseIP("127.0.0.1")}
		}
		crt, key, err := p.Issue(p.CAs["ca"], leaf)
		if err != nil {
			t.Fatal(err)
		}
		out[l.name+".crt"], out[l.name+".key"] = crt, key
		if l.name == "ccm" || l.name == "konnectivity" {
			out[l.name+".conf"] = pkigen.Kubeconfig("https://localhost:6443", p.Files["ca.crt"], crt, key)
		}
	}
	if len(out) != len(K0sFiles) {
		t.Fatalf("issueK0sLeaves made %d files, want %d", len(out), len(K0sFiles))
	}
	return out
}

func cert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	c, err := parseCert(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// findings joins a plan's findings for a log line.
func findings(fs []pki.Finding) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.Text
	}
	return strings.Join(s, "; ")
}
