package pki

import (
	"path"
	"slices"
	"strings"
)

// Role says what a pod start does with a file, which decides what certguard may do with it.
type Role string

const (
	// RoleCA is a CA pair. k0s's EnsureCA reuses it forever while both files exist and makes a
	// new one, silently, when either is missing: never delete one half.
	RoleCA Role = "ca"
	// RoleCACopy is server-ca/client-ca: copies of ca.* that vcluster v0.25 makes when missing.
	RoleCACopy Role = "ca-copy"
	// RoleKeyPair is a bare key pair (sa.key/sa.pub): kept while both exist, like a CA.
	RoleKeyPair Role = "keypair"
	// RoleK0sLeaf is one of the 14 K0sFiles: signed by ca.crt (CN kubernetes), which k0s does not
	// count as its own, so k0s re-signs them only when they are missing. These get stuck.
	RoleK0sLeaf Role = "k0s-leaf"
	// RoleK0sRenewed is what k0s renews by itself: leaves issued by etcd-ca, a CN k0s treats as
	// its own (re-issued on every start, so their expiry never matters), and etcd/jwt.
	RoleK0sRenewed Role = "k0s-renewed"
	// RoleVclusterLeaf is one of vcluster's own 10-year leaves: nothing regenerates it while ca.key
	// exists; only a full reset renews it.
	RoleVclusterLeaf Role = "vcluster-leaf"
	// RoleKubeconfig is a kubeconfig vcluster keeps in the Secret; k0s rewrites admin.conf and
	// scheduler.conf on disk at every start, so they differ from the Secret after a boot.
	RoleKubeconfig Role = "kubeconfig"
	// RoleUnknown is anything else: reported, never touched.
	RoleUnknown Role = "unknown"
)

// entry is one row of the layout table: a certificate (or key pair) and the files that hold it.
type entry struct {
	name  string // path without extension, relative to the pki dir: "etcd/ca"
	role  Role
	ca    string   // the entry name of the CA expected to sign it; "" for CAs and key pairs
	files []string // extensions present for this entry
}

// layout is the one table of what vcluster v0.19–v0.25 and k0s v1.28–v1.34 keep in the pki dir
// (research notes §3, §4, §6; vcluster pkg/certs/constants.go certMap and K0sFiles; k0s
// cmd/controller/certificates.go and pkg/component/controller/etcd.go).
var layout = []entry{
	{name: "ca", role: RoleCA, files: []string{".crt", ".key"}},
	{name: "front-proxy-ca", role: RoleCA, files: []string{".crt", ".key"}},
	{name: "etcd/ca", role: RoleCA, files: []string{".crt", ".key"}},
	{name: "server-ca", role: RoleCACopy, files: []string{".crt", ".key"}},
	{name: "client-ca", role: RoleCACopy, files: []string{".crt", ".key"}},
	{name: "sa", role: RoleKeyPair, files: []string{".key", ".pub"}},
	// etcd's JWT signing pair: k0s's Etcd.setupCerts → CreateKeyPair writes a new pair whenever
	// either half is missing, and nothing outlives it (tokens last 10 minutes).
	{name: "etcd/jwt", role: RoleK0sRenewed, files: []string{".key", ".pub"}},

	{name: "server", role: RoleK0sLeaf, ca: "ca", files: []string{".crt", ".key"}},
	{name: "k0s-api", role: RoleK0sLeaf, ca: "ca", files: []string{".crt", ".key"}},
	{name: "admin", role: RoleK0sLeaf, ca: "ca", files: []string{".crt", ".key"}},
	{name: "scheduler", role: RoleK0sLeaf, ca: "ca", files: []string{".crt", ".key"}},
	{name: "ccm", role: RoleK0sLeaf, ca: "ca", files: []string{".crt", ".key", ".conf"}},
	{name: "konnectivity", role: RoleK0sLeaf, ca: "ca", files: []string{".crt", ".key", ".conf"}},

	{name: "etcd/server", role: RoleK0sRenewed, ca: "etcd/ca", files: []string{".crt", ".key"}},
	{name: "etcd/peer", role: RoleK0sRenewed, ca: "etcd/ca", files: []string{".crt", ".key"}},
	{name: "apiserver-etcd-client", role: RoleK0sRenewed, ca: "etcd/ca", files: []string{".crt", ".key"}},

	{name: "apiserver", role: RoleVclusterLeaf, ca: "ca", files: []string{".crt", ".key"}},
	{name: "apiserver-kubelet-client", role: RoleVclusterLeaf, ca: "ca", files: []string{".crt", ".key"}},
	{name: "front-proxy-client", role: RoleVclusterLeaf, ca: "front-proxy-ca", files: []string{".crt", ".key"}},
	{name: "etcd/healthcheck-client", role: RoleVclusterLeaf, ca: "etcd/ca", files: []string{".crt", ".key"}},

	{name: "admin", role: RoleKubeconfig, ca: "ca", files: []string{".conf"}},
	{name: "scheduler", role: RoleKubeconfig, ca: "ca", files: []string{".conf"}},
	{name: "controller-manager", role: RoleKubeconfig, ca: "ca", files: []string{".conf"}},
}

// K0sLeafFiles are the 14 files vcluster's UpdateSecretWithK0sCerts copies into the Secret
// (K0sFiles). A leaf repair removes exactly these, from disk and Secret together: a Secret that
// holds some but not all of them, or other bytes than the disk, sends vcluster into a retry loop.
var K0sLeafFiles = func() []string {
	var out []string
	for _, e := range layout {
		if e.role == RoleK0sLeaf {
			for _, ext := range e.files {
				out = append(out, e.name+ext)
			}
		}
	}
	slices.Sort(out)
	return out
}()

// CANames are the CAs k0s reuses as long as both files exist.
var caEntries = []string{"ca", "front-proxy-ca", "etcd/ca"}

// k0sOwnCACNs are the issuer CNs k0s's isManagedByK0s treats as its own (pkg/certificate/manager.go):
// leaves under them are re-issued at every start. A CA with CN kubernetes-ca means k0s runs its own
// PKI (vcluster < v0.19) and renews everything by itself.
const k0sOwnCACN = "kubernetes-ca"

// roleOf returns the layout entry for a file path relative to the pki dir.
func roleOf(p string) (entry, bool) {
	ext := path.Ext(p)
	name := strings.TrimSuffix(p, ext)
	for _, e := range layout {
		if e.name == name && slices.Contains(e.files, ext) {
			return e, true
		}
	}
	return entry{name: name, role: RoleUnknown}, false
}

// SecretKey is the Secret key vcluster uses for a file: certMap flattens etcd/x to etcd-x. Files
// in other subdirectories never reach the Secret ("" is returned): extraFiles reads only the top
// level.
func SecretKey(p string) string {
	if k := "etcd-" + strings.TrimPrefix(p, "etcd/"); strings.HasPrefix(p, "etcd/") && slices.Contains(etcdKeys, k) {
		return k
	}
	if strings.Contains(p, "/") {
		return ""
	}
	return p
}

// etcdKeys are the certMap entries that map etcd-x keys back to etcd/x files. Only these are
// mapped: vcluster's downloadCertsFromSecret writes every other key under its own name.
var etcdKeys = []string{
	"etcd-ca.crt", "etcd-ca.key", "etcd-healthcheck-client.crt", "etcd-healthcheck-client.key",
	"etcd-peer.crt", "etcd-peer.key", "etcd-server.crt", "etcd-server.key",
}

// FilePath is the disk path vcluster writes a Secret key to (downloadCertsFromSecret).
func FilePath(key string) string {
	if slices.Contains(etcdKeys, key) {
		return "etcd/" + strings.TrimPrefix(key, "etcd-")
	}
	return key
}
