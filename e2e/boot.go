package e2e

// This file is the boot model: what one start of a vcluster v0.25 pod with the k0s distro does
// to /data/k0s/pki and to the Secret <release>-certs before the control plane serves. Each rule
// is a function named after the upstream code it mirrors, with the upstream file and function
// in its comment. Sources: loft-sh/vcluster v0.25.0 (f82ff4096) and k0sproject/k0s
// v1.30.2+k0s.0 (the k0s image vcluster v0.20–v0.25 ships). k0s itself cannot be used here (the
// Go module proxy refuses it), so its certificate manager is re-implemented; the etcd and
// kube-apiserver it would start are the real binaries, started with k0s's flags
// (controlplane.go).
//
// The order of one start (vcluster pkg/setup/initialize.go initialize, k0s distro):
//
//  1. vcluster EnsureCerts: Secret → disk, or disk → Secret, or a new PKI.
//  2. vcluster starts k0s in a goroutine and calls UpdateSecretWithK0sCerts, whose
//     waitForK0sFiles returns at its first look when the 14 K0sFiles already exist on disk
//     (they were just downloaded from the Secret): that look happens before the k0s process
//     has started, so the files it compares are the downloaded ones. When some are missing it
//     waits until k0s has written them.
//  3. k0s's certificate manager (Certificates.Init, then Etcd.setupCerts when etcd starts).
//  4. UpdateSecretWithK0sCerts compares or adds the K0sFiles. An error cancels k0s and
//     initialize() is retried (every 5 s for 2 min upstream: maxInitAttempts, run back to back;
//     the time is counted, not waited). EnsureCerts can fail too: its certificate walk on the
//     shouldUpdate path depends on Go's map order (syncer.go), so each attempt is a coin flip.
//  5. k0s starts etcd, waits until it is healthy, starts kube-apiserver, waits for /readyz
//     (pkg/component/manager Manager.Start: each component is started, then waited for).
//
// Not modelled: vcluster's kubeadm-made certificates are ECDSA here (pkigen) and k0s's are too
// (cfssl makes RSA-2048); vcluster's embedded etcd and kine; k0s's own API (k0s-api.crt is made
// but nothing serves it); the controller-manager and scheduler (disabled or unused by the
// readiness check); the race in which k0s rewrites the kubeconfigs before
// waitForK0sFiles reads them (research §6: 0–7 retries, then it passes).

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certguard/certguard/pki/pkigen"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// certMap is vcluster's pkg/certs/constants.go certMap (v0.25): disk path → Secret key.
var certMap = map[string]string{
	"admin.conf": "admin.conf", "controller-manager.conf": "controller-manager.conf", "scheduler.conf": "scheduler.conf",
	"apiserver.crt": "apiserver.crt", "apiserver.key": "apiserver.key",
	"apiserver-etcd-client.crt": "apiserver-etcd-client.crt", "apiserver-etcd-client.key": "apiserver-etcd-client.key",
	"apiserver-kubelet-client.crt": "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key": "apiserver-kubelet-client.key",
	"ca.crt": "ca.crt", "ca.key": "ca.key",
	"server-ca.crt": "server-ca.crt", "server-ca.key": "server-ca.key",
	"client-ca.crt": "client-ca.crt", "client-ca.key": "client-ca.key",
	"front-proxy-ca.crt": "front-proxy-ca.crt", "front-proxy-ca.key": "front-proxy-ca.key",
	"front-proxy-client.crt": "front-proxy-client.crt", "front-proxy-client.key": "front-proxy-client.key",
	"sa.key": "sa.key", "sa.pub": "sa.pub",
	"etcd/ca.crt": "etcd-ca.crt", "etcd/ca.key": "etcd-ca.key",
	"etcd/healthcheck-client.crt": "etcd-healthcheck-client.crt", "etcd/healthcheck-client.key": "etcd-healthcheck-client.key",
	"etcd/peer.crt": "etcd-peer.crt", "etcd/peer.key": "etcd-peer.key",
	"etcd/server.crt": "etcd-server.crt", "etcd/server.key": "etcd-server.key",
}

// K0sFiles is vcluster's pkg/certs/constants.go K0sFiles: what UpdateSecretWithK0sCerts copies
// into the Secret after k0s has started.
var K0sFiles = []string{
	"admin.crt", "admin.key", "ccm.conf", "ccm.crt", "ccm.key", "k0s-api.crt", "k0s-api.key",
	"konnectivity.conf", "konnectivity.crt", "konnectivity.key", "scheduler.crt", "scheduler.key",
	"server.crt", "server.key",
}

const (
	// maxInitAttempts bounds the model's retries of initialize() as upstream does: every 5 s
	// for 2 min (syncer.go). The attempts run back to back; the 5 s are counted, not waited.
	maxInitAttempts = int(syncerInitTimeout / syncerRetryInterval)
	// k0sLeafLifetime is cfssl's DefaultConfig expiry (k0s signs with profile "kubernetes", which
	// its policy lacks): 8760h.
	k0sLeafLifetime = 8760 * time.Hour
	// k0sCALifetime is EnsureCA's csr.CAConfig Expiry.
	k0sCALifetime = 87600 * time.Hour
	// vclusterLocalServer is what vcluster's updateKubeconfigToLocalhost writes into every
	// *.conf of the Secret.
	vclusterLocalServer = "https://127.0.0.1:6443"
)

// K0sRelease names a k0s release the model can run: the rules differ in isManagedByK0s only.
type K0sRelease string

const (
	// K0sV1302 is k0s v1.30.2+k0s.0, the k0s of vcluster v0.20–v0.25 (the zero value).
	K0sV1302 K0sRelease = ""
	// K0sV1351 is k0s v1.35.1+k0s.0, the first that renews leaves under a CA it did not make
	// (k0sproject/k0s e9260d20, #6378); image tag v1.35.1-k0s.0.
	K0sV1351 K0sRelease = "v1.35.1+k0s.0"
)

// Node is one vcluster pod's persistent state: its data volume (/data/k0s) and the Secret in the
// host namespace, plus what it needs to run the real binaries.
type Node struct {
	Host      kubernetes.Interface
	Namespace string
	Release   string
	// DataDir is the k0s data dir, <tmp>/data/k0s; the PKI is in DataDir/pki.
	DataDir string
	// Assets holds the etcd and kube-apiserver binaries.
	Assets string
	// LogDir receives the processes' logs and the model's trace, one file set per boot.
	LogDir string

	// CAOrder, when set, orders vcluster's CreateTree walk instead of Go's map order (syncer.go).
	CAOrder CAOrder

	// K0s is the k0s release whose certificate manager the boot runs: K0sV1302 (the default,
	// vcluster v0.20–v0.25's k0s) or K0sV1351.
	K0s K0sRelease

	mu    sync.Mutex
	boots int
	trace *os.File
}

// PKIDir is /data/k0s/pki.
func (n *Node) PKIDir() string { return filepath.Join(n.DataDir, "pki") }

// SecretName is vcluster's CertSecretName.
func (n *Node) SecretName() string { return n.Release + "-certs" }

func (n *Node) tracef(format string, a ...any) {
	if n.trace != nil {
		fmt.Fprintf(n.trace, time.Now().UTC().Format("15:04:05.000 ")+format+"\n", a...)
	}
}

// BootError says at which point of a start the control plane failed to come up.
type BootError struct {
	Stage string
	Err   error
	// Took is the time from the pod's start to the failure.
	Took time.Duration
}

func (e *BootError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *BootError) Unwrap() error { return e.Err }

// ControlPlane is a running etcd + kube-apiserver of one boot.
type ControlPlane struct {
	Ports  Ports
	PKIDir string
	Took   time.Duration // from the pod's start (EnsureCerts) to /readyz ok
	Waited time.Duration // spent waiting for a boot slot before that
	// Attempts is how many times vcluster's initialize() ran: 1 unless UpdateSecretWithK0sCerts
	// (or EnsureCerts) failed and it was retried.
	Attempts int
	etcd     *proc
	api      *proc
	release  func()
}

// Stop kills the processes (as a pod deletion would) and frees the boot slot.
func (c *ControlPlane) Stop() {
	if c == nil {
		return
	}
	c.api.kill()
	c.etcd.kill()
	if c.release != nil {
		c.release()
		c.release = nil
	}
}

// Boot runs one pod start: the vcluster and k0s certificate rules on the data dir and the Secret,
// then the real etcd and kube-apiserver with k0s's flags, until /readyz answers through the data
// dir's admin.conf. On success the control plane keeps running until Stop; on failure nothing
// runs and the error (a *BootError) carries what a client saw.
func (n *Node) Boot(ctx context.Context, timeout time.Duration) (_ *ControlPlane, err error) {
	waitStart := time.Now()
	release, err := acquireBootSlot(ctx)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{PKIDir: n.PKIDir(), release: release, Waited: time.Since(waitStart)}
	n.mu.Lock()
	n.boots++
	nr := n.boots
	n.mu.Unlock()
	if err := os.MkdirAll(n.LogDir, 0o700); err != nil {
		release()
		return nil, err
	}
	if n.trace, err = os.Create(filepath.Join(n.LogDir, fmt.Sprintf("boot-%d-model.log", nr))); err != nil {
		release()
		return nil, err
	}
	defer func() { n.trace.Close(); n.trace = nil }()
	start := time.Now()
	defer func() {
		if err != nil {
			cp.Stop()
			var be *BootError
			if !errors.As(err, &be) {
				be = &BootError{Stage: "boot", Err: err}
				err = be
			}
			be.Took = time.Since(start)
			n.tracef("boot failed after %s: %v", be.Took, err)
		}
	}()
	deadline := start.Add(timeout)
	if cp.Ports, err = freePorts(); err != nil {
		return nil, err
	}
	if cp.Attempts, err = n.initialize(ctx, cp.Ports.APIServer); err != nil {
		return nil, err
	}

	// k0s pkg/component/manager Manager.Start: etcd, wait until Ready, then kube-apiserver.
	bin := func(name string) string { return filepath.Join(n.Assets, name) }
	logf := func(name string) string { return filepath.Join(n.LogDir, fmt.Sprintf("boot-%d-%s.log", nr, name)) }
	if cp.etcd, err = startProc(bin("etcd"), logf("etcd"), etcdArgs(n.DataDir, cp.Ports)); err != nil {
		return nil, &BootError{Stage: "start etcd", Err: err}
	}
	if err := waitReady(ctx, deadline, []*proc{cp.etcd}, etcdHealth(n.PKIDir(), cp.Ports.EtcdClient)); err != nil {
		return nil, &BootError{Stage: "etcd health (k0s Etcd.Ready, apiserver-etcd-client.crt against etcd/ca.crt)", Err: err}
	}
	if cp.api, err = startProc(bin("kube-apiserver"), logf("kube-apiserver"), apiServerArgs(n.DataDir, cp.Ports)); err != nil {
		return nil, &BootError{Stage: "start kube-apiserver", Err: err}
	}
	if err := waitReady(ctx, deadline, []*proc{cp.etcd, cp.api}, apiReady(n.PKIDir())); err != nil {
		return nil, &BootError{Stage: "kube-apiserver /readyz with pki/admin.conf", Err: err}
	}
	cp.Took = time.Since(start)
	n.tracef("ready after %s", cp.Took)
	return cp, nil
}

// initialize mirrors vcluster pkg/setup/initialize.go initialize (k0s branch) and its retry in
// Initialize (wait.PollUntilContextTimeout), with k0s's certificate manager where upstream
// starts k0s.
func (n *Node) initialize(ctx context.Context, apiPort int) (attempts int, err error) {
	for attempts = 1; ; attempts++ {
		err = n.initializeOnce(ctx, apiPort)
		if err == nil || attempts == maxInitAttempts {
			return attempts, err
		}
		n.tracef("initialize attempt %d failed: %v", attempts, err)
	}
}

func (n *Node) initializeOnce(ctx context.Context, apiPort int) error {
	if err := n.EnsureCerts(ctx); err != nil {
		return &BootError{Stage: "vcluster EnsureCerts", Err: fmt.Errorf("ensure certs: %w", err)}
	}
	// waitForK0sFiles' first look, before the k0s process is up.
	early, err := waitForK0sFilesFirstLook(n.PKIDir())
	if err != nil {
		return &BootError{Stage: "vcluster waitForK0sFiles", Err: err}
	}
	if err := n.k0sCertificatesInit(apiPort); err != nil {
		return &BootError{Stage: "k0s Certificates.Init", Err: err}
	}
	if err := n.k0sEtcdSetupCerts(); err != nil {
		return &BootError{Stage: "k0s Etcd.setupCerts", Err: fmt.Errorf("failed to create etcd certs: %w", err)}
	}
	files := early
	if files == nil {
		if files, err = readK0sFiles(n.PKIDir()); err != nil {
			return &BootError{Stage: "vcluster waitForK0sFiles", Err: err}
		}
	}
	if err := n.UpdateSecretWithK0sCerts(ctx, files); err != nil {
		return &BootError{Stage: "vcluster UpdateSecretWithK0sCerts", Err: err}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// vcluster v0.25

// EnsureCerts mirrors vcluster pkg/certs/ensure.go EnsureCerts:
//   - the Secret exists: downloadCertsFromSecret writes every key over the disk; if a *.conf in
//     it does not point at https://127.0.0.1:6443, updateKubeconfigInSecret rewrites it, apiserver.{crt,key}
//     are made anew, the Secret is updated and downloaded again;
//   - otherwise (any error of the GET, as upstream), when ca.key is absent, generateCertificates
//     makes a whole new PKI; then the Secret is built from the disk: every certMap file (an error
//     if one is missing) plus extraFiles (every other top-level file), created, and downloaded.
func (n *Node) EnsureCerts(ctx context.Context) error {
	dir := n.PKIDir()
	secrets := n.Host.CoreV1().Secrets(n.Namespace)
	secret, err := secrets.Get(ctx, n.SecretName(), metav1.GetOptions{})
	if err == nil {
		n.tracef("EnsureCerts: Secret %s present (%d keys): downloading over the disk", n.SecretName(), len(secret.Data))
		if err := downloadCertsFromSecret(secret, dir); err != nil {
			return err
		}
		shouldUpdate, err := updateKubeconfigInSecret(secret)
		if err != nil {
			return err
		}
		if !shouldUpdate {
			return nil
		}
		n.tracef("EnsureCerts: a *.conf in the Secret is not %s: removing outdated certs (apiserver.{crt,key})", vclusterLocalServer)
		for _, f := range []string{"apiserver.crt", "apiserver.key"} {
			if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if err := n.createPKIAssets(dir); err != nil {
			n.tracef("EnsureCerts: create pki assets err: %v", err) // ignored upstream too (logged at V(1))
		}
		for _, f := range []string{"apiserver.crt", "apiserver.key"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return err
			}
			secret.Data[f] = b
		}
		if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
			return err
		}
		return downloadCertsFromSecret(secret, dir)
	}
	n.tracef("EnsureCerts: Secret %s not readable (%v)", n.SecretName(), err)

	if _, err := os.Stat(filepath.Join(dir, "ca.key")); errors.Is(err, fs.ErrNotExist) {
		n.tracef("EnsureCerts: no ca.key: generateCertificates (a new PKI)")
		if err := generateCertificates(dir, n.Release); err != nil {
			return err
		}
	} else {
		n.tracef("EnsureCerts: ca.key present: building the Secret from the disk files")
	}
	secret = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: n.SecretName(), Namespace: n.Namespace,
			Labels: map[string]string{"app": "vcluster", "vcluster-name": n.Release}},
		Data: map[string][]byte{},
	}
	for from, to := range certMap {
		data, err := os.ReadFile(filepath.Join(dir, from))
		if err != nil {
			return fmt.Errorf("read %s: %w", from, err)
		}
		secret.Data[to] = data
	}
	extra, err := extraFiles(dir)
	if err != nil {
		return fmt.Errorf("read extra file: %w", err)
	}
	maps.Copy(secret.Data, extra)
	created, err := secrets.Create(ctx, secret, metav1.CreateOptions{})
	if err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create certs secret: %w", err)
		}
		if created, err = secrets.Get(ctx, n.SecretName(), metav1.GetOptions{}); err != nil {
			return fmt.Errorf("retrieve certs secret: %w", err)
		}
	}
	n.tracef("EnsureCerts: created Secret %s with %d keys (%d extra files)", n.SecretName(), len(created.Data), len(extra))
	return downloadCertsFromSecret(created, dir)
}

// downloadCertsFromSecret mirrors vcluster pkg/certs/ensure.go downloadCertsFromSecret: every
// key is written to the disk (certMap keys under their file name, etcd-x → etcd/x; any other key
// under its own name), mode 0666, then splitCACert.
func downloadCertsFromSecret(secret *corev1.Secret, dir string) error {
	byKey := map[string]string{}
	for file, key := range certMap {
		byKey[key] = file
	}
	for key, data := range secret.Data {
		name := key
		if file, ok := byKey[key]; ok {
			if len(data) == 0 {
				return fmt.Errorf("secret is missing %s", key)
			}
			name = file
		}
		name = filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(name), 0o777); err != nil {
			return fmt.Errorf("create directory %s", filepath.Dir(name))
		}
		if err := os.WriteFile(name, data, 0o666); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := splitCACert(dir); err != nil {
		return fmt.Errorf("split ca cert: %w", err)
	}
	return nil
}

// splitCACert mirrors vcluster pkg/certs/ensure.go splitCACert: server-ca.* and client-ca.* are
// copies of ca.*, written when missing.
func splitCACert(dir string) error {
	for _, c := range [][2]string{
		{"ca.crt", "server-ca.crt"}, {"ca.key", "server-ca.key"}, {"ca.crt", "client-ca.crt"}, {"ca.key", "client-ca.key"},
	} {
		dst := filepath.Join(dir, c[1])
		if _, err := os.Stat(dst); !os.IsNotExist(err) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, c[0]))
		if err != nil {
			return fmt.Errorf("copy %s: read %s: %w", c[1], filepath.Join(dir, c[0]), err)
		}
		if err := os.WriteFile(dst, b, 0o666); err != nil {
			return fmt.Errorf("copy %s: %w", c[1], err)
		}
	}
	return nil
}

// extraFiles mirrors vcluster pkg/certs/ensure.go extraFiles: every top-level regular file that
// is not a certMap key (subdirectories are skipped).
func extraFiles(dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if _, ok := certMap[e.Name()]; !ok {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			out[e.Name()] = b
		}
	}
	return out, nil
}

// updateKubeconfigInSecret mirrors vcluster pkg/certs/ensure.go updateKubeconfigInSecret and
// updateKubeconfigToLocalhost: every *.conf key whose cluster server is not
// https://127.0.0.1:6443 is rewritten to it (in the Secret object, saved by the caller).
func updateKubeconfigInSecret(secret *corev1.Secret) (bool, error) {
	should := false
	for _, k := range slices.Sorted(maps.Keys(secret.Data)) {
		if !strings.HasSuffix(k, ".conf") {
			continue
		}
		cfg, err := clientcmd.Load(secret.Data[k])
		if err != nil {
			return false, err
		}
		changed := false
		for _, c := range cfg.Clusters {
			if c != nil && c.Server != vclusterLocalServer {
				c.Server = vclusterLocalServer
				changed = true
			}
		}
		if !changed {
			continue
		}
		should = true
		b, err := clientcmd.Write(*cfg)
		if err != nil {
			return false, err
		}
		secret.Data[k] = b
	}
	return should, nil
}

// createAPIServerCert is what vcluster's CreatePKIAssets (pkg/certs, vendored kubeadm certs
// phase) makes on this path when its walk reaches the ca branch (createPKIAssets, syncer.go):
// apiserver.{crt,key} were just removed, so a new 10-year kube-apiserver certificate is signed
// by ca.crt.
func (n *Node) createAPIServerCert(dir string) error {
	ca, err := loadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		return err
	}
	var signer pkigen.PKI
	crt, key, err := signer.Issue(ca, pkigen.Leaf{
		CN:     []string{"kube-apiserver"},
		Hosts:  []string{n.Release, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		IPs:    []net.IP{net.ParseIP("10.96.0.1"), net.ParseIP("127.0.0.1"), net.ParseIP("0.0.0.0")},
		Server: true, Issued: time.Now(), Lifetime: 10 * pkigen.Year,
	})
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, "apiserver.key"), key, 0o600); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "apiserver.crt"), crt, 0o644)
}

// generateCertificates mirrors vcluster pkg/certs/ensure.go generateCertificates: CreatePKIAssets
// (CA "kubernetes", front-proxy-ca, etcd-ca, their 10-year leaves, sa.*),
// CreateJoinControlPlaneKubeConfigFiles (admin.conf, controller-manager.conf, scheduler.conf,
// server https://127.0.0.1:6443) and splitCACert. kubeadm only creates what is missing, so
// files already on disk are kept. The certificates come from pkigen, which lays out the same
// files; k0s's leaves are not vcluster's and are left out.
func generateCertificates(dir, release string) error {
	now := time.Now()
	p, err := pkigen.Generate(pkigen.Options{Now: now, CAIssued: now, K0sIssued: now, K0sLifetime: 10 * pkigen.Year,
		Server: vclusterLocalServer, Hosts: []string{release}})
	if err != nil {
		return fmt.Errorf("create pki assets: %w", err)
	}
	files := map[string][]byte{}
	for path, b := range p.Files {
		if slices.Contains(K0sFiles, path) || exists(filepath.Join(dir, filepath.FromSlash(path))) {
			continue
		}
		files[path] = b
	}
	if err := pkigen.WriteDir(dir, files); err != nil {
		return fmt.Errorf("create pki assets: %w", err)
	}
	return splitCACert(dir)
}

// waitForK0sFilesFirstLook is the first iteration of vcluster pkg/setup/initialize.go
// waitForK0sFiles: when all K0sFiles exist it returns them (readK0sFiles); nil means "not yet",
// and UpdateSecretWithK0sCerts reads them after k0s has written them.
func waitForK0sFilesFirstLook(dir string) (map[string][]byte, error) {
	for _, f := range K0sFiles {
		_, err := os.ReadFile(filepath.Join(dir, f))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
	}
	return readK0sFiles(dir)
}

// readK0sFiles mirrors vcluster pkg/setup/initialize.go readK0sFiles.
func readK0sFiles(dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, f := range K0sFiles {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		out[f] = b
	}
	return out, nil
}

// UpdateSecretWithK0sCerts mirrors vcluster pkg/setup/initialize.go UpdateSecretWithK0sCerts: if
// the Secret holds none of the K0sFiles they are added in one Update; if it holds some, they
// must all equal the files (secretIsUpToDate), else it fails and initialize() is retried.
func (n *Node) UpdateSecretWithK0sCerts(ctx context.Context, files map[string][]byte) error {
	secrets := n.Host.CoreV1().Secrets(n.Namespace)
	secret, err := secrets.Get(ctx, n.SecretName(), metav1.GetOptions{})
	if err != nil {
		return err
	} else if secret.Data == nil {
		return errors.New("error while trying to update the secret, data was empty, will try to fetch it again")
	}
	if secretContainsK0sCerts(secret) {
		if secretIsUpToDate(secret, files) {
			n.tracef("UpdateSecretWithK0sCerts: the Secret already holds the k0s files, up to date")
			return nil
		}
		return errors.New("error while trying to update the secret, it was already updated, will try to fetch it again")
	}
	maps.Copy(secret.Data, files)
	if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		return err
	}
	n.tracef("UpdateSecretWithK0sCerts: added the %d k0s files to the Secret", len(files))
	return nil
}

// secretContainsK0sCerts mirrors vcluster pkg/setup/initialize.go secretContainsK0sCerts.
func secretContainsK0sCerts(secret *corev1.Secret) bool {
	for k := range secret.Data {
		if slices.Contains(K0sFiles, k) {
			return true
		}
	}
	return false
}

// secretIsUpToDate mirrors vcluster pkg/setup/initialize.go secretIsUpToDate.
func secretIsUpToDate(secret *corev1.Secret, files map[string][]byte) bool {
	for name, content := range files {
		if !bytes.Equal(secret.Data[name], content) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------------------------
// k0s v1.30.2

// certReq is k0s pkg/certificate/manager.go Request.
type certReq struct {
	Name, CN, O   string
	CACert, CAKey string
	Hostnames     []string
}

// k0sCertificatesInit mirrors k0s cmd/controller/certificates.go Certificates.Init: the CAs
// ca (kubernetes-ca) and front-proxy-ca, the leaves front-proxy-client, admin, konnectivity,
// ccm, scheduler, apiserver-kubelet-client, server and k0s-api, the sa key pair, and the
// kubeconfigs admin.conf, konnectivity.conf, ccm.conf and scheduler.conf, always rewritten with
// server https://localhost:<api port> and the current certificates. Upstream runs the parts in
// an errgroup; the result does not depend on the order.
func (n *Node) k0sCertificatesInit(apiPort int) error {
	dir := n.PKIDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	if err := n.EnsureCA("ca", "kubernetes-ca"); err != nil {
		return err
	}
	caCert, err := os.ReadFile(p("ca.crt"))
	if err != nil {
		return fmt.Errorf("failed to read ca cert: %w", err)
	}
	url := fmt.Sprintf("https://localhost:%d", apiPort)

	if err := n.EnsureCA("front-proxy-ca", "kubernetes-front-proxy-ca"); err != nil {
		return err
	}
	if _, _, err := n.EnsureCertificate(certReq{Name: "front-proxy-client", CN: "front-proxy-client", O: "front-proxy-client",
		CACert: p("front-proxy-ca.crt"), CAKey: p("front-proxy-ca.key")}); err != nil {
		return err
	}
	ca := func(r certReq) certReq { r.CACert, r.CAKey = p("ca.crt"), p("ca.key"); return r }
	for _, kc := range []struct {
		req  certReq
		conf string
	}{
		{ca(certReq{Name: "admin", CN: "kubernetes-admin", O: "system:masters"}), "admin.conf"},
		{ca(certReq{Name: "konnectivity", CN: "kubernetes-konnectivity", O: "system:masters"}), "konnectivity.conf"},
		{ca(certReq{Name: "ccm", CN: "system:kube-controller-manager", O: "system:kube-controller-manager"}), "ccm.conf"},
		{ca(certReq{Name: "scheduler", CN: "system:kube-scheduler", O: "system:kube-scheduler"}), "scheduler.conf"},
	} {
		crt, key, err := n.EnsureCertificate(kc.req)
		if err != nil {
			return err
		}
		if err := n.kubeConfig(p(kc.conf), url, caCert, crt, key); err != nil {
			return err
		}
		if kc.req.Name == "admin" {
			if err := n.CreateKeyPair("sa"); err != nil {
				return err
			}
		}
	}
	if _, _, err := n.EnsureCertificate(ca(certReq{Name: "apiserver-kubelet-client", CN: "apiserver-kubelet-client", O: "system:masters"})); err != nil {
		return err
	}
	// The server's SANs: k0s's fixed names (including its "kubernetes.svc.<domain>"), localhost's
	// addresses (detectLocalIPs; the hostname's addresses are left out to stay on loopback), the
	// API address (127.0.0.1 here) and the first service IP (InternalAPIAddresses).
	hosts := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster",
		"kubernetes.svc.cluster.local", "localhost", "127.0.0.1", "::1", "10.96.0.1"}
	for _, r := range []certReq{
		ca(certReq{Name: "server", CN: "kubernetes", O: "kubernetes", Hostnames: hosts}),
		ca(certReq{Name: "k0s-api", CN: "k0s-api", O: "kubernetes", Hostnames: hosts}),
	} {
		if _, _, err := n.EnsureCertificate(r); err != nil {
			return err
		}
	}
	return nil
}

// k0sEtcdSetupCerts mirrors k0s pkg/component/controller/etcd.go Etcd.setupCerts: the etcd CA
// (CN etcd-ca, vcluster's too), apiserver-etcd-client, etcd/server, etcd/peer (CN = the peer
// address) and the JWT key pair etcd/jwt.
func (n *Node) k0sEtcdSetupCerts() error {
	dir := n.PKIDir()
	if err := n.EnsureCA("etcd/ca", "etcd-ca"); err != nil {
		return fmt.Errorf("failed to create etcd ca: %w", err)
	}
	caCrt, caKey := filepath.Join(dir, "etcd", "ca.crt"), filepath.Join(dir, "etcd", "ca.key")
	local := []string{"127.0.0.1", "localhost"}
	for _, r := range []certReq{
		{Name: "apiserver-etcd-client", CN: "apiserver-etcd-client", O: "apiserver-etcd-client", Hostnames: local},
		{Name: "etcd/server", CN: "etcd-server", O: "etcd-server", Hostnames: local},
		{Name: "etcd/peer", CN: "127.0.0.1", O: "etcd-peer", Hostnames: []string{"127.0.0.1"}},
	} {
		r.CACert, r.CAKey = caCrt, caKey
		if _, _, err := n.EnsureCertificate(r); err != nil {
			return err
		}
	}
	return n.CreateKeyPair("etcd/jwt")
}

// EnsureCA mirrors k0s pkg/certificate/manager.go Manager.EnsureCA: a CA whose .key and .crt both
// exist is used as it is, expired or not; otherwise a new one is made (over the remaining half).
func (n *Node) EnsureCA(name, cn string) error {
	keyFile, certFile := filepath.Join(n.PKIDir(), name+".key"), filepath.Join(n.PKIDir(), name+".crt")
	if exists(keyFile) && exists(certFile) {
		return nil
	}
	n.tracef("k0s EnsureCA: %s incomplete: new CA %q", name, cn)
	var signer pkigen.PKI
	ca, err := signer.NewCA(cn, time.Now(), k0sCALifetime)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o755); err != nil {
		return err
	}
	if err := writeAtomic(keyFile, pkigen.KeyPEM(ca.Key), 0o640); err != nil {
		return err
	}
	return writeAtomic(certFile, pkigen.CertPEM(ca.Cert), 0o644)
}

// EnsureCertificate mirrors k0s pkg/certificate/manager.go Manager.EnsureCertificate: when
// regenerateCert says so, a new key and a 1-year certificate (cfssl: NotBefore back-dated 5 min,
// usages signing, key encipherment, server auth, client auth) signed by the request's CA are
// written; otherwise the files on disk are read and returned as they are.
func (n *Node) EnsureCertificate(r certReq) (crt, key []byte, err error) {
	keyFile, certFile := filepath.Join(n.PKIDir(), r.Name+".key"), filepath.Join(n.PKIDir(), r.Name+".crt")
	regen, err := n.regenerateCert(keyFile, certFile)
	if err != nil {
		return nil, nil, err
	}
	if regen {
		ca, err := loadCA(r.CACert, r.CAKey)
		if err != nil {
			return nil, nil, err
		}
		leaf := pkigen.Leaf{CN: []string{r.CN}, O: []string{r.O}, Server: true, Client: true, Issued: time.Now(), Lifetime: k0sLeafLifetime}
		for _, h := range uniq(r.Hostnames) {
			if ip := net.ParseIP(h); ip != nil {
				leaf.IPs = append(leaf.IPs, ip)
			} else {
				leaf.Hosts = append(leaf.Hosts, h)
			}
		}
		var signer pkigen.PKI
		crt, key, err := signer.Issue(ca, leaf)
		if err != nil {
			return nil, nil, err
		}
		if err := os.MkdirAll(filepath.Dir(keyFile), 0o755); err != nil {
			return nil, nil, err
		}
		if err := writeAtomic(keyFile, key, 0o640); err != nil {
			return nil, nil, err
		}
		if err := writeAtomic(certFile, crt, 0o644); err != nil {
			return nil, nil, err
		}
		return crt, key, nil
	}
	if crt, err = os.ReadFile(certFile); err != nil {
		return nil, nil, fmt.Errorf("failed to read ca cert %s for %s: %w", certFile, r.Name, err)
	}
	if key, err = os.ReadFile(keyFile); err != nil {
		return nil, nil, fmt.Errorf("failed to read ca key %s for %s: %w", keyFile, r.Name, err)
	}
	return crt, key, nil
}

// regenerateCert mirrors k0s pkg/certificate/manager.go Manager.regenerateCert: true when both
// files are missing, when the certificate cannot be parsed, or when isManagedByK0s. There is no
// expiry check, in any version. From v1.35.1 isManagedByK0s can fail (ca.crt does not parse),
// and then so does the start.
func (n *Node) regenerateCert(keyFile, certFile string) (bool, error) {
	if !exists(keyFile) && !exists(certFile) {
		n.tracef("k0s: %s missing: issuing", rel(n.PKIDir(), certFile))
		return true, nil
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		n.tracef("k0s: unable to parse certificate file at %s: %v", rel(n.PKIDir(), certFile), err)
		return true, nil
	}
	c, err := parseCert(b)
	if err != nil {
		n.tracef("k0s: unable to parse certificate file at %s: %v", rel(n.PKIDir(), certFile), err)
		return true, nil
	}
	managed, err := n.isManagedByK0s(c)
	if err != nil {
		return false, err
	}
	if managed {
		n.tracef("k0s: %s issued by %q (managed by k0s): re-issuing", rel(n.PKIDir(), certFile), c.Issuer.CommonName)
		return true, nil
	}
	n.tracef("k0s: cert regeneration not needed for %s, not managed by k0s: %s (NotAfter %s)",
		rel(n.PKIDir(), certFile), c.Issuer.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
	return false, nil
}

// isManagedByK0s mirrors k0s pkg/certificate/manager.go isManagedByK0s. Up to v1.35.0 it switches
// on the issuer CN alone: kubernetes-ca, kubernetes-front-proxy-ca and etcd-ca are k0s's own.
// From v1.35.1 (commit e9260d20, Node.K0s = K0sV1351) it first parses pki/ca.crt (an error
// fails the start) and also counts a leaf whose issuer CN is ca.crt's subject CN, when
// pki/ca.key exists ("no ca.key found, not renewing" otherwise): vcluster's CA is CN kubernetes,
// so server, k0s-api, admin, scheduler, ccm, konnectivity and apiserver-kubelet-client are
// re-issued at every start.
func (n *Node) isManagedByK0s(c *x509.Certificate) (bool, error) {
	var ca *x509.Certificate
	if n.K0s == K0sV1351 {
		b, err := os.ReadFile(filepath.Join(n.PKIDir(), "ca.crt"))
		if err == nil {
			ca, err = parseCert(b)
		}
		if err != nil {
			return false, fmt.Errorf("unable to parse ca certificate: %w", err)
		}
	}
	switch c.Issuer.CommonName {
	case "kubernetes-ca", "kubernetes-front-proxy-ca", "etcd-ca":
		return true, nil
	}
	if ca != nil && c.Issuer.CommonName == ca.Subject.CommonName {
		if exists(filepath.Join(n.PKIDir(), "ca.key")) {
			return true, nil
		}
		n.tracef("k0s: certificate issued by %q, but no ca.key found, not renewing the certificate %q", ca.Subject.CommonName, c.Subject.CommonName)
	}
	return false, nil
}

// CreateKeyPair mirrors k0s pkg/certificate/manager.go Manager.CreateKeyPair: kept when both
// files exist, else a new RSA-2048 pair (PKCS#1 key, PKIX public key).
func (n *Node) CreateKeyPair(name string) error {
	keyFile, pubFile := filepath.Join(n.PKIDir(), name+".key"), filepath.Join(n.PKIDir(), name+".pub")
	if exists(keyFile) && exists(pubFile) {
		return nil
	}
	n.tracef("k0s CreateKeyPair: %s incomplete: new RSA key pair", name)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o640); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	return writeAtomic(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

// kubeConfig mirrors k0s cmd/controller/certificates.go kubeConfig: cluster "local", context
// "Default", user "user", CA and client certificate embedded; always overwritten.
func (n *Node) kubeConfig(dest, url string, caCert, clientCert, clientKey []byte) error {
	b, err := clientcmd.Write(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"local": {Server: url, CertificateAuthorityData: caCert}},
		Contexts:       map[string]*clientcmdapi.Context{"Default": {Cluster: "local", AuthInfo: "user"}},
		CurrentContext: "Default",
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"user": {ClientCertificateData: clientCert, ClientKeyData: clientKey}},
	})
	if err != nil {
		return err
	}
	return writeAtomic(dest, b, 0o640)
}

// ---------------------------------------------------------------------------------------------
// helpers

func loadCA(certFile, keyFile string) (*pkigen.CA, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	c, err := parseCert(cb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	k, err := parseKey(kb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	return &pkigen.CA{Cert: c, Key: k}, nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, errors.New("no CERTIFICATE block")
		}
		if blk.Type == "CERTIFICATE" {
			return x509.ParseCertificate(blk.Bytes)
		}
	}
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, errors.New("private key does not parse") // never quote key bytes
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key %T", k)
	}
	return s, nil
}

// writeAtomic is k0s's file.WriteContentAtomically: a temp file renamed into place.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp-" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func uniq(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func rel(base, p string) string {
	r, err := filepath.Rel(base, p)
	if err != nil {
		return p
	}
	return r
}

// ---------------------------------------------------------------------------------------------
// boot slots: at most this many control planes run at once (2 cores)

var (
	slotsOnce sync.Once
	slots     chan struct{}
)

// BootSlots is how many control planes may run at once (E2E_BOOTS, default 3).
func BootSlots() int {
	if n, err := strconv.Atoi(os.Getenv("E2E_BOOTS")); err == nil && n > 0 {
		return n
	}
	return 3
}

func acquireBootSlot(ctx context.Context) (func(), error) {
	slotsOnce.Do(func() { slots = make(chan struct{}, BootSlots()) })
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() { once.Do(func() { <-slots }) }, nil
}
