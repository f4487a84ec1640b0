package charts_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/probe/probetest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestServedPrometheusRule renders the served-certificate alerts (fleet.serve.probeServed with
// its prometheusRule), validates them (helm lint, a strict decode, a strict server-side dry run
// against the CRD, promtool check rules) and runs them with promtool on synthetic series of
// certguard_vcluster_served_*, whose expected alerts are written out below.
func TestServedPrometheusRule(t *testing.T) {
	ns := namespace(t, "servedrule")
	const svc = "certguard-fleet-serve"
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
rbac: {events: false}
fleet:
  serve:
    enabled: true
    probeServed: true
    restartReadyTimeout: 20m
    prometheusRule:
      enabled: true
      leafExpiresSoon: {warning: 21d, critical: 7d}
      alertLabels: {team: platform}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := mustRun(t, nil, helmBin, "lint", chartDir, "--strict", "-f", values); strings.Contains(r.stdout, "[WARNING]") {
		t.Errorf("helm lint --strict:\n%s", r.stdout)
	}
	r := mustRun(t, nil, helmBin, "template", "certguard-fleet", chartDir, "-n", ns, "-f", values, "--show-only", "templates/served-prometheusrule.yaml")
	docs := parseDocs(t, r.stdout)
	if len(docs) != 1 || str(docs[0], "kind") != "PrometheusRule" {
		t.Fatalf("want one PrometheusRule, got:\n%s", r.stdout)
	}
	o := docs[0]
	names := alertsOf(t, o, fmt.Sprintf(`namespace=%q,service=%q`, ns, svc))
	if want := []string{"CertguardServedCertificateExpired/critical", "CertguardServedCertificateExpiresSoon/critical",
		"CertguardServedCertificateExpiresSoon/warning", "CertguardServedCertificateNotStored/warning"}; !slices.Equal(names, want) {
		t.Errorf("alerts %v, want %v", names, want)
	}
	// probeServed passes --probe-served and grants list on endpointslices, nothing more; without
	// it, none of that and no served alerts (the series would not exist).
	on := mustRun(t, nil, helmBin, "template", "certguard-fleet", chartDir, "-n", ns, "-f", values)
	off := mustRun(t, nil, helmBin, "template", "certguard-fleet", chartDir, "-n", ns, "-f", values, "--set", "fleet.serve.probeServed=false")
	for _, w := range []string{"- --probe-served\n", `resources: ["endpointslices"]` + "\n    verbs: [\"list\"]\n", "CertguardServedCertificate"} {
		if !strings.Contains(on.stdout, w) || strings.Contains(off.stdout, w) {
			t.Errorf("%q: rendered with probeServed %v, without %v", w, strings.Contains(on.stdout, w), strings.Contains(off.stdout, w))
		}
	}

	serverDryRunRule(t, o)

	promtool, write := promtoolCheckRules(t, o)

	// Every test evaluates at 2h, when time() is 7200: a NotAfter of 7200 + N days is N days away.
	const day = 86400
	at := func(days int) string { return fmt.Sprintf("%dx180", 7200+days*day) }
	series := func(metric, vcluster, values string) obj {
		return obj{"series": fmt.Sprintf(`%s{namespace=%q,service=%q,secret_namespace="team-a",vcluster=%q,endpoint="syncer"}`, metric, ns, svc, vcluster), "values": values}
	}
	alert := func(vcluster, severity string) obj {
		return obj{"exp_labels": obj{"namespace": ns, "service": svc, "secret_namespace": "team-a", "vcluster": vcluster, "endpoint": "syncer",
			"severity": severity, "team": "platform"}}
	}
	const expiry, mismatch = "certguard_vcluster_served_expiry_timestamp_seconds", "certguard_vcluster_served_mismatch"
	tests := obj{
		"rule_files":          []any{"bare.yaml"},
		"evaluation_interval": "1m",
		"tests": []any{obj{
			"interval": "1m",
			"input_series": []any{
				series(expiry, "in-20d", at(20)), // warning
				series(expiry, "in-5d", at(5)),   // warning and critical
				series(expiry, "in-30d", at(30)), // nothing
				series(expiry, "gone", at(-1)),   // expired, at once
				obj{"series": expiry + `{namespace="other",service="x",secret_namespace="team-a",vcluster="other",endpoint="syncer"}`, "values": at(-1)},
				// Served ≠ stored for 25m fires (restartReadyTimeout 20m); for 10m (a restart
				// under way) or never, not.
				series(mismatch, "ca-reset", "0x95 1x84"),
				series(mismatch, "restarting", "0x110 1x69"),
				series(mismatch, "same", "0x180"),
			},
			"alert_rule_test": []any{
				obj{"eval_time": "2h", "alertname": "CertguardServedCertificateExpiresSoon", "exp_alerts": []any{
					alert("in-20d", "warning"), alert("in-5d", "warning"), alert("in-5d", "critical"),
				}},
				obj{"eval_time": "2h", "alertname": "CertguardServedCertificateExpired", "exp_alerts": []any{alert("gone", "critical")}},
				obj{"eval_time": "2h", "alertname": "CertguardServedCertificateNotStored", "exp_alerts": []any{alert("ca-reset", "warning")}},
			},
		}},
	}
	r = run(t, nil, promtool, "test", "rules", write("tests.yaml", tests))
	if r.code != 0 {
		t.Errorf("promtool test rules: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	t.Run("live", func(t *testing.T) { liveServedAlerts(t, promtool, ns, svc, write) })
}

// liveServedAlerts runs certguard fleet serve --probe-served on the test apiserver against two
// vclusters whose Services' EndpointSlices point at local TLS servers: vc-reset serves a leaf of
// another CA expiring in 5 days, vc-old an expired leaf of its own CA. Their
// certguard_vcluster_served_* series, as scraped, go to promtool (held for 3 h, the expiries
// shifted so that "now" is the test's 2 h) against the rules written in bare.yaml.
func liveServedAlerts(t *testing.T, promtool, ns, svc string, write func(string, any) string) {
	ctx := context.Background()
	vcNs := namespace(t, "servedlive")
	host := probetest.HostIP(t)
	now := time.Now()
	reset, old := probetest.NewVcluster(t), probetest.NewVcluster(t)
	soon, soonKey, err := reset.Other.Issue(reset.Other.CAs["ca"], pkigen.Leaf{CN: []string{"kube-apiserver"}, Server: true, Issued: now.Add(-360 * 24 * time.Hour), Lifetime: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	expired, expiredKey, err := old.PKI.Issue(old.PKI.CAs["ca"], pkigen.Leaf{CN: []string{"kube-apiserver"}, Server: true, Issued: now.Add(-400 * 24 * time.Hour), Lifetime: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, vc := range []struct {
		name     string
		pki      *pkigen.PKI
		crt, key []byte
	}{{"vc-reset", reset.PKI, soon, soonKey}, {"vc-old", old.PKI, expired, expiredKey}} {
		srv := probetest.StartOn(t, host, probetest.KeyPair(t, vc.crt, vc.key))
		_, portStr, _ := net.SplitHostPort(srv.Addr)
		port, _ := strconv.Atoi(portStr)
		p32 := int32(port)
		labels := map[string]string{"app": "vcluster", "release": vc.name}
		if _, err := env.Client.CoreV1().Secrets(vcNs).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: vc.name + "-certs", Labels: labels},
			Type: corev1.SecretTypeOpaque, Data: vc.pki.SecretData()}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		name, ready := "https", true
		if _, err := env.Client.DiscoveryV1().EndpointSlices(vcNs).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: vc.name + "-x", Labels: map[string]string{"app": "vcluster", discoveryv1.LabelServiceName: vc.name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
			Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &p32}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	fs := serveFleet(t, []string{"fleet", "serve", "--listen=:9793", "--namespace=" + vcNs, "--renew-before=120d", "--probe-served", "--kubeconfig=" + adminKubeconfig}, nil)
	var fams map[string]*dto.MetricFamily
	fs.waitMetrics(t, "both vclusters' served series", func(metrics string) bool {
		var p expfmt.TextParser
		f, err := p.TextToMetricFamilies(strings.NewReader(metrics))
		if err != nil || f["certguard_vcluster_served_mismatch"] == nil || len(f["certguard_vcluster_served_mismatch"].Metric) < 2 {
			return false
		}
		fams = f
		return true
	})
	fs.stop(t)

	var input []any
	for _, name := range []string{"certguard_vcluster_served_expiry_timestamp_seconds", "certguard_vcluster_served_mismatch"} {
		for _, m := range fams[name].Metric {
			l := fmt.Sprintf("namespace=%q,service=%q", ns, svc)
			for _, lp := range m.Label {
				l += fmt.Sprintf(",%s=%q", lp.GetName(), lp.GetValue())
			}
			v := m.GetGauge().GetValue()
			if strings.HasSuffix(name, "_seconds") {
				v = v - float64(now.Unix()) + 7200 // promtool's clock reads 7200 at 2h
			}
			input = append(input, obj{"series": name + "{" + l + "}", "values": fmt.Sprintf("%.0fx180", v)})
		}
	}
	alert := func(vcluster, severity string) obj {
		return obj{"exp_labels": obj{"namespace": ns, "service": svc, "secret_namespace": vcNs, "vcluster": vcluster, "endpoint": "syncer",
			"severity": severity, "team": "platform"}}
	}
	tests := obj{
		"rule_files":          []any{"bare.yaml"},
		"evaluation_interval": "1m",
		"tests": []any{obj{
			"interval":     "1m",
			"input_series": input,
			"alert_rule_test": []any{
				obj{"eval_time": "2h", "alertname": "CertguardServedCertificateExpiresSoon", "exp_alerts": []any{
					alert("vc-reset", "warning"), alert("vc-reset", "critical"),
				}},
				obj{"eval_time": "2h", "alertname": "CertguardServedCertificateExpired", "exp_alerts": []any{alert("vc-old", "critical")}},
				obj{"eval_time": "2h", "alertname": "CertguardServedCertificateNotStored", "exp_alerts": []any{alert("vc-reset", "warning")}},
				obj{"eval_time": "10m", "alertname": "CertguardServedCertificateNotStored", "exp_alerts": []any{}},
			},
		}},
	}
	r := run(t, nil, promtool, "test", "rules", write("live.yaml", tests))
	if r.code != 0 {
		t.Errorf("promtool test rules on the live scrape: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
