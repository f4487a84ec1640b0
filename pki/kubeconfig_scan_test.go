package pki_test

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// ScanKubeconfig replaced sigs.k8s.io/yaml on the kubeconfigs it takes. The reference below is
// ParseKubeconfig as it was before (sigs.k8s.io/yaml alone into the same struct), kept verbatim
// but for the package qualifiers, and fleet's kubeconfig struct: on any bytes, the new
// ParseKubeconfig must give the same result or the same error (its text included), and whatever
// ScanKubeconfig accepts must be what sigs.k8s.io/yaml reads into either struct.

// refFleetKubeconfigFile is fleet's kubeconfig Secret struct (fleet/kubeconfig.go before).
type refFleetKubeconfigFile struct {
	Clusters []struct {
		Cluster struct {
			CA []byte `json:"certificate-authority-data"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		User struct {
			Cert []byte `json:"client-certificate-data"`
		} `json:"user"`
	} `json:"users"`
}

func refParseKubeconfig(data []byte) (*pki.Kubeconfig, error) {
	parseErr := func(reason pki.Reason, format string, a ...any) error {
		return &pki.ParseError{Reason: reason, Detail: fmt.Sprintf(format, a...)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, parseErr(pki.ReasonEmpty, "file is empty")
	}
	var f pki.KubeconfigFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, parseErr(pki.ReasonBadKubeconfig, "not a kubeconfig: %s", strings.SplitN(err.Error(), "\n", 2)[0])
	}
	kc := &pki.Kubeconfig{}
	if len(f.Clusters) > 0 {
		kc.Server = f.Clusters[0].Cluster.Server
	}
	for _, u := range f.Users {
		if len(u.User.ClientCertificateData) == 0 {
			continue
		}
		c, err := pki.ParseCertPEM(u.User.ClientCertificateData)
		if err != nil {
			return nil, parseErr(pki.ReasonBadKubeconfig, "user %q: %v", u.Name, err)
		}
		ku := pki.KubeconfigUser{Name: u.Name, Cert: c}
		if len(u.User.ClientKeyData) > 0 {
			pub, err := pki.ParseKeyPEM(u.User.ClientKeyData)
			k, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
			match := err == nil && ok && k.Equal(pub)
			ku.KeyMatches = &match
		}
		kc.Users = append(kc.Users, ku)
	}
	if len(kc.Users) == 0 {
		return nil, parseErr(pki.ReasonBadKubeconfig, "no user with an embedded client certificate")
	}
	return kc, nil
}

// sameAsBefore fails t when ParseKubeconfig and the reference differ on data, or ScanKubeconfig
// takes data and reads it differently from sigs.k8s.io/yaml; it returns whether Scan took it.
func sameAsBefore(t *testing.T, data []byte) bool {
	t.Helper()
	scanned, ok := pki.ScanKubeconfig(data)
	got, gotErr := pki.ParseKubeconfig(data)
	want, wantErr := refParseKubeconfig(data)
	// Where ScanKubeconfig refuses, ParseKubeconfig runs the former code itself, and the text of
	// an error sigs.k8s.io/yaml builds while ranging over a Go map (which of two bad keys it
	// names) varies from one run to the next: there, errors compare by their reason.
	if d := diffKubeconfig(got, gotErr, want, wantErr, ok); d != "" {
		t.Fatalf("ParseKubeconfig differs from sigs.k8s.io/yaml: %s\ninput: %q", d, data)
	}
	if !ok {
		return false
	}
	var y pki.KubeconfigFile
	if err := yaml.Unmarshal(data, &y); err != nil {
		t.Fatalf("ScanKubeconfig took what sigs.k8s.io/yaml refuses (%v): %q", err, data)
	}
	var fy refFleetKubeconfigFile
	if err := yaml.Unmarshal(data, &fy); err != nil {
		t.Fatalf("ScanKubeconfig took what sigs.k8s.io/yaml refuses in fleet's struct (%v): %q", err, data)
	}
	var asPKI pki.KubeconfigData
	for i, c := range y.Clusters {
		asPKI.Clusters = append(asPKI.Clusters, pki.KubeconfigClusterData{Server: c.Cluster.Server, CertificateAuthorityData: fy.Clusters[i].Cluster.CA})
	}
	for i, u := range y.Users {
		asPKI.Users = append(asPKI.Users, pki.KubeconfigUserData{Name: u.Name, ClientCertificateData: u.User.ClientCertificateData, ClientKeyData: u.User.ClientKeyData})
		if !bytes.Equal(u.User.ClientCertificateData, fy.Users[i].User.Cert) {
			t.Fatalf("the two reference structs disagree: %q", data)
		}
	}
	if d := diffData(scanned, asPKI); d != "" {
		t.Fatalf("ScanKubeconfig differs from sigs.k8s.io/yaml: %s\ninput: %q", d, data)
	}
	return true
}

func diffKubeconfig(got *pki.Kubeconfig, gotErr error, want *pki.Kubeconfig, wantErr error, texts bool) string {
	if (gotErr == nil) != (wantErr == nil) || (got == nil) != (want == nil) {
		return fmt.Sprintf("error %v, want %v", gotErr, wantErr)
	}
	if gotErr != nil {
		var g, w *pki.ParseError
		if !errors.As(gotErr, &g) || !errors.As(wantErr, &w) || g.Reason != w.Reason || texts && g.Detail != w.Detail {
			return fmt.Sprintf("error %#v, want %#v", gotErr, wantErr)
		}
		return ""
	}
	if got.Server != want.Server || len(got.Users) != len(want.Users) {
		return fmt.Sprintf("server %q and %d users, want %q and %d", got.Server, len(got.Users), want.Server, len(want.Users))
	}
	for i, u := range got.Users {
		w := want.Users[i]
		if u.Name != w.Name || !bytes.Equal(u.Cert.Raw, w.Cert.Raw) || (u.KeyMatches == nil) != (w.KeyMatches == nil) || u.KeyMatches != nil && *u.KeyMatches != *w.KeyMatches {
			return fmt.Sprintf("user %d: %+v, want %+v", i, u, w)
		}
	}
	return ""
}

// diffData compares field by field; a nil and an empty slice are the same to every caller.
func diffData(got, want pki.KubeconfigData) string {
	if len(got.Clusters) != len(want.Clusters) || len(got.Users) != len(want.Users) {
		return fmt.Sprintf("%d clusters and %d users, want %d and %d", len(got.Clusters), len(got.Users), len(want.Clusters), len(want.Users))
	}
	for i, c := range got.Clusters {
		w := want.Clusters[i]
		if c.Server != w.Server || !bytes.Equal(c.CertificateAuthorityData, w.CertificateAuthorityData) {
			return fmt.Sprintf("cluster %d: %+v, want %+v", i, c, w)
		}
	}
	for i, u := range got.Users {
		w := want.Users[i]
		if u.Name != w.Name || !bytes.Equal(u.ClientCertificateData, w.ClientCertificateData) || !bytes.Equal(u.ClientKeyData, w.ClientKeyData) {
			return fmt.Sprintf("user %d: %+v, want %+v", i, u, w)
		}
	}
	return ""
}

// kubeconfigCorpus is every kubeconfig pkigen writes (k0s's layout, both key types), the one
// clientcmd.Write writes (vcluster's exported kubeconfig), and edge cases around the YAML and
// JSON rules sigs.k8s.io/yaml applies.
func kubeconfigCorpus(t testing.TB, rsa bool) (scanned, edge [][]byte) {
	t.Helper()
	pkis := []*pkigen.PKI{genPKI(t, nil)}
	if rsa {
		pkis = append(pkis, benchPKI(t, true))
	}
	for _, p := range pkis {
		for name, data := range p.Files {
			if strings.HasSuffix(name, ".conf") {
				scanned = append(scanned, data)
			}
		}
	}
	p := genPKI(t, nil)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["vc"] = &clientcmdapi.Cluster{Server: "https://vc.team-a.svc:443", CertificateAuthorityData: p.Files["ca.crt"], InsecureSkipTLSVerify: false}
	cfg.Clusters["other"] = &clientcmdapi.Cluster{Server: "https://10.0.0.1", InsecureSkipTLSVerify: true}
	cfg.AuthInfos["vc"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.Files["admin.crt"], ClientKeyData: p.Files["admin.key"]}
	cfg.AuthInfos["token"] = &clientcmdapi.AuthInfo{Token: "abc"}
	cfg.Contexts["vc"] = &clientcmdapi.Context{Cluster: "vc", AuthInfo: "vc", Namespace: "default"}
	cfg.CurrentContext = "vc"
	written, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	scanned = append(scanned, written)

	crt := base64.StdEncoding.EncodeToString(p.Files["admin.crt"])
	key := base64.StdEncoding.EncodeToString(p.Files["admin.key"])
	other := base64.StdEncoding.EncodeToString(p.Files["scheduler.key"])
	r := strings.NewReplacer("CRT", crt, "KEY", key, "OTHER", other)
	for _, s := range edgeKubeconfigs {
		edge = append(edge, []byte(r.Replace(s)))
	}
	return scanned, edge
}

var edgeKubeconfigs = []string{
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\n    client-key-data: KEY\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\n    client-key-data: OTHER\n",
	"users:\n  - name: a\n    user:\n      client-certificate-data: CRT\n",
	"users:\n-   name: a\n    user:\n        client-certificate-data: CRT\n",
	"clusters:\n- cluster:\n    server: https://x:6443\n    insecure-skip-tls-verify: true\n  name: c\n- cluster: {}\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"apiVersion: v1\ncontexts:\n- name: Default\n  context: {cluster: local, user: user}\npreferences: {}\nextensions: []\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\n- name: b\n  user: {}\n- name: c\n",
	// JSON, flow and quoted forms: sigs.k8s.io/yaml's alone.
	`{"users":[{"name":"a","user":{"client-certificate-data":"CRT"}}]}`,
	"users: [{name: a, user: {client-certificate-data: CRT}}]\n",
	"users:\n- name: \"a\"\n  user:\n    client-certificate-data: 'CRT'\n",
	// Keys matched case-insensitively, and near misses.
	"Users:\n- Name: a\n  USER:\n    Client-Certificate-Data: CRT\n",
	"users:\n- name: a\n  user:\n    client_certificate_data: CRT\n",
	"users:\n- name: a\n  user:\n    clientcertificatedata: CRT\n",
	"uſers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\nUSERS:\n- name: b\n",
	// Duplicate keys.
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\nusers:\n- name: b\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: a\n  name: b\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\n  user:\n    client-key-data: KEY\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\n    client-certificate-data: CRT\n",
	"kind: a\nkind: b\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	// Nulls and non-string scalars.
	"users:\n- name:\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: ~\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: null\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: yes\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: 123\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: 1.5\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: 0x1F\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: 2001-01-01\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: .inf\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\n    client-key-data: 12\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\n    client-key-data:\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: \"\"\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: []\n",
	"users:\n- name: a\n  user:\n",
	"users:\n- name: a\n  user: null\n",
	"users:\nclusters:\n",
	"users: null\n",
	"users: []\n",
	"kind: .nan\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"null: x\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"y: x\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"on: x\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"1: x\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	// Wrong kinds.
	"users: {}\n",
	"users:\n  name: a\n",
	"users:\n- a\n- b\n",
	"users:\n- name: a\n  user: []\n",
	"users:\n- name: {}\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: [a]\n",
	"clusters:\n- cluster:\n    server: {}\n",
	"- users\n",
	"just text\n",
	// Bad base64.
	"users:\n- name: a\n  user:\n    client-certificate-data: LS0t!\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: LS0\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: LS0tLQ\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: AAAA\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: TFMwdA==\n",
	// YAML beyond the scanner: comments, documents, anchors, tags, block scalars, continuations,
	// tabs, CRLF, trailing spaces.
	"# k\nusers:\n- name: a # x\n  user:\n    client-certificate-data: CRT\n",
	"---\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n...\n---\nusers: []\n",
	"users:\n- name: a\n  user: &u\n    client-certificate-data: CRT\n- name: b\n  user: *u\n",
	"users:\n- name: !!str 123\n  user:\n    client-certificate-data: !!binary CRT\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: |\n      CRT\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: LS0t\n      LS0t\n",
	"users:\n- name: a\n  user:\n\tclient-certificate-data: CRT\n",
	"users:\r\n- name: a\r\n  user:\r\n    client-certificate-data: CRT\r\n",
	"users: \n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: a\n   user:\n    client-certificate-data: CRT\n",
	"users:\n - name: a\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\n  - name: b\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\nkind:\n  - x\n  y: z\n",
	"users:\n- name: a:\n",
	"users:\n- name: a:b\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- name: a\n  user:\n    client-certificate-data: CRT\ncontexts: {a: b, c: d}\n",
	"contexts: {a: b:c}\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"contexts: {a: b,}\n",
	"contexts: {a: {b: c}}\n",
	"\ufeffusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"  users:\n  - name: a\n    user:\n      client-certificate-data: CRT\n",
	"users:\n-\n  name: a\n  user:\n    client-certificate-data: CRT\n",
	"users:\n- - name: a\n",
	"a" + strings.Repeat("b", 70) + ": x\nusers:\n- name: a\n  user:\n    client-certificate-data: CRT\n",
	"",
	"\n\n",
	"{]",
}

// TestScanKubeconfigSameAsYAML holds ParseKubeconfig to its former self on every kubeconfig
// pkigen and clientcmd write, which ScanKubeconfig must take (they are what fleet serve reads at
// scale), and on the edge cases, which it may leave to sigs.k8s.io/yaml.
func TestScanKubeconfigSameAsYAML(t *testing.T) {
	scanned, edge := kubeconfigCorpus(t, true)
	for _, data := range scanned {
		if !sameAsBefore(t, data) {
			t.Errorf("ScanKubeconfig leaves to sigs.k8s.io/yaml a kubeconfig written as k0s or clientcmd write them:\n%s", data)
		}
	}
	took := 0
	for _, data := range edge {
		if sameAsBefore(t, data) {
			took++
		}
	}
	t.Logf("%d of %d edge cases read by ScanKubeconfig, the rest by sigs.k8s.io/yaml", took, len(edge))
}

// FuzzScanKubeconfig: any bytes, the same result as before, error or not.
func FuzzScanKubeconfig(f *testing.F) {
	scanned, edge := kubeconfigCorpus(f, false)
	for _, data := range append(scanned, edge...) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) { sameAsBefore(t, data) })
}

// TestScanKubeconfigGenerated compares on documents built from the pieces ScanKubeconfig
// decides on (the fields' names and their case and dash variants, scalars YAML resolves, flow
// and block forms, indentations, duplicate and null entries), with one byte changed in some:
// coverage-guided fuzzing rarely reaches these from the seeds.
func TestScanKubeconfigGenerated(t *testing.T) {
	p := genPKI(t, nil)
	crt := base64.StdEncoding.EncodeToString(p.Files["admin.crt"])
	keys := []string{"clusters", "users", "cluster", "user", "name", "server", "certificate-authority-data",
		"client-certificate-data", "client-key-data", "kind", "contexts", "context", "preferences", "a1", "x-y"}
	oddKeys := []string{"Users", "NAME", "Client-Key-Data", "client_key_data", "null", "y", "on", "True", "1", "a b"}
	scalars := []string{crt, base64.StdEncoding.EncodeToString(p.Files["admin.key"]), "https://x:6443", "a:b", "a",
		"true", "yes", "No", "~", "null", "{}", "[]", "{a: b}", "{a: b, c: d}", "LS0", "TFMwdA==", "a.b@c~d=e+f/g-h_i"}
	oddScalars := []string{"123", "0x1f", "1.5", ".5", "-a", "{a: b:c}", `"q"`, "'q'", "x#y", "a #c", "a: b", "&a x", "*a",
		"!!str x", "|", "@x", "a,b", "a]", "{a: b,}", "[a]", "a:"}
	rng := rand.New(rand.NewPCG(20, 3))
	pick := func(common, odd []string) string {
		if rng.IntN(6) == 0 {
			return odd[rng.IntN(len(odd))]
		}
		return common[rng.IntN(len(common))]
	}
	var gen func(b *strings.Builder, indent string, depth int)
	gen = func(b *strings.Builder, indent string, depth int) {
		for range 1 + rng.IntN(3) {
			b.WriteString(indent + pick(keys, oddKeys) + ":")
			switch r := rng.IntN(10); {
			case depth > 3 || r < 4:
				b.WriteString(" " + pick(scalars, oddScalars) + "\n")
			case r < 5:
				b.WriteString("\n") // null
			case r < 7:
				b.WriteString("\n")
				gen(b, indent+strings.Repeat(" ", 1+rng.IntN(3)), depth+1)
			default:
				b.WriteString("\n")
				item := indent + strings.Repeat(" ", rng.IntN(3)) + "-" + strings.Repeat(" ", 1+rng.IntN(2))
				for range 1 + rng.IntN(3) {
					if rng.IntN(5) == 0 {
						b.WriteString(item + pick(scalars, oddScalars) + "\n")
						continue
					}
					var sub strings.Builder
					gen(&sub, strings.Repeat(" ", len(item)), depth+1)
					b.WriteString(item + strings.TrimLeft(sub.String(), " "))
				}
			}
		}
	}
	took, n := 0, 5000
	for range n {
		var b strings.Builder
		gen(&b, "", 0)
		data := []byte(b.String())
		if rng.IntN(4) == 0 && len(data) > 0 {
			i := rng.IntN(len(data))
			data = append(data[:i:i], append([]byte{" \n-:{}#\t"[rng.IntN(8)]}, data[i+rng.IntN(2):]...)...)
		}
		if sameAsBefore(t, data) {
			took++
		}
	}
	t.Logf("%d of %d generated documents read by ScanKubeconfig, the rest by sigs.k8s.io/yaml", took, n)
}
