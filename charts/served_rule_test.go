package charts_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
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
	var pr prometheusRule
	strict(t, o, &pr)
	sel := fmt.Sprintf(`namespace=%q,service=%q`, ns, svc)
	var names []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert+"/"+r.Labels["severity"])
			if strings.Count(r.Expr, "{") != strings.Count(r.Expr, "{"+sel) {
				t.Errorf("%s: every series selector must start with %s: %s", r.Alert, sel, r.Expr)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" || r.Labels["team"] != "platform" {
				t.Errorf("%s: no summary/description, or labels %v without the alertLabels", r.Alert, r.Labels)
			}
		}
	}
	slices.Sort(names)
	if want := []string{"CertguardServedCertificateExpired/critical", "CertguardServedCertificateExpiresSoon/critical",
		"CertguardServedCertificateExpiresSoon/warning", "CertguardServedCertificateNotStored/warning"}; !slices.Equal(names, want) {
		t.Errorf("alerts %v, want %v", names, want)
	}
	// Without probeServed, nothing: the series would not exist.
	off := mustRun(t, nil, helmBin, "template", "certguard-fleet", chartDir, "-n", ns, "-f", values, "--set", "fleet.serve.probeServed=false")
	if strings.Contains(off.stdout, "CertguardServedCertificate") {
		t.Error("served alerts rendered without fleet.serve.probeServed")
	}

	serverDryRunRule(t, o)

	promtool, err := tool("promtool")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, v any) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	groups := get(o, "spec", "groups")
	mustRun(t, nil, promtool, "check", "rules", write("rules.yaml", obj{"groups": groups}))
	write("bare.yaml", obj{"groups": withoutAnnotations(groups)})

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
}
