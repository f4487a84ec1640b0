package watch_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/exporter/exportertest"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/restart"
	"github.com/certguard/certguard/watch"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// dashboardQueries reads testdata/exporter/dashboard.txt: a title line, then its query.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "exporter", "dashboard.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	var title string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case title == "":
			title = line
		default:
			out[title] = line
			title = ""
		}
	}
	if len(out) < 20 {
		t.Fatalf("dashboard.txt: %d queries", len(out))
	}
	return out
}

// TestExporterAlertsAndDashboard scrapes a live `certguard watch` (a pki dir and a Secret, with
// certificates that expire in 10 and 20 days, expired 5 days ago, or last long) and evaluates
// x509-certificate-exporter's own alert expressions and dashboard queries (testdata/exporter/)
// on that scrape with `promtool test rules`: CertificateExpiration fires for exactly the
// certificates under 14 days, SourceDown and the error alerts stay quiet, and every dashboard
// panel query returns series.
func TestExporterAlertsAndDashboard(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	p, err := pkigen.Generate(pkigen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ca := p.CAs["ca"]
	issue := func(cn string, issuedAgo time.Duration) (crt, key []byte) {
		crt, key, err := p.Issue(ca, pkigen.Leaf{CN: []string{cn}, O: []string{"certguard-test"}, Client: true, Issued: now.Add(-issuedAgo), Lifetime: 365 * day})
		if err != nil {
			t.Fatal(err)
		}
		return crt, key
	}
	soon, soonKey := issue("soon", 355*day) // 10 days left: critical
	expired, _ := issue("expired", 370*day) // expired 5 days ago: critical too
	month, _ := issue("month", 345*day)     // 20 days left: a warning, not critical
	year, _ := issue("year", 0)
	secretSoon, _ := issue("secret-soon", 355*day)
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pkigen.WriteDir(dir, map[string][]byte{
		"ca.crt": p.Files["ca.crt"], "soon.crt": soon, "expired.crt": expired, "month.crt": month, "year.crt": year,
		"soon.conf": pkigen.Kubeconfig("https://127.0.0.1:6443", p.Files["ca.crt"], soon, soonKey),
	}); err != nil {
		t.Fatal(err)
	}
	ns, err := env.Namespace(ctx, "exporter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vc-certs"},
		Data: map[string][]byte{"ca.crt": p.Files["ca.crt"], "server.crt": secretSoon}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	client, err := kube.NewClient(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	s := &watch.Sidecar{PKIDir: dir, BackupDir: dir + ".old", RenewBefore: 120 * day, Reminder: 6 * time.Hour, Debounce: 50 * time.Millisecond,
		Restart: restart.Policy{Before: 30 * day, MinInterval: day, MaxSkew: 5 * time.Minute},
		Listen:  "127.0.0.1:0", Secrets: &kube.SecretStore{Client: client, Namespace: ns, Name: "vc-certs", Retry: time.Second},
		Client: client, Namespace: ns, Pod: "vc-0", Log: quiet, Now: time.Now, Ready: make(chan struct{})}
	runSidecar(t, s)
	scrapedAt := time.Now().Truncate(time.Second)
	fams := scrape(t, s.Addr)

	// The scrape, as promtool input series: each sample held for the whole test group.
	series := exportertest.InputSeries([]exportertest.Scrape{{Fams: fams, Minutes: 401}})

	// Which certificates must fire, known from how they were made above; their label sets
	// (which promtool compares whole) are read from the scrape.
	critical := []map[string]string{
		{"filename": "soon.crt", "embedded_kind": ""},
		{"filename": "expired.crt", "embedded_kind": ""},
		{"filename": "soon.conf", "embedded_kind": "user"},
		{"secret_key": "server.crt"},
	}
	var expAlerts []map[string]any
	for _, id := range critical {
		m := exportertest.Find(fams["x509_cert_not_after"], id)
		if m == nil {
			t.Fatalf("no x509_cert_not_after series for %v", id)
		}
		l := exportertest.Labels(m)
		for k, v := range l {
			if v == "" {
				delete(l, k)
			}
		}
		l["severity"] = "critical"
		expAlerts = append(expAlerts, map[string]any{"exp_labels": l})
	}

	var exprTests []map[string]any
	for title, q := range dashboardQueries(t) {
		// "returns series": count() of the query is then 1 or more, clamped to 1.
		exprTests = append(exprTests, map[string]any{"expr": "clamp_max(count(" + q + "), 1) # " + title, "eval_time": "20m",
			"exp_samples": []map[string]any{{"labels": "{}", "value": 1}}})
	}
	sort.Slice(exprTests, func(i, j int) bool { return exprTests[i]["expr"].(string) < exprTests[j]["expr"].(string) })
	quiet := func(name string) map[string]any {
		return map[string]any{"alertname": name, "eval_time": "40m", "exp_alerts": []any{}}
	}
	exportertest.Run(t, exportertest.AlertsFile(), map[string]any{
		"name":            "certguard watch scraped at " + scrapedAt.UTC().Format(time.RFC3339),
		"start_timestamp": scrapedAt.Unix(),
		"interval":        "1m",
		"input_series":    series,
		"alert_rule_test": []map[string]any{
			{"alertname": "CertificateExpiration", "eval_time": "20m", "exp_alerts": expAlerts},
			quiet("SourceDown"), quiet("SourceErrors"), quiet("SourceErrorsSustained"), quiet("CertificateNotYetValid"),
		},
		"promql_expr_test": exprTests,
	})
	t.Logf("%d series scraped; CertificateExpiration fires for %d; %d dashboard queries return series", len(series), len(expAlerts), len(exprTests))
}

// TestSourceDownOnALiveScrape scrapes a live `certguard watch` while its Secret is there, after
// it is deleted, and once it is re-created, and runs x509-certificate-exporter's SourceDown alert
// over the three scrapes laid end to end: quiet, then firing for the kube-secret source alone
// once it has been down for the alert's 5 minutes, then resolved.
func TestSourceDownOnALiveScrape(t *testing.T) {
	ctx := context.Background()
	v := newVcluster(t, 30*day)
	s, _ := v.sidecar(t, nil, false)
	ref := map[string]string{"source_kind": "kube-secret", "source_name": v.ns + "/vc-certs"}
	upIs := func(want float64) func() bool {
		return func() bool { got, ok := value(scrape(t, s.Addr), "x509_source_up", ref); return ok && got == want }
	}
	if !upIs(1)() {
		t.Fatal("the Secret's source is not up at start")
	}
	up := scrape(t, s.Addr)
	sec, err := env.Client.CoreV1().Secrets(v.ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.CoreV1().Secrets(v.ns).Delete(ctx, "vc-certs", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Secret's source down", upIs(0))
	down := scrape(t, s.Addr)
	if _, ok := value(down, "x509_cert_not_after", map[string]string{"secret_name": "vc-certs"}); ok {
		t.Error("the deleted Secret's certificates are still served")
	}
	sec.ResourceVersion, sec.UID = "", ""
	if _, err := env.Client.CoreV1().Secrets(v.ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Secret's source up again", upIs(1))
	exportertest.Run(t, exportertest.AlertsFile(), exportertest.SourceDownTest("certguard watch: the Secret deleted and re-created", up, down, scrape(t, s.Addr), ref))
}
