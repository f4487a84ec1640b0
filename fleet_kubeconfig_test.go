package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/pki/pkigen"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFleetServeKubeconfigs: the Secrets vcluster exports a kubeconfig to (vc-<release> in its
// namespace, exportKubeConfig Secrets anywhere) are reported with their client certificate's
// expiry and attributed to the vcluster whose ca.crt issued it; other Secrets with a config key
// are not.
func TestFleetServeKubeconfigs(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "kc")
	other, _ := kenv.Namespace(ctx, "kcexport")
	now := time.Now().Truncate(time.Second)
	p, err := pkigen.Generate(pkigen.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, ns, "alpha-certs", nil, p.SecretData())
	stranger, err := pkigen.Generate(pkigen.Options{Now: now}) // a CA no followed vcluster has
	if err != nil {
		t.Fatal(err)
	}
	// A client certificate as vcluster issues it for the exported kubeconfig: one year
	// (loft-sh/vcluster#1731), NotBefore back-dated by pkigen.Backdate.
	client := func(pk *pkigen.PKI, issued time.Time) ([]byte, []byte, time.Time) {
		crt, key, err := pk.Issue(pk.CAs["ca"], pkigen.Leaf{CN: []string{"kube-admin"}, O: []string{"system:masters"}, Client: true, Issued: issued, Lifetime: pkigen.Year})
		if err != nil {
			t.Fatal(err)
		}
		return crt, key, issued.Add(-pkigen.Backdate).Add(pkigen.Year)
	}
	// vcluster's keys (pkg/util/kubeconfig): config, certificate-authority, client-certificate,
	// client-key, token.
	exported := func(ca, crt, key []byte) map[string][]byte {
		return map[string][]byte{"config": pkigen.Kubeconfig("https://alpha."+ns+":443", ca, crt, key),
			"certificate-authority": ca, "client-certificate": crt, "client-key": key, "token": nil}
	}
	crt1, key1, exp1 := client(p, now.Add(-100*day))
	putSecret(t, ns, "vc-alpha", map[string]string{"app": "vcluster", "vcluster-name": "alpha"}, exported(p.Files["ca.crt"], crt1, key1))
	// exportKubeConfig.insecure: no certificate-authority-data, attributed by the issuer.
	crt2, key2, exp2 := client(p, now.Add(-200*day))
	putSecret(t, other, "alpha-export", nil, exported(nil, crt2, key2))
	crt3, key3, exp3 := client(stranger, now.Add(-300*day))
	putSecret(t, other, "stranger-kc", nil, exported(stranger.Files["ca.crt"], crt3, key3))
	putSecret(t, ns, "app-config", nil, map[string][]byte{"config": []byte("listen: :8080\n")})
	putSecret(t, ns, "token-kc", nil, map[string][]byte{"config": []byte("apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user: {token: abc}\n")})

	_, kc := fleetUserWith(t, "list", "watch")
	s := startServe(t, "--kubeconfig", kc)
	gauge := func(ns, name, vc string, at time.Time) string {
		return `certguard_vcluster_kubeconfig_expiry_timestamp_seconds\{secret_name="` + name + `",secret_namespace="` + ns + `",vcluster="` + vc + `"\} ` + unixValue(at)
	}
	s.eventually("kubeconfig Secrets", func(m string) bool {
		return has(m, gauge(ns, "vc-alpha", "alpha", exp1)) && has(m, gauge(other, "alpha-export", "alpha", exp2)) &&
			has(m, gauge(other, "stranger-kc", "", exp3)) &&
			has(m, `x509_cert_not_after\{.*secret_key="config",secret_name="vc-alpha",secret_namespace="`+ns+`".*subject_CN="kube-admin".*\} `+unixValue(exp1)) &&
			has(m, `x509_source_up\{source_kind="kube-secret",source_name="`+other+`/alpha-export"\} 1`)
	})
	_, m := s.get("/metrics")
	for _, not := range []string{"app-config", "token-kc", `vcluster="vc-alpha"`} {
		if strings.Contains(m, not) {
			t.Errorf("%s shows in the metrics:\n%s", not, grepLines(m, not))
		}
	}
	if strings.Contains(m, "client-key") || strings.Contains(m, `secret_key="client-certificate"`) {
		t.Errorf("a kubeconfig Secret's other keys show:\n%s", grepLines(m, "client-"))
	}

	// Renewed (vcluster rewrites the Secret at start), then deleted.
	crt4, key4, exp4 := client(p, now)
	sec, err := kenv.Client.CoreV1().Secrets(ns).Get(ctx, "vc-alpha", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data = exported(p.Files["ca.crt"], crt4, key4)
	if _, err := kenv.Client.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := kenv.Client.CoreV1().Secrets(other).Delete(ctx, "alpha-export", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.eventually("renewed and deleted", func(m string) bool {
		return has(m, gauge(ns, "vc-alpha", "alpha", exp4)) && !strings.Contains(m, `secret_name="alpha-export"`)
	})
	// A Secret that stops being a kubeconfig Secret leaves.
	sec, _ = kenv.Client.CoreV1().Secrets(other).Get(ctx, "stranger-kc", metav1.GetOptions{})
	sec.Data = map[string][]byte{"config": []byte("not: a kubeconfig\n")}
	if _, err := kenv.Client.CoreV1().Secrets(other).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.eventually("no longer a kubeconfig", func(m string) bool { return !strings.Contains(m, `secret_name="stranger-kc"`) })
	// A TLS Secret with the same keys is outside type=Opaque, like every non-vcluster type.
	if _, err := kenv.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls-kc"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"config": exported(p.Files["ca.crt"], crt1, key1)["config"], "tls.crt": crt1, "tls.key": key1}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	putSecret(t, ns, "marker-certs", nil, stranger.SecretData()) // seen after tls-kc, had it been followed
	s.eventually("marker", func(m string) bool { return strings.Contains(m, `vcluster="marker"`) })
	if _, m := s.get("/metrics"); strings.Contains(m, "tls-kc") {
		t.Errorf("a kubernetes.io/tls Secret shows:\n%s", grepLines(m, "tls-kc"))
	}
	if err := s.stop(); err != nil {
		t.Errorf("fleet serve on SIGTERM: %v\n%s", err, s.log())
	}
}
