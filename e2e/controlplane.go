package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// cipherSuites is k0s's constant.AllowedTLS12CipherSuiteNames() (pkg/constant/constant.go,
// v1.30.2), which k0s passes to etcd (--cipher-suites) and kube-apiserver (--tls-cipher-suites).
var cipherSuites = strings.Join([]string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}, ",")

// Ports are the three listeners of one virtual control plane. k0s uses 2379, 2380 and 6443; the
// harness picks free loopback ports so that several control planes run at once.
type Ports struct {
	EtcdClient, EtcdPeer, APIServer int
}

var (
	portsMu sync.Mutex
	given   = map[int]bool{} // never hand out the same port twice in one test process
)

// freePorts asks the kernel for free ports on 127.0.0.1.
func freePorts() (Ports, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var out []int
	var hold []net.Listener
	defer func() {
		for _, l := range hold {
			l.Close()
		}
	}()
	for len(out) < 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return Ports{}, err
		}
		hold = append(hold, l)
		p := l.Addr().(*net.TCPAddr).Port
		if !given[p] {
			given[p] = true
			out = append(out, p)
		}
	}
	return Ports{EtcdClient: out[0], EtcdPeer: out[1], APIServer: out[2]}, nil
}

// etcdArgs are the flags k0s v1.30.2 gives etcd (pkg/component/controller/etcd.go Etcd.Start),
// with vcluster's k0s config (no storage section: k0s's default etcd) and the peer address on
// loopback. Differences: free ports instead of 2379/2380, --log-level=warn instead of k0s's
// info to keep the logs short.
func etcdArgs(dataDir string, p Ports) []string {
	pki := filepath.Join(dataDir, "pki")
	etcdPKI := filepath.Join(pki, "etcd")
	name, _ := os.Hostname()
	client := fmt.Sprintf("https://127.0.0.1:%d", p.EtcdClient)
	peer := fmt.Sprintf("https://127.0.0.1:%d", p.EtcdPeer)
	args := []string{
		"--data-dir=" + filepath.Join(dataDir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--client-cert-auth=true",
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--name=" + name,
		"--tls-min-version=TLS1.2",
		"--trusted-ca-file=" + filepath.Join(etcdPKI, "ca.crt"),
		"--cert-file=" + filepath.Join(etcdPKI, "server.crt"),
		"--key-file=" + filepath.Join(etcdPKI, "server.key"),
		"--peer-trusted-ca-file=" + filepath.Join(etcdPKI, "ca.crt"),
		"--peer-key-file=" + filepath.Join(etcdPKI, "peer.key"),
		"--peer-cert-file=" + filepath.Join(etcdPKI, "peer.crt"),
		"--log-level=warn",
		"--peer-client-cert-auth=true",
		"--enable-pprof=false",
		"--cipher-suites=" + cipherSuites,
	}
	// k0s adds the JWT auth token only when both files exist after setupCerts, which creates
	// them (CreateKeyPair("etcd/jwt")): in practice always.
	jwtKey, jwtPub := filepath.Join(etcdPKI, "jwt.key"), filepath.Join(etcdPKI, "jwt.pub")
	if exists(jwtKey) && exists(jwtPub) {
		args = append(args, fmt.Sprintf("--auth-token=jwt,pub-key=%s,priv-key=%s,sign-method=RS512,ttl=10m", jwtPub, jwtKey))
	}
	return args
}

// apiServerArgs are the flags k0s v1.30.2 gives kube-apiserver (pkg/component/controller/
// apiserver.go APIServer.Start and getEtcdArgs, apiDefaultArgs), with the api.extraArgs of
// vcluster v0.25's k0s config (pkg/k0s/k0s.go: bind-address 127.0.0.1, enable-admission-plugins
// NodeRestriction, endpoint-reconciler-type none) and konnectivity disabled (vcluster's
// --disable-components). Differences: a free port instead of 6443, advertise-address 127.0.0.1
// instead of the pod IP.
func apiServerArgs(dataDir string, p Ports) []string {
	pki := filepath.Join(dataDir, "pki")
	f := func(name string) string { return filepath.Join(pki, name) }
	return []string{
		"--advertise-address=127.0.0.1",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", p.APIServer),
		"--authorization-mode=Node,RBAC",
		"--client-ca-file=" + f("ca.crt"),
		"--enable-bootstrap-token-auth=true",
		"--kubelet-client-certificate=" + f("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + f("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--proxy-client-cert-file=" + f("front-proxy-client.crt"),
		"--proxy-client-key-file=" + f("front-proxy-client.key"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-client-ca-file=" + f("front-proxy-ca.crt"),
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--service-account-key-file=" + f("sa.pub"),
		"--service-cluster-ip-range=10.96.0.0/12",
		"--tls-min-version=VersionTLS12",
		"--tls-cert-file=" + f("server.crt"),
		"--tls-private-key-file=" + f("server.key"),
		"--tls-cipher-suites=" + cipherSuites,
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-jwks-uri=https://kubernetes.default.svc/openid/v1/jwks",
		"--api-audiences=https://kubernetes.default.svc",
		"--profiling=false",
		"--v=1",
		"--kubelet-certificate-authority=" + f("ca.crt"),
		"--enable-admission-plugins=NodeRestriction",
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--anonymous-auth=false",
		fmt.Sprintf("--etcd-servers=https://127.0.0.1:%d", p.EtcdClient),
		"--etcd-cafile=" + filepath.Join(pki, "etcd", "ca.crt"),
		"--etcd-certfile=" + f("apiserver-etcd-client.crt"),
		"--etcd-keyfile=" + f("apiserver-etcd-client.key"),
	}
}

// proc is one running binary.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(bin, logFile string, args []string) (*proc, error) {
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// The control plane dies with the test binary, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &proc{name: filepath.Base(bin), cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) kill() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last lines of the process's log, for error messages.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// isX509 reports a certificate verification failure: the error a client of the real system sees
// (and keeps seeing: no file changes during one boot of the model).
func isX509(err error) bool {
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var cv *tls.CertificateVerificationError
	return errors.As(err, &inv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &cv) ||
		strings.Contains(err.Error(), "x509: ")
}

// waitReady polls check until it returns nil, the deadline passes, a process exits, or the same
// x509 verification error has persisted for x509Grace (the certificates do not change while
// the processes run, so it never goes away: k0s would give up after ~120 s). It returns the
// last error.
func waitReady(ctx context.Context, deadline time.Time, procs []*proc, check func(context.Context) error) error {
	const x509Grace = 3 * time.Second
	var firstX509 time.Time
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if isX509(err) {
			if firstX509.IsZero() {
				firstX509 = time.Now()
			} else if time.Since(firstX509) >= x509Grace {
				return err
			}
		} else {
			firstX509 = time.Time{}
		}
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("%s exited (%v): %w; log tail:\n%s", p.name, p.err, err, p.tail(15))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within the boot timeout: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// etcdHealth is k0s's Etcd.Ready (pkg/etcd/health.go CheckEtcdReady): a client with the
// apiserver-etcd-client certificate, verifying etcd's certificate against etcd/ca.crt, asks
// etcd's /health.
func etcdHealth(pkiDir string, port int) func(context.Context) error {
	return func(ctx context.Context) error {
		cert, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, "apiserver-etcd-client.crt"), filepath.Join(pkiDir, "apiserver-etcd-client.key"))
		if err != nil {
			return err
		}
		ca, err := os.ReadFile(filepath.Join(pkiDir, "etcd", "ca.crt"))
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/health", port), nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"health":"true"`)) {
			return fmt.Errorf("etcd /health: %d %s", resp.StatusCode, bytes.TrimSpace(body))
		}
		return nil
	}
}

// AdminConfig is a client for the virtual cluster made from the data dir's own admin.conf, as
// k0s writes it: TLS verified against the CA embedded there, which must be ca.crt.
func AdminConfig(pkiDir string) (*rest.Config, error) {
	kc, err := os.ReadFile(filepath.Join(pkiDir, "admin.conf"))
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return nil, fmt.Errorf("admin.conf: %w", err)
	}
	ca, err := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(cfg.CAData, ca) || cfg.Insecure {
		return nil, errors.New("admin.conf does not verify the server against ca.crt")
	}
	cfg.Timeout = 5 * time.Second
	return cfg, nil
}

// apiReady asks /readyz with admin.conf's client.
func apiReady(pkiDir string) func(context.Context) error {
	return func(ctx context.Context) error {
		cfg, err := AdminConfig(pkiDir)
		if err != nil {
			return err
		}
		tr, err := rest.TransportFor(cfg)
		if err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/readyz", nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /readyz: %s: %s", resp.Status, bytes.TrimSpace(body))
		}
		return nil
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
