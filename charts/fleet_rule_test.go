package charts_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// prometheusRuleCRD is a PrometheusRule CRD written from prometheus-operator's documented API
// (testdata/; a structural schema, no unknown fields), installed in the test apiserver so that a
// strict server-side dry run rejects a field the real CRD does not have.
const prometheusRuleCRD = "testdata/monitoring.coreos.com_prometheusrules.yaml"

// TestFleetPrometheusRule renders fleet serve's PrometheusRule (custom leaf thresholds, default CA
// ones), validates it (helm lint, a strict decode, a strict server-side dry run against the
// CRD, promtool check rules), and runs its alerts with promtool on synthetic series whose expected
// alerts are written out below.
func TestFleetPrometheusRule(t *testing.T) {
	ns := namespace(t, "fleetrule")
	const svc = "certguard-fleet-serve"
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
rbac: {events: false}
fleet:
  serve:
    enabled: true
    prometheusRule:
      enabled: true
      labels: {release: kube-prometheus-stack}
      leafExpiresSoon: {warning: 21d, critical: 7d}
      alertLabels: {team: platform}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := mustRun(t, nil, helmBin, "lint", chartDir, "--strict", "-f", values); strings.Contains(r.stdout, "[WARNING]") {
		t.Errorf("helm lint --strict:\n%s", r.stdout)
	}
	r := mustRun(t, nil, helmBin, "template", "certguard-fleet", chartDir, "-n", ns, "-f", values)
	var o obj
	for _, d := range parseDocs(t, r.stdout) {
		if str(d, "kind") == "PrometheusRule" {
			if o != nil {
				t.Fatal("two PrometheusRules: the sidecar's rule is off in these values")
			}
			o = d
		}
	}
	if o == nil {
		t.Fatalf("no PrometheusRule rendered:\n%s", r.stdout)
	}
	if str(o, "metadata", "name") != svc || str(o, "metadata", "namespace") != ns || str(o, "metadata", "labels", "release") != "kube-prometheus-stack" {
		t.Errorf("PrometheusRule metadata %v", get(o, "metadata"))
	}
	names := alertsOf(t, o, fmt.Sprintf(`namespace=%q,service=%q`, ns, svc))
	if want := []string{
		"CertguardFleetServeDown/warning",
		"CertguardKubeconfigExpiresSoon/warning",
		"CertguardVclusterCAExpiresSoon/critical", "CertguardVclusterCAExpiresSoon/warning",
		"CertguardVclusterExpired/critical",
		"CertguardVclusterLeafExpiresSoon/critical", "CertguardVclusterLeafExpiresSoon/warning",
		"CertguardVclusterNoInitContainer/warning",
		"CertguardVclusterRestartBlocked/warning",
		"CertguardVclusterRestartStalled/critical",
		"CertguardVclusterUnreadable/warning",
	}; !slices.Equal(names, want) {
		t.Errorf("alerts %v, want %v", names, want)
	}
	// The thresholds in seconds: 21d, 7d, and the CA's defaults 90d, 30d.
	for _, w := range []string{"< 1814400", "< 604800", "< 7776000", "< 2592000"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("no threshold %q in the rules", w)
		}
	}

	serverDryRunRule(t, o)

	promtool, write := promtoolCheckRules(t, o)

	// Every test evaluates at 2h, when time() is 7200: a NotAfter of 7200 + N days is N days away.
	const day = 86400
	at := func(days int) string { return fmt.Sprintf("%dx180", 7200+days*day) }
	series := func(metric, vcluster, extra, values string) obj {
		l := fmt.Sprintf(`namespace=%q,service=%q,secret_namespace="team-a",vcluster=%q`, ns, svc, vcluster)
		if extra != "" {
			l += "," + extra
		}
		return obj{"series": metric + "{" + l + "}", "values": values}
	}
	alert := func(vcluster, severity string, extra ...string) obj {
		l := obj{"namespace": ns, "service": svc, "secret_namespace": "team-a", "vcluster": vcluster, "severity": severity, "team": "platform"}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return obj{"exp_labels": l}
	}
	up := func(values string) obj {
		return obj{"series": fmt.Sprintf(`up{namespace=%q,service=%q,job=%q,pod="certguard-fleet-serve-1"}`, ns, svc, svc), "values": values}
	}
	const leaf, ca = "certguard_vcluster_leaf_expiry_timestamp_seconds", "certguard_vcluster_ca_expiry_timestamp_seconds"
	const status, initC, blocked = "certguard_vcluster_status", "certguard_vcluster_init_container", "certguard_vcluster_restart_blocked"
	tests := obj{
		"rule_files":          []any{"bare.yaml"},
		"evaluation_interval": "1m",
		"tests": []any{
			obj{
				"interval": "1m",
				"input_series": []any{
					up("1x180"),
					// Leaves: warning below 21d, critical below 7d, nothing once expired.
					series(leaf, "leaf-20d", "", at(20)), // warning
					series(leaf, "leaf-22d", "", at(22)), // nothing
					series(leaf, "leaf-5d", "", at(5)),   // warning and critical
					series(leaf, "leaf-8d", "", at(8)),   // warning
					series(leaf, "leaf-gone", "", at(-1)),
					obj{"series": leaf + `{namespace="other",service="x",secret_namespace="team-a",vcluster="leaf-other"}`, "values": at(1)},
					// CA: warning below 90d, critical below 30d.
					series(ca, "ca-60d", "", at(60)),   // warning
					series(ca, "ca-20d", "", at(20)),   // warning and critical
					series(ca, "ca-100d", "", at(100)), // nothing
					// Statuses: EXPIRED fires after 5m, UNREADABLE after 15m.
					series(status, "expired", `status="EXPIRED"`, "1x180"),
					series(status, "expired", `status="OK"`, "0x180"),
					series(status, "expired-late", `status="EXPIRED"`, "0x114 1x65"),      // 1 from 1h55m: 5m at 2h
					series(status, "expired-later", `status="EXPIRED"`, "0x115 1x64"),     // 1 from 1h56m: pending at 2h
					series(status, "unreadable", `status="UNREADABLE"`, "0x100 1x79"),     // 1 from 1h41m: 19m at 2h
					series(status, "unreadable-new", `status="UNREADABLE"`, "0x110 1x69"), // 1 from 1h51m: 9m
					// Due or expired without certguard's init container fires (after 1h); with it, or when OK, not.
					series(status, "due-no-init", `status="DUE"`, "1x180"),
					series(initC, "due-no-init", "", "0x180"),
					series(status, "due-init", `status="DUE"`, "1x180"),
					series(initC, "due-init", "", "1x180"),
					series(status, "expired-no-init", `status="EXPIRED"`, "1x180"),
					series(initC, "expired-no-init", "", "0x180"),
					series(status, "ok-no-init", `status="DUE"`, "0x180"),
					series(status, "ok-no-init", `status="OK"`, "1x180"),
					series(initC, "ok-no-init", "", "0x180"),
					// Restart blocked for 1h fires; for 30m, or never, not.
					series(blocked, "blocked", "", "1x180"),
					series(blocked, "blocked-new", "", "0x90 1x89"),
					series(blocked, "unblocked", "", "0x180"),
					// Exported kubeconfigs: warning below 30d (the default), for 15m.
					obj{"series": fmt.Sprintf(`certguard_vcluster_kubeconfig_expiry_timestamp_seconds{namespace=%q,service=%q,secret_namespace="team-a",secret_name="vc-kc-10d",vcluster="kc"}`, ns, svc), "values": at(10)},
					obj{"series": fmt.Sprintf(`certguard_vcluster_kubeconfig_expiry_timestamp_seconds{namespace=%q,service=%q,secret_namespace="team-a",secret_name="vc-kc-40d",vcluster="kc"}`, ns, svc), "values": at(40)},
					// A stalled restart fires at once; one that came back, not.
					series("certguard_vcluster_restart_stalled", "stalled", "", "0x100 1x79"),
					series("certguard_vcluster_restart_stalled", "back", "", "0x100 1x10 0x69"),
				},
				"alert_rule_test": []any{
					obj{"eval_time": "2h", "alertname": "CertguardVclusterLeafExpiresSoon", "exp_alerts": []any{
						alert("leaf-20d", "warning"), alert("leaf-5d", "warning"), alert("leaf-5d", "critical"), alert("leaf-8d", "warning"),
					}},
					obj{"eval_time": "2h", "alertname": "CertguardVclusterCAExpiresSoon", "exp_alerts": []any{
						alert("ca-60d", "warning"), alert("ca-20d", "warning"), alert("ca-20d", "critical"),
					}},
					obj{"eval_time": "3m", "alertname": "CertguardVclusterExpired", "exp_alerts": []any{}},
					obj{"eval_time": "2h", "alertname": "CertguardVclusterExpired", "exp_alerts": []any{
						alert("expired", "critical", "status", "EXPIRED"), alert("expired-late", "critical", "status", "EXPIRED"),
						alert("expired-no-init", "critical", "status", "EXPIRED"),
					}},
					obj{"eval_time": "2h", "alertname": "CertguardVclusterUnreadable", "exp_alerts": []any{
						alert("unreadable", "warning", "status", "UNREADABLE"),
					}},
					obj{"eval_time": "2h", "alertname": "CertguardVclusterNoInitContainer", "exp_alerts": []any{
						alert("due-no-init", "warning"), alert("expired-no-init", "warning"),
					}},
					obj{"eval_time": "2h", "alertname": "CertguardVclusterRestartBlocked", "exp_alerts": []any{
						alert("blocked", "warning"),
					}},
					obj{"eval_time": "2h", "alertname": "CertguardVclusterRestartStalled", "exp_alerts": []any{
						alert("stalled", "critical"),
					}},
					obj{"eval_time": "100m", "alertname": "CertguardVclusterRestartStalled", "exp_alerts": []any{}},
					obj{"eval_time": "2h", "alertname": "CertguardKubeconfigExpiresSoon", "exp_alerts": []any{
						alert("kc", "warning", "secret_name", "vc-kc-10d"),
					}},
					obj{"eval_time": "2h", "alertname": "CertguardFleetServeDown", "exp_alerts": []any{}},
				},
			},
			// fleet serve's target down since 1h, then never scraped at all: both fire, with
			// no labels but the rule's (absent() has none to keep).
			obj{
				"interval":     "1m",
				"input_series": []any{up("1x60 0x120")},
				"alert_rule_test": []any{
					obj{"eval_time": "65m", "alertname": "CertguardFleetServeDown", "exp_alerts": []any{}},
					obj{"eval_time": "2h", "alertname": "CertguardFleetServeDown", "exp_alerts": []any{
						obj{"exp_labels": obj{"severity": "warning", "team": "platform"}},
					}},
				},
			},
			obj{
				"interval":     "1m",
				"input_series": []any{obj{"series": `up{namespace="other",service="x"}`, "values": "1x180"}},
				"alert_rule_test": []any{
					obj{"eval_time": "2h", "alertname": "CertguardFleetServeDown", "exp_alerts": []any{
						obj{"exp_labels": obj{"severity": "warning", "team": "platform"}},
					}},
				},
			},
		},
	}
	r = run(t, nil, promtool, "test", "rules", write("tests.yaml", tests))
	if r.code != 0 {
		t.Errorf("promtool test rules: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// installPrometheusRuleCRD installs prometheus-operator's PrometheusRule CRD in the test
// apiserver (apply is idempotent) and waits until it is served.
func installPrometheusRuleCRD(t *testing.T) {
	t.Helper()
	kc := []string{"KUBECONFIG=" + adminKubeconfig}
	mustRun(t, kc, kubectlBin, "apply", "--server-side", "-f", prometheusRuleCRD)
	mustRun(t, kc, kubectlBin, "wait", "--for=condition=Established", "--timeout=30s", "crd/prometheusrules.monitoring.coreos.com")
	// Discovery can lag the Established condition by a moment.
	for end := time.Now().Add(30 * time.Second); ; {
		r := run(t, kc, kubectlBin, "api-resources", "--api-group=monitoring.coreos.com", "-o", "name")
		if r.code == 0 && strings.Contains(r.stdout, "prometheusrules.monitoring.coreos.com") {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("the PrometheusRule CRD is not served: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// serverDryRunRule server-dry-runs a PrometheusRule with strict validation against the CRD.
func serverDryRunRule(t *testing.T, o obj) {
	t.Helper()
	installPrometheusRuleCRD(t)
	b, err := yaml.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rule.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, []string{"KUBECONFIG=" + adminKubeconfig}, kubectlBin, "apply", "--dry-run=server", "--validate=strict", "-f", p)
	want := "prometheusrule.monitoring.coreos.com/" + str(o, "metadata", "name") + " created (server dry run)"
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("kubectl apply --dry-run=server --validate=strict of the PrometheusRule: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// alertsOf decodes the PrometheusRule o strictly and returns its alerts as "alert/severity",
// sorted, after checking each rule: every series selector starts with sel (the fleet service's
// own series only), a summary and a description, and the alertLabels (team=platform) the tests'
// values set.
func alertsOf(t *testing.T, o obj, sel string) []string {
	t.Helper()
	var pr prometheusRule
	strict(t, o, &pr)
	var names []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert+"/"+r.Labels["severity"])
			if !strings.Contains(r.Expr, sel) || strings.Count(r.Expr, "{") != strings.Count(r.Expr, "{"+sel) {
				t.Errorf("%s: every series selector must start with %s: %s", r.Alert, sel, r.Expr)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" || r.Labels["team"] != "platform" {
				t.Errorf("%s: no summary/description, or labels %v without the alertLabels", r.Alert, r.Labels)
			}
		}
	}
	slices.Sort(names)
	return names
}

// promtoolCheckRules checks the rule groups of the PrometheusRule o with `promtool check rules`
// (the PromQL and templates parse) and writes them without annotations to bare.yaml for the
// caller's `promtool test rules` (which compares annotations too: they are checked apart). It
// returns promtool's path and a writer into the same dir.
func promtoolCheckRules(t *testing.T, o obj) (string, func(name string, v any) string) {
	t.Helper()
	promtool, err := tool("promtool")
	if err != nil {
		t.Fatal(err)
	}
	write := yamlWriter(t, t.TempDir())
	groups := get(o, "spec", "groups")
	r := mustRun(t, nil, promtool, "check", "rules", write("rules.yaml", obj{"groups": groups}))
	t.Logf("promtool check rules: %s", strings.TrimSpace(r.stdout))
	write("bare.yaml", obj{"groups": withoutAnnotations(groups)})
	return promtool, write
}
