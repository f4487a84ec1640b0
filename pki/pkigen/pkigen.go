// Package pkigen lays out a vcluster v0.19–v0.25 + k0s PKI with chosen lifetimes: vcluster's CAs
// (ca.crt with CN "kubernetes"), its 10-year leaves and kubeconfigs, k0s's one-year leaves signed
// by that CA, sa.*, and etcd/. Tests, the e2e harness and `certguard demo` use it, so that no
// certificate in this project comes from a hand-made fixture.
//
// It ships in the release binary because the demo runs it, so it holds only what the demo's run
// reaches; what only tests use (RSA keys, loading a CA, tree manifests) is in pkigentest, which
// no package of the release binary imports.
package pkigen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certguard/certguard/pki"
)

const (
	// Year is the unit of certificate lifetimes in k0s (8760h) and vcluster (24*365h).
	Year = 365 * 24 * time.Hour
	// Backdate is how far cfssl (k0s's signer) moves NotBefore into the past.
	Backdate = 5 * time.Minute
)

// Options chooses the shape and the age of the PKI. Zero values give a healthy vcluster v0.25
// PKI, issued 30 days before Now.
type Options struct {
	Now time.Time
	// CACN is ca.crt's CN: "kubernetes" for vcluster v0.19–v0.25, "kubernetes-ca" for a PKI k0s
	// made by itself (vcluster < v0.19).
	CACN string
	// CAIssued and CALifetime place the three CAs (and vcluster's leaves) in time.
	CAIssued   time.Time
	CALifetime time.Duration
	// VclusterLifetime is the lifetime of vcluster's own leaves (10 years).
	VclusterLifetime time.Duration
	// K0sIssued and K0sLifetime place k0s's leaves: server, k0s-api, admin, scheduler, ccm,
	// konnectivity, and the etcd leaves.
	K0sIssued   time.Time
	K0sLifetime time.Duration
	// Key makes every key. nil: ECDSA P-256, 50× faster to generate than RSA-2048 and the same
	// to certguard. pkigentest.RSA makes RSA-2048 keys like vcluster and k0s do; it lives there
	// so that the release binary does not link RSA key generation (32 KiB) for the demo.
	Key func() (crypto.Signer, error)
	// NoCACopies leaves out server-ca/client-ca, which vcluster writes from v0.25 on.
	NoCACopies bool
	// Hosts are the server certificate's SANs besides the k0s defaults.
	Hosts []string
	// Server is the URL written into the kubeconfigs.
	Server string
}

func (o *Options) defaults() {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.CACN == "" {
		o.CACN = "kubernetes"
	}
	if o.CAIssued.IsZero() {
		o.CAIssued = o.Now.Add(-30 * 24 * time.Hour)
	}
	if o.CALifetime == 0 {
		o.CALifetime = 10 * Year
	}
	if o.VclusterLifetime == 0 {
		o.VclusterLifetime = 10 * Year
	}
	if o.K0sIssued.IsZero() {
		o.K0sIssued = o.Now.Add(-30 * 24 * time.Hour)
	}
	if o.K0sLifetime == 0 {
		o.K0sLifetime = Year
	}
	if o.Server == "" {
		o.Server = "https://localhost:6443"
	}
}

// CA is a CA certificate with its key, to sign more with.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// PKI is a generated PKI: the files as they lie on disk, by path relative to the pki dir.
type PKI struct {
	Files map[string][]byte
	CAs   map[string]*CA // "ca", "front-proxy-ca", "etcd/ca"
	opts  Options
}

// Leaf describes a certificate to issue.
type Leaf struct {
	CN, O    []string
	Hosts    []string
	IPs      []net.IP
	Server   bool
	Client   bool
	Issued   time.Time
	Lifetime time.Duration
}

// k0sLeaves are what k0s's cmd/controller/certificates.go issues under ca.crt.
var k0sLeaves = []struct {
	name, cn, o    string
	server, client bool
	kubeconfig     bool
}{
	{"server", "kubernetes", "kubernetes", true, true, false},
	{"k0s-api", "k0s-api", "kubernetes", true, true, false},
	{"admin", "kubernetes-admin", "system:masters", false, true, false},
	{"scheduler", "system:kube-scheduler", "system:kube-scheduler", false, true, false},
	{"ccm", "system:kube-controller-manager", "system:kube-controller-manager", false, true, true},
	{"konnectivity", "kubernetes-konnectivity", "system:masters", false, true, true},
}

// Generate makes a whole PKI.
func Generate(o Options) (*PKI, error) {
	p := New(o)
	o = p.opts
	for name, cn := range map[string]string{"ca": o.CACN, "front-proxy-ca": "front-proxy-ca", "etcd/ca": "etcd-ca"} {
		ca, err := p.NewCA(cn, o.CAIssued, o.CALifetime)
		if err != nil {
			return nil, err
		}
		p.CAs[name] = ca
		p.Files[name+".crt"] = CertPEM(ca.Cert)
		p.Files[name+".key"] = KeyPEM(ca.Key)
	}
	if !o.NoCACopies {
		for _, c := range []string{"server-ca", "client-ca"} {
			p.Files[c+".crt"], p.Files[c+".key"] = p.Files["ca.crt"], p.Files["ca.key"]
		}
	}
	sa, err := p.newKey()
	if err != nil {
		return nil, err
	}
	p.Files["sa.key"] = KeyPEM(sa)
	pub, err := x509.MarshalPKIXPublicKey(sa.Public())
	if err != nil {
		return nil, err
	}
	p.Files["sa.pub"] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})

	vc := func(issued time.Time) Leaf { return Leaf{Issued: issued, Lifetime: o.VclusterLifetime} }
	type job struct {
		path, ca string
		leaf     Leaf
	}
	hosts := append([]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, o.Hosts...)
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}
	jobs := []job{
		{"apiserver", "ca", with(vc(o.CAIssued), "kube-apiserver", "", true, false, hosts, ips)},
		{"apiserver-kubelet-client", "ca", with(vc(o.CAIssued), "kube-apiserver-kubelet-client", "system:masters", false, true, nil, nil)},
		{"front-proxy-client", "front-proxy-ca", with(vc(o.CAIssued), "front-proxy-client", "", false, true, nil, nil)},
		{"etcd/healthcheck-client", "etcd/ca", with(vc(o.CAIssued), "kube-etcd-healthcheck-client", "", false, true, nil, nil)},
	}
	k0s := Leaf{Issued: o.K0sIssued, Lifetime: o.K0sLifetime}
	jobs = append(jobs,
		job{"etcd/server", "etcd/ca", with(k0s, "etcd-server", "etcd-server", true, true, []string{"localhost"}, ips[:1])},
		job{"etcd/peer", "etcd/ca", with(k0s, "etcd-peer", "etcd-peer", true, true, []string{"localhost"}, ips[:1])},
		job{"apiserver-etcd-client", "etcd/ca", with(k0s, "apiserver-etcd-client", "apiserver-etcd-client", false, true, nil, nil)},
	)
	for _, j := range jobs {
		crt, key, err := p.Issue(p.CAs[j.ca], j.leaf)
		if err != nil {
			return nil, fmt.Errorf("issue %s: %w", j.path, err)
		}
		p.Files[j.path+".crt"], p.Files[j.path+".key"] = crt, key
	}
	leaves, err := p.IssueK0sLeaves(p.CAs["ca"], p.Files["ca.crt"])
	if err != nil {
		return nil, err
	}
	maps.Copy(p.Files, leaves)
	p.Files["admin.conf"] = p.Kubeconfig("admin")
	p.Files["scheduler.conf"] = p.Kubeconfig("scheduler")
	crt, key, err := p.Issue(p.CAs["ca"], with(vc(o.CAIssued), "system:kube-controller-manager", "", false, true, nil, nil))
	if err != nil {
		return nil, err
	}
	p.Files["controller-manager.conf"] = Kubeconfig(o.Server, p.Files["ca.crt"], crt, key)
	return p, nil
}

func with(l Leaf, cn, o string, server, client bool, hosts []string, ips []net.IP) Leaf {
	l.CN, l.Server, l.Client, l.Hosts, l.IPs = []string{cn}, server, client, hosts, ips
	if o != "" {
		l.O = []string{o}
	}
	return l
}

// IssueK0sLeaves signs the 14 K0sFiles with ca, as k0s's controller does when they are missing
// (cmd/controller/certificates.go): server, k0s-api, admin, scheduler, ccm, konnectivity, with
// ccm.conf and konnectivity.conf embedding theirs.
func (p *PKI) IssueK0sLeaves(ca *CA, caPEM []byte) (map[string][]byte, error) {
	o := p.opts
	hosts := append([]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, o.Hosts...)
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}
	out := map[string][]byte{}
	for _, l := range k0sLeaves {
		leaf := with(Leaf{Issued: o.K0sIssued, Lifetime: o.K0sLifetime}, l.cn, l.o, l.server, l.client, nil, nil)
		if l.server {
			leaf.Hosts, leaf.IPs = hosts, ips
		}
		crt, key, err := p.Issue(ca, leaf)
		if err != nil {
			return nil, fmt.Errorf("issue %s: %w", l.name, err)
		}
		out[l.name+".crt"], out[l.name+".key"] = crt, key
		if l.kubeconfig {
			out[l.name+".conf"] = Kubeconfig(o.Server, caPEM, crt, key)
		}
	}
	return out, nil
}

// New returns a generator for more certificates with o's key type and times, e.g. to re-issue
// leaves under a CA loaded with pkigentest.LoadCA.
func New(o Options) *PKI {
	o.defaults()
	return &PKI{Files: map[string][]byte{}, CAs: map[string]*CA{}, opts: o}
}

// Kubeconfig writes a kubeconfig embedding the leaf <name>.crt/.key, as k0s does at start.
func (p *PKI) Kubeconfig(name string) []byte {
	return Kubeconfig(p.opts.Server, p.Files["ca.crt"], p.Files[name+".crt"], p.Files[name+".key"])
}

// Kubeconfig renders a kubeconfig with embedded CA, client certificate and key; the layout is
// k0s's (cluster "local", user "user", context "Default").
func Kubeconfig(server string, ca, crt, key []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return []byte(strings.Join([]string{
		"apiVersion: v1",
		"kind: Config",
		"clusters:",
		"- name: local",
		"  cluster:",
		"    server: " + server,
		"    certificate-authority-data: " + b64(ca),
		"contexts:",
		"- name: Default",
		"  context: {cluster: local, user: user}",
		"current-context: Default",
		"users:",
		"- name: user",
		"  user:",
		"    client-certificate-data: " + b64(crt),
		"    client-key-data: " + b64(key),
		"",
	}, "\n"))
}

// NewCA makes a self-signed CA like certutil.NewSelfSignedCACert and k0s's EnsureCA.
func (p *PKI) NewCA(cn string, issued time.Time, lifetime time.Duration) (*CA, error) {
	key, err := p.newKey()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             issued.UTC(),
		NotAfter:              issued.Add(lifetime).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski(key.Public()),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: c, Key: key}, nil
}

// Issue signs a leaf with cfssl's profile as k0s uses it: NotBefore back-dated by 5 minutes,
// NotAfter = NotBefore + lifetime (not capped by the CA), digital signature + key encipherment.
func (p *PKI) Issue(ca *CA, l Leaf) (crt, key []byte, err error) {
	k, err := p.newKey()
	if err != nil {
		return nil, nil, err
	}
	nb := l.Issued.Add(-Backdate).UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: strings.Join(l.CN, ""), Organization: l.O},
		NotBefore:             nb,
		NotAfter:              nb.Add(l.Lifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		DNSNames:              l.Hosts,
		IPAddresses:           l.IPs,
		SubjectKeyId:          ski(k.Public()),
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
	}
	if l.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, k.Public(), ca.Key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM(k), nil
}

func (p *PKI) newKey() (crypto.Signer, error) {
	if p.opts.Key != nil {
		return p.opts.Key()
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// CertPEM encodes a certificate.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// KeyPEM encodes a key the way k0s and vcluster write them (PKCS#1 for RSA, SEC 1 for EC).
func KeyPEM(k crypto.Signer) []byte {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			panic(err) // only for curves crypto/ecdsa cannot make
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	panic(fmt.Sprintf("pkigen: unsupported key %T", k))
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

func ski(pub crypto.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha1.Sum(der)
	return sum[:]
}

// SecretData is the Secret vcluster v0.25 keeps after a boot: every certMap file under its key
// (etcd/x as etcd-x), every other top-level file (extraFiles: the CA copies), and the 14 k0s
// files added by UpdateSecretWithK0sCerts.
func (p *PKI) SecretData() map[string][]byte {
	return SecretData(p.Files)
}

// SecretData maps disk files to Secret keys the way vcluster does.
func SecretData(files map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for path, b := range files {
		if k := pki.SecretKey(path); k != "" {
			out[k] = append([]byte(nil), b...)
		}
	}
	return out
}

// WriteDir writes files under dir with k0s's modes (keys 0640, certificates 0644).
func WriteDir(dir string, files map[string][]byte) error {
	for path, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(path, ".key") || strings.HasSuffix(path, ".conf") {
			mode = 0o640
		}
		if err := os.WriteFile(full, b, mode); err != nil {
			return err
		}
	}
	return nil
}
