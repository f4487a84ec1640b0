package e2e

// This file models what vcluster's syncer does when a kubeconfig in the Secret does not point at
// https://127.0.0.1:6443 (vcluster v0.19.2–v0.25, pkg/certs/ensure.go EnsureCerts, the
// shouldUpdate branch): it removes apiserver.{crt,key} and calls CreatePKIAssets (pkg/certs,
// vendored from kubeadm's certs phase) to make them again. CreatePKIAssets builds a
// CertificateTree, a Go map from each of the three CAs to its leaves (cert_list.go AsMap →
// CertTree), and CreateTree ranges over it, returning at the first error. A leaf that exists is
// only validated (certs.go writeCertificateFilesIfNotExist): its key must load, its chain must
// verify against the CA at the current time (VerifyCertChain), and it must hold every SAN of its
// config (validateCertificateWithConfig). The etcd leaves k0s re-issues at every start carry
// k0s's SANs (127.0.0.1, localhost), not vcluster's etcd SANs; once they are in the Secret (it
// was rebuilt from the disk after k0s ran, e.g. after `kubectl delete secret`), the etcd-ca
// branch fails. When it comes before the ca branch, apiserver.crt is never written, EnsureCerts
// fails on reading it, and Initialize (pkg/setup/initialize.go) runs the whole start again 5 s
// later, for at most 2 minutes. Go randomises map order at every range, so every attempt is a
// new coin flip.
//
// What is real here: the files on the data dir and their x509 checks (chains and SANs are
// verified by crypto/x509, as kubeadm does), the Secret on the host kube-apiserver, and the
// order of the walk, which by default is the order of a real Go map built the way vcluster
// builds it. What is modelled: the retry loop (attempts are counted; the 5 s between them are
// not waited), and the leaves that do not exist, which are made by pkigen.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

const (
	// syncerRetryInterval and syncerInitTimeout are Initialize's wait.PollUntilContextTimeout
	// (pkg/setup/initialize.go l.35, v0.19–v0.25): a failed initialize() is run again 5 s later,
	// for at most 2 minutes.
	syncerRetryInterval = 5 * time.Second
	syncerInitTimeout   = 2 * time.Minute
	// k0sAPIPort is the port vcluster runs k0s's kube-apiserver on; k0s writes
	// https://localhost:<port> into its kubeconfigs.
	k0sAPIPort = 6443
)

// kubeadmCert is one entry of vcluster's GetDefaultCertList (pkg/certs/cert_list.go): Name is the
// map key, File the path under the pki dir (BaseName), CA the Name of its CA ("" for a CA).
type kubeadmCert struct {
	Name, File, CA string
}

// defaultCertList is vcluster's GetDefaultCertList, in its order (the local-etcd list, which
// EnsureCerts' createConfig selects by setting Etcd.Local).
var defaultCertList = []kubeadmCert{
	{"ca", "ca", ""},
	{"apiserver", "apiserver", "ca"},
	{"apiserver-kubelet-client", "apiserver-kubelet-client", "ca"},
	{"front-proxy-ca", "front-proxy-ca", ""},
	{"front-proxy-client", "front-proxy-client", "front-proxy-ca"},
	{"etcd-ca", "etcd/ca", ""},
	{"etcd-server", "etcd/server", "etcd-ca"},
	{"etcd-peer", "etcd/peer", "etcd-ca"},
	{"etcd-healthcheck-client", "etcd/healthcheck-client", "etcd-ca"},
	{"apiserver-etcd-client", "apiserver-etcd-client", "etcd-ca"},
}

// certTree builds vcluster's CertificateTree the way upstream does: the list as a map by Name
// (AsMap), then a map from each CA entry to its leaves, filled while ranging over the first map
// (CertTree). Both are real Go maps, so ranging over the result gives Go's randomised order.
func certTree() map[*kubeadmCert][]*kubeadmCert {
	byName := map[string]*kubeadmCert{}
	for i := range defaultCertList {
		c := defaultCertList[i]
		byName[c.Name] = &c
	}
	tree := map[*kubeadmCert][]*kubeadmCert{}
	for _, c := range byName {
		if c.CA == "" {
			if _, ok := tree[c]; !ok {
				tree[c] = nil
			}
			continue
		}
		ca := byName[c.CA]
		tree[ca] = append(tree[ca], c)
	}
	return tree
}

// CAOrder, when set on a Node, replaces Go's map order in CreateTree's walk: it returns the three
// CA names in the order to walk them. Tests set a seeded one so that a figure is reproducible;
// TestCreateTreeOrder checks that it flips the same coin as the real map.
type CAOrder func(cas []string) []string

// branch is one CA of the tree with its leaves, in the order the tree holds them.
type branch struct {
	ca     *kubeadmCert
	leaves []*kubeadmCert
}

// walkOrder returns the branches of a tree in the order CreateTree meets them.
func walkOrder(tree map[*kubeadmCert][]*kubeadmCert, order CAOrder) []branch {
	var out []branch
	for ca, leaves := range tree { // Go's map order: the coin upstream flips
		out = append(out, branch{ca, leaves})
	}
	if order == nil {
		return out
	}
	names := make([]string, len(out))
	for i, b := range out {
		names[i] = b.ca.Name
	}
	var sorted []branch
	for _, name := range order(names) {
		for _, b := range out {
			if b.ca.Name == name {
				sorted = append(sorted, b)
			}
		}
	}
	return sorted
}

// createPKIAssets mirrors vcluster pkg/certs/certs.go CreatePKIAssets (CreateTree over
// certTree, with the config EnsureCerts' createConfig makes), as far as it matters on the
// shouldUpdate path: every CA exists with its key, so each branch makes its missing leaves
// (apiserver, just removed) and validates the others, and the walk stops at the first error.
// The service-account step after the tree finds sa.* in place and does nothing.
func (n *Node) createPKIAssets(dir string) error {
	for _, b := range walkOrder(certTree(), n.CAOrder) {
		ca, err := loadCA(filepath.Join(dir, b.ca.File+".crt"), filepath.Join(dir, b.ca.File+".key"))
		if err != nil {
			return fmt.Errorf("couldn't load %q CA: %w", b.ca.Name, err)
		}
		if !ca.Cert.IsCA {
			return fmt.Errorf("certificate %q is not a CA", b.ca.Name)
		}
		for _, leaf := range b.leaves {
			if err := n.createFromCA(dir, leaf, ca.Cert); err != nil {
				n.tracef("CreatePKIAssets: walk stopped in the %s branch: %v", b.ca.Name, err)
				return fmt.Errorf("failed to write or validate certificate %q: %w", leaf.Name, err)
			}
		}
		n.tracef("CreatePKIAssets: %s branch done", b.ca.Name)
	}
	return nil
}

// createFromCA mirrors KubeadmCert.CreateFromCA → writeCertificateFilesIfNotExist: a leaf whose
// certificate or key exists is validated (key loads, chain verifies against the CA now, every
// SAN of its config present); a missing one is made. Only apiserver is ever missing here.
func (n *Node) createFromCA(dir string, leaf *kubeadmCert, ca *x509.Certificate) error {
	crtFile, keyFile := filepath.Join(dir, leaf.File+".crt"), filepath.Join(dir, leaf.File+".key")
	if !exists(crtFile) && !exists(keyFile) {
		if leaf.Name != "apiserver" {
			return fmt.Errorf("the model makes only apiserver, not %s", leaf.Name)
		}
		return n.createAPIServerCert(dir)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("failure loading %s key: %w", leaf.File, err)
	}
	if _, err := parseKey(kb); err != nil {
		return fmt.Errorf("failure loading %s key: %w", leaf.File, err)
	}
	cb, err := os.ReadFile(crtFile)
	if err != nil {
		return fmt.Errorf("failure loading %s certificate: %w", leaf.File, err)
	}
	c, err := parseCert(cb)
	if err != nil {
		return fmt.Errorf("failure loading %s certificate: %w", leaf.File, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("certificate %s is not signed by corresponding CA", leaf.File)
	}
	dns, ips := n.altNames(leaf.Name)
	for _, h := range dns {
		if err := c.VerifyHostname(h); err != nil {
			return fmt.Errorf("certificate %s is invalid: %w", leaf.File, err)
		}
	}
	for _, ip := range ips {
		if err := c.VerifyHostname(ip.String()); err != nil {
			return fmt.Errorf("certificate %s is invalid: %w", leaf.File, err)
		}
	}
	return nil
}

// altNames mirrors the SANs vcluster's config gives a leaf (pkg/certs/util.go getAltNames with
// GenerateCerts' etcdSans, pkg/setup/initialize.go): for etcd-server and etcd-peer the node
// name (the release), localhost, the advertise address 0.0.0.0, 127.0.0.1, ::1 and the etcd
// service names; client certificates have none. apiserver's are not needed: it is always made.
func (n *Node) altNames(name string) (dns []string, ips []net.IP) {
	if name != "etcd-server" && name != "etcd-peer" {
		return nil, nil
	}
	svc := n.Release + "-etcd"
	dns = []string{n.Release, "localhost", svc, svc + "-headless", svc + "." + n.Namespace, svc + "." + n.Namespace + ".svc"}
	for _, s := range []string{n.Release, svc} {
		dns = append(dns, "*."+s+"-headless", "*."+s+"-headless."+n.Namespace, "*."+s+"-headless."+n.Namespace+".svc",
			"*."+s+"-headless."+n.Namespace+".svc.cluster.local")
	}
	for i := range 5 {
		h, eh := n.Release+"-"+strconv.Itoa(i), svc+"-"+strconv.Itoa(i)
		dns = append(dns, h, h+"."+n.Release+"-headless", h+"."+n.Release+"-headless."+n.Namespace,
			eh, eh+"."+svc+"-headless", eh+"."+svc+"-headless."+n.Namespace)
	}
	return dns, []net.IP{net.IPv4zero, net.IPv4(127, 0, 0, 1), net.IPv6loopback}
}

// SyncerStart runs one pod start up to the point where k0s would start etcd and kube-apiserver:
// vcluster's initialize() with its retries (EnsureCerts, k0s's certificate manager,
// UpdateSecretWithK0sCerts), on the data dir and the Secret, with k0s on port 6443 as in a real
// vcluster. It returns how many times initialize() ran; the retries cost
// (attempts-1) × syncerRetryInterval upstream. No process is started.
func (n *Node) SyncerStart(ctx context.Context) (attempts int, err error) {
	n.mu.Lock()
	n.boots++
	nr := n.boots
	n.mu.Unlock()
	if err := os.MkdirAll(n.LogDir, 0o700); err != nil {
		return 0, err
	}
	if n.trace, err = os.Create(filepath.Join(n.LogDir, fmt.Sprintf("start-%d-model.log", nr))); err != nil {
		return 0, err
	}
	defer func() { n.trace.Close(); n.trace = nil }()
	attempts, err = n.initialize(ctx, k0sAPIPort)
	var be *BootError
	if err != nil && !errors.As(err, &be) {
		err = &BootError{Stage: "initialize", Err: err}
	}
	return attempts, err
}
