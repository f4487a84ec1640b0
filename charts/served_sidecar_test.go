package charts_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/exporter/exportertest"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/probe/probetest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// TestSidecarServedAlertsOnALiveScrape runs the add-on chart's PrometheusRule (rendered by helm)
// with promtool over live scrapes of `certguard watch`, the binary as the pod runs it, with its
// Secret on the test apiserver and its two probes pointed at local TLS servers standing for k0s's
// API server and the syncer. The test switches what they serve, three times:
//
//  1. healthy, 10 minutes: the API server serves the stored server.crt, the syncer a leaf of the
//     stored ca.crt. Nothing fires.
//  2. broken, 60 minutes: the API server serves a leaf that is not server.crt (another CA's) and
//     expires in 5 days; the syncer a leaf of the stored CA that expired 35 days ago.
//     CertguardCertificateExpired fires for the syncer's served leaf after its 5 minutes,
//     CertguardCertificateExpiresSoon (warning and critical) for the API server's after 15,
//     CertguardServedCertificateNotStored for the API server after for.drift (30 minutes), and
//     not for the syncer, whose leaf the stored CA signed.
//  3. repaired, 30 minutes: the API server serves server.crt again, the syncer a fresh leaf.
//     Every alert resolves.
//
// The expiry alerts are the sidecar's existing ones: that they fire on the served series
// (discriminator served:<endpoint>, filepath tls://host:port) is what the expected labels, read
// from the scrape, prove. The sidecar probes once a minute, so each phase is a sidecar started
// after the switch (its first probe comes within the jitter); promtool lays the scrapes end to end.
func TestSidecarServedAlertsOnALiveScrape(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "sidecarserved")
	const release, pod = "my-vcluster", "my-vcluster-0"
	svc := release + "-certguard-metrics"

	// The chart's rules for this vcluster, annotations left out (promtool would compare them).
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("prometheusRule: {enabled: true, alertLabels: {team: platform}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, nil, helmBin, "template", release+"-certguard", chartDir, "-n", ns, "-f", values, "--show-only", "templates/prometheusrule.yaml")
	docs := parseDocs(t, r.stdout)
	if len(docs) != 1 {
		t.Fatalf("want one PrometheusRule, got:\n%s", r.stdout)
	}
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	b, err := yaml.Marshal(obj{"groups": withoutAnnotations(get(docs[0], "spec", "groups"))})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rules, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// The vcluster: its PKI on disk and in its Secret, its two endpoints.
	now := time.Now()
	v := probetest.NewVcluster(t)
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pkigen.WriteDir(dir, v.PKI.Files); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: release + "-certs"},
		Type: corev1.SecretTypeOpaque, Data: v.PKI.SecretData()}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	issue := func(p *pkigen.PKI, issuedAgo time.Duration) (crt, key []byte) {
		crt, key, err := p.Issue(p.CAs["ca"], pkigen.Leaf{CN: []string{"kube-apiserver"}, Server: true, Issued: now.Add(-issuedAgo), Lifetime: 365 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return crt, key
	}
	stored := probetest.KeyPair(t, v.PKI.Files["server.crt"], v.PKI.Files["server.key"])
	api := probetest.Start(t, stored)
	syncer := probetest.Start(t, probetest.KeyPair(t, v.SyncerCrt, v.SyncerKey))
	soonCrt, soonKey := issue(v.Other, 360*24*time.Hour)     // 5 days left, not server.crt
	expiredCrt, expiredKey := issue(v.PKI, 400*24*time.Hour) // expired 35 days ago, the stored CA's
	freshCrt, freshKey := issue(v.PKI, 0)                    // what the syncer makes at a restart

	// phase starts the sidecar, waits until both endpoints' served leaves are the ones given,
	// scrapes it and stops it. The series carry the labels the ServiceMonitor's scrape adds.
	phase := func(what string, apiCrt, syncerCrt []byte) map[string]*dto.MetricFamily {
		t.Helper()
		want := map[string]float64{"apiserver": notAfterOf(t, apiCrt), "syncer": notAfterOf(t, syncerCrt)}
		sc := serveFleet(t, []string{"watch", "--vcluster-name=" + release, "--kubeconfig=" + adminKubeconfig, "--namespace=" + ns,
			"--pod-name=" + pod, "--pki-dir=" + dir, "--listen=:0", "--dry-run", "--probe-apiserver=" + api.Addr, "--probe-syncer=" + syncer.Addr}, nil)
		var fams map[string]*dto.MetricFamily
		sc.waitMetrics(t, what+": both endpoints' served leaves", func(metrics string) bool {
			var p expfmt.TextParser
			f, err := p.TextToMetricFamilies(strings.NewReader(metrics))
			if err != nil || f["certguard_vcluster_served_mismatch"] == nil || len(f["certguard_vcluster_served_mismatch"].Metric) != 2 {
				return false
			}
			for _, m := range f["certguard_vcluster_served_expiry_timestamp_seconds"].GetMetric() {
				if m.GetGauge().GetValue() != want[exportertest.Labels(m)["endpoint"]] {
					return false
				}
			}
			fams = f
			return true
		})
		sc.stop(t)
		for _, f := range fams {
			for _, m := range f.Metric {
				for k, v := range map[string]string{"namespace": ns, "service": svc, "pod": pod} {
					m.Label = append(m.Label, &dto.LabelPair{Name: &k, Value: &v})
				}
			}
		}
		return fams
	}
	start := time.Now().Truncate(time.Second)
	healthy := phase("healthy", v.PKI.Files["server.crt"], v.SyncerCrt)
	api.Set(probetest.KeyPair(t, soonCrt, soonKey))
	syncer.Set(probetest.KeyPair(t, expiredCrt, expiredKey))
	broken := phase("broken", soonCrt, expiredCrt)
	api.Set(stored)
	syncer.Set(probetest.KeyPair(t, freshCrt, freshKey))
	repaired := phase("repaired", v.PKI.Files["server.crt"], freshCrt)

	// An alert's labels: its series' as scraped (empty ones are no labels to Prometheus), the
	// rule's severity, vcluster and alertLabels.
	alert := func(name string, match map[string]string, severity string) map[string]any {
		m := exportertest.Find(broken[name], match)
		if m == nil {
			t.Fatalf("no %s%v in the broken phase's scrape", name, match)
		}
		l := map[string]string{"severity": severity, "vcluster": release, "team": "platform"}
		for k, v := range exportertest.Labels(m) {
			if v != "" && k != "vcluster" {
				l[k] = v
			}
		}
		return map[string]any{"exp_labels": l}
	}
	soon := map[string]string{"discriminator": "served:apiserver", "filepath": "tls://" + api.Addr}
	expired := map[string]string{"discriminator": "served:syncer", "filepath": "tls://" + syncer.Addr}
	warnSoon, critSoon := alert("x509_cert_not_after", soon, "warning"), alert("x509_cert_not_after", soon, "critical")
	gone := alert("x509_cert_expired", expired, "critical")
	notStored := alert("certguard_vcluster_served_mismatch", map[string]string{"endpoint": "apiserver"}, "warning")
	at := func(eval, name string, alerts ...map[string]any) map[string]any {
		return map[string]any{"eval_time": eval, "alertname": name, "exp_alerts": append([]map[string]any{}, alerts...)}
	}
	const soonA, expiredA, notStoredA = "CertguardCertificateExpiresSoon", "CertguardCertificateExpired", "CertguardServedCertificateNotStored"
	exportertest.Run(t, rules, map[string]any{
		"name":            "certguard watch probing two endpoints, scraped from " + start.UTC().Format(time.RFC3339),
		"start_timestamp": start.Unix(),
		"interval":        "1m",
		"input_series":    exportertest.InputSeries([]exportertest.Scrape{{Fams: healthy, Minutes: 10}, {Fams: broken, Minutes: 60}, {Fams: repaired, Minutes: 30}}),
		"alert_rule_test": []map[string]any{
			at("9m", soonA), at("9m", expiredA), at("9m", notStoredA),
			at("14m", expiredA), at("16m", expiredA, gone), // for: 5m
			at("24m", soonA), at("26m", soonA, warnSoon, critSoon), // for: 15m
			at("39m", notStoredA), at("41m", notStoredA, notStored), // for: for.drift, 30m
			at("69m", soonA, warnSoon, critSoon), at("69m", expiredA, gone), at("69m", notStoredA, notStored),
			at("71m", soonA), at("71m", expiredA), at("71m", notStoredA), // the served leaves are the stored ones again
			at("99m", soonA), at("99m", expiredA), at("99m", notStoredA),
		},
	})
}

// notAfterOf is a PEM certificate's NotAfter in Unix seconds.
func notAfterOf(t *testing.T, pemBytes []byte) float64 {
	t.Helper()
	c, err := pki.ParseCertPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return float64(c.NotAfter.Unix())
}
