package charts_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const chartDir = "certguard"

// valueSet is one way to install the add-on chart and what it must render.
type valueSet struct {
	name      string
	release   string
	values    string // values.yaml content
	kinds     []string
	vcluster  string            // the vcluster release the objects must serve
	sa        string            // the service account the RoleBinding must bind
	podLabels map[string]string // the metrics Service's selector
	port      float64           // the metrics port
	headless  bool              // the metrics Service has no cluster IP
	team      bool              // commonLabels team=platform
	fleet     string            // ClusterRole name
	serve     *serveWant        // fleet.serve.enabled: the fleet serve Deployment and its objects
}

// serveWant is what the fleet serve objects of a value set must be, written out by hand.
type serveWant struct {
	kinds []string // kinds of the objects labelled app.kubernetes.io/component=fleet
	args  []string
	env   []any // the container's env: GOMEMLIMIT, the Lease's namespace and holder (downward API)
	rules []any // the serve ClusterRole's rules
	role  []any // the Lease Role's rules (nil: no Role)
}

// leaseEnv is the container env that --restart-due needs: the pod's namespace (where the Lease
// lives) and its name (the Lease holder), from the downward API.
var leaseEnv = []any{
	goMemLimit,
	obj{"name": "CERTGUARD_LEASE_NAMESPACE", "valueFrom": obj{"fieldRef": obj{"fieldPath": "metadata.namespace"}}},
	obj{"name": "CERTGUARD_POD_NAME", "valueFrom": obj{"fieldRef": obj{"fieldPath": "metadata.name"}}},
}

// goMemLimit is the chart's default GOMEMLIMIT for fleet serve (values.yaml).
var goMemLimit = obj{"name": "GOMEMLIMIT", "value": "128MiB"}

var valueSets = []valueSet{
	{
		name: "defaults", release: "my-vcluster-certguard",
		kinds:    []string{"Role", "RoleBinding"},
		vcluster: "my-vcluster", sa: "vc-my-vcluster",
	},
	{
		name: "all-on", release: "my-vcluster-certguard",
		values: `
metrics: {enabled: true, serviceMonitor: {labels: {release: kube-prometheus-stack}}}
prometheusRule: {enabled: true, labels: {release: kube-prometheus-stack}, alertLabels: {team: platform}}
fleet:
  enabled: true
  subjects: [{kind: Group, name: platform-sre, apiGroup: rbac.authorization.k8s.io}]
`,
		kinds:    []string{"ClusterRole", "ClusterRoleBinding", "PrometheusRule", "Role", "RoleBinding", "Service", "ServiceMonitor"},
		vcluster: "my-vcluster", sa: "vc-my-vcluster",
		podLabels: map[string]string{"app": "vcluster", "release": "my-vcluster"},
		port:      9793,
		headless:  true,
		fleet:     "certguard-fleet",
	},
	{
		name: "other-release", release: "certguard",
		values: `
vcluster: {release: prod-vc, serviceAccount: prod-vc-sa, podLabels: {app: vcluster, release: prod-vc, tier: cp}}
metrics: {enabled: true, port: 9800, service: {headless: false}, serviceMonitor: {enabled: false}}
commonLabels: {team: platform}
`,
		kinds:    []string{"Role", "RoleBinding", "Service"},
		vcluster: "prod-vc", sa: "prod-vc-sa",
		podLabels: map[string]string{"app": "vcluster", "release": "prod-vc", "tier": "cp"},
		port:      9800,
		team:      true,
	},
	{
		name: "fleet-only", release: "certguard-fleet",
		values: `
rbac: {events: false}
fleet: {enabled: true, name: certguard-fleet-readers}
`,
		kinds: []string{"ClusterRole"},
		fleet: "certguard-fleet-readers",
	},
	{
		name: "fleet-serve", release: "certguard-fleet",
		values: `
rbac: {events: false}
fleet:
  serve:
    enabled: true
    restartWindow: "Sat 02:00-04:00"
    restartTimezone: Europe/Berlin
    maxConcurrent: 2
    serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}
`,
		kinds: []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount", "ServiceMonitor"},
		serve: &serveWant{
			kinds: []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount", "ServiceMonitor"},
			args: []string{"fleet", "serve", "--listen=:9793", "--renew-before=120d", "--restart-window=Sat 02:00-04:00",
				"--restart-timezone=Europe/Berlin", "--max-concurrent=2", "--log-format=json"},
			env: []any{goMemLimit},
			rules: []any{
				obj{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"list", "watch"}},
				obj{"apiGroups": []any{"apps"}, "resources": []any{"statefulsets"}, "verbs": []any{"list", "watch"}},
			},
		},
	},
	{
		name: "fleet-serve-restart", release: "certguard-fleet",
		values: `
rbac: {events: false}
fleet:
  enabled: true
  serve:
    enabled: true
    restartWindow: "Sat 02:00-04:00"
    restartDue: true
    dryRun: true
    restartMinInterval: 7d
    restartReadyTimeout: 20m
    serviceMonitor: {enabled: false}
    prometheusRule: {enabled: true}
`,
		kinds: []string{"ClusterRole", "ClusterRole", "ClusterRoleBinding", "Deployment", "PrometheusRule", "Role", "RoleBinding", "Service", "ServiceAccount"},
		fleet: "certguard-fleet",
		serve: &serveWant{
			kinds: []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "PrometheusRule", "Role", "RoleBinding", "Service", "ServiceAccount"},
			args: []string{"fleet", "serve", "--listen=:9793", "--renew-before=120d", "--restart-window=Sat 02:00-04:00",
				"--restart-timezone=UTC", "--max-concurrent=1", "--restart-due", "--restart-min-interval=7d",
				"--restart-ready-timeout=20m", "--lease-name=certguard-fleet-serve", "--dry-run", "--log-format=json"},
			env: leaseEnv,
			rules: []any{
				obj{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"list", "watch", "get", "update"}},
				obj{"apiGroups": []any{"apps"}, "resources": []any{"statefulsets"}, "verbs": []any{"list", "watch"}},
				obj{"apiGroups": []any{""}, "resources": []any{"pods"}, "verbs": []any{"get", "delete"}},
				obj{"apiGroups": []any{""}, "resources": []any{"events"}, "verbs": []any{"create"}},
			},
			role: []any{
				obj{"apiGroups": []any{"coordination.k8s.io"}, "resources": []any{"leases"}, "verbs": []any{"create"}},
				obj{"apiGroups": []any{"coordination.k8s.io"}, "resources": []any{"leases"}, "resourceNames": []any{"certguard-fleet-serve"}, "verbs": []any{"get", "update"}},
			},
		},
	},
}

func (v valueSet) file(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), v.name+".yaml")
	if err := os.WriteFile(p, []byte(v.values), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAddonChartLint(t *testing.T) {
	for _, strict := range []bool{false, true} {
		args := []string{"lint", chartDir}
		if strict {
			args = append(args, "--strict")
		}
		r := mustRun(t, nil, helmBin, args...)
		if !strings.Contains(r.stdout, "0 chart(s) failed") || strings.Contains(r.stdout, "[WARNING]") {
			t.Errorf("helm %s:\n%s", strings.Join(args, " "), r.stdout)
		}
		t.Logf("helm %s: %v", strings.Join(args, " "), r.took.Round(time.Millisecond))
	}
	for _, v := range valueSets {
		r := mustRun(t, nil, helmBin, "lint", chartDir, "--strict", "-f", v.file(t))
		if strings.Contains(r.stdout, "[WARNING]") {
			t.Errorf("helm lint --strict (%s):\n%s", v.name, r.stdout)
		}
	}

	// values.schema.json and the templates reject what would install something wrong.
	for _, c := range []struct{ name, set, want string }{
		{"bad release name", "vcluster.release=My_VC", "vcluster/release"},
		{"typo in a key", "metrics.enable=true", "enable"},
		{"port out of range", "metrics.port=70000", "metrics/port"},
		{"days without unit", "prometheusRule.expiresSoon.warning=28", "expiresSoon/warning"},
		{"weeks", "prometheusRule.expiresSoon.critical=2w", "expiresSoon/critical"},
		{"group without apiGroup", "fleet.subjects[0].kind=Group,fleet.subjects[0].name=sre", "apiGroup"},
		{"service account without namespace", "fleet.subjects[0].kind=ServiceAccount,fleet.subjects[0].name=x", "namespace"},
		{"warning not before critical", "prometheusRule.enabled=true,prometheusRule.expiresSoon.warning=10d", "must be longer"},
		{"fleet serve: no vcluster per opening", "fleet.serve.enabled=true,fleet.serve.maxConcurrent=0", "maxConcurrent"},
		{"fleet serve: not a window", "fleet.serve.enabled=true,fleet.serve.restartWindow=saturday night", "restartWindow"},
		{"fleet serve: renew-before without unit", "fleet.serve.enabled=true,fleet.serve.renewBefore=120", "renewBefore"},
		{"fleet serve: restarts without a window", "fleet.serve.enabled=true,fleet.serve.restartDue=true", "restartDue needs fleet.serve.restartWindow"},
		{"fleet serve: restart interval under 1h", "fleet.serve.enabled=true,fleet.serve.restartMinInterval=30m", "restartMinInterval"},
		{"fleet serve: restart interval of 0 days", "fleet.serve.enabled=true,fleet.serve.restartMinInterval=0d", "restartMinInterval"},
		{"fleet serve: ready timeout without unit", "fleet.serve.enabled=true,fleet.serve.restartReadyTimeout=15", "restartReadyTimeout"},
		{"fleet serve: dry run not a boolean", "fleet.serve.enabled=true,fleet.serve.dryRun=maybe", "dryRun"},
		{"fleet rule: typo in a key", "fleet.serve.prometheusRule.enable=true", "enable"},
		{"fleet rule: weeks", "fleet.serve.prometheusRule.caExpiresSoon.warning=12w", "caExpiresSoon/warning"},
		{"fleet rule: leaf warning not before critical", "fleet.serve.enabled=true,fleet.serve.prometheusRule.enabled=true,fleet.serve.prometheusRule.leafExpiresSoon.critical=28d", "leafExpiresSoon.warning must be longer"},
		{"fleet rule: CA warning not before critical", "fleet.serve.enabled=true,fleet.serve.prometheusRule.enabled=true,fleet.serve.prometheusRule.caExpiresSoon.warning=30d", "caExpiresSoon.warning must be longer"},
	} {
		r := run(t, nil, helmBin, "template", "x", chartDir, "--set", c.set)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s (--set %s): exit %d, want a failure mentioning %q:\n%s", c.name, c.set, r.code, c.want, r.stderr)
		}
	}
}

// render runs helm template and returns the objects.
func (v valueSet) render(t *testing.T, ns string) ([]obj, string, time.Duration) {
	t.Helper()
	r := mustRun(t, nil, helmBin, "template", v.release, chartDir, "-n", ns, "-f", v.file(t))
	return parseDocs(t, r.stdout), r.stdout, r.took
}

func TestAddonChartTemplate(t *testing.T) {
	for _, v := range valueSets {
		t.Run(v.name, func(t *testing.T) {
			ns := namespace(t, "addon")
			objs, _, took := v.render(t, ns)
			t.Logf("helm template (%s): %v", v.name, took.Round(time.Millisecond))
			var kinds []string
			byKind := map[string]obj{}
			fleetServe := map[string]obj{} // the fleet serve objects, by kind
			for _, o := range objs {
				k := str(o, "kind")
				kinds = append(kinds, k)
				if str(o, "metadata", "labels", "app.kubernetes.io/component") == "fleet" {
					fleetServe[k] = o
				} else {
					byKind[k] = o
				}
				checkMeta(t, v, ns, o)
			}
			if v.serve != nil {
				checkFleetServe(t, v, ns, fleetServe)
			} else if len(fleetServe) > 0 {
				t.Errorf("fleet serve objects without fleet.serve.enabled: %v", slices.Sorted(maps.Keys(fleetServe)))
			}
			sort.Strings(kinds)
			if !reflect.DeepEqual(kinds, v.kinds) {
				t.Fatalf("rendered kinds %v, want %v", kinds, v.kinds)
			}
			var core []obj
			for _, o := range objs {
				if !strings.HasPrefix(str(o, "apiVersion"), "monitoring.coreos.com/") {
					core = append(core, o)
				}
			}
			if role := byKind["Role"]; role != nil {
				checkRole(t, v, ns, role, byKind["RoleBinding"])
			}
			if svc := byKind["Service"]; svc != nil {
				checkService(t, v, svc)
			}
			if sm := byKind["ServiceMonitor"]; sm != nil {
				checkServiceMonitor(t, v, ns, sm, byKind["Service"])
			}
			if pr := byKind["PrometheusRule"]; pr != nil {
				checkPrometheusRule(t, v, ns, pr, byKind["Service"])
			}
			if cr := byKind["ClusterRole"]; cr != nil {
				checkFleet(t, v, cr, byKind["ClusterRoleBinding"])
			}
			serverDryRun(t, core)
		})
	}
}

func checkMeta(t *testing.T, v valueSet, ns string, o obj) {
	t.Helper()
	kind := str(o, "kind")
	if str(o, "metadata", "name") == "" {
		t.Errorf("%s without a name", kind)
	}
	clusterScoped := kind == "ClusterRole" || kind == "ClusterRoleBinding"
	if got := str(o, "metadata", "namespace"); clusterScoped != (got == "") || (!clusterScoped && got != ns) {
		t.Errorf("%s %s: namespace %q (want %q, none when cluster-scoped)", kind, str(o, "metadata", "name"), got, ns)
	}
	for k, want := range map[string]string{
		"app.kubernetes.io/name": "certguard", "app.kubernetes.io/instance": v.release, "app.kubernetes.io/managed-by": "Helm",
	} {
		if got := str(o, "metadata", "labels", k); got != want {
			t.Errorf("%s: label %s = %q, want %q", kind, k, got, want)
		}
	}
	if v.team {
		if got := str(o, "metadata", "labels", "team"); got != "platform" {
			t.Errorf("%s: commonLabels not applied (team=%q)", kind, got)
		}
	}
}

func checkRole(t *testing.T, v valueSet, ns string, role, binding obj) {
	t.Helper()
	want := []any{obj{"apiGroups": []any{""}, "resources": []any{"events"}, "verbs": []any{"create"}}}
	if got := get(role, "rules"); !reflect.DeepEqual(got, want) {
		t.Errorf("Role rules %v, want exactly %v: events create is the only thing vcluster's Role lacks", got, want)
	}
	if str(role, "metadata", "name") != v.vcluster+"-certguard" {
		t.Errorf("Role name %q, want %s-certguard", str(role, "metadata", "name"), v.vcluster)
	}
	if binding == nil {
		t.Fatal("a Role without a RoleBinding")
	}
	if str(binding, "roleRef", "kind") != "Role" || str(binding, "roleRef", "name") != str(role, "metadata", "name") {
		t.Errorf("RoleBinding roleRef %v does not name the Role", get(binding, "roleRef"))
	}
	wantSubj := []any{obj{"kind": "ServiceAccount", "name": v.sa, "namespace": ns}}
	if got := get(binding, "subjects"); !reflect.DeepEqual(got, wantSubj) {
		t.Errorf("RoleBinding subjects %v, want %v", got, wantSubj)
	}
}

func checkService(t *testing.T, v valueSet, svc obj) {
	t.Helper()
	sel := map[string]string{}
	for k, val := range get(svc, "spec", "selector").(obj) {
		sel[k] = val.(string)
	}
	if !reflect.DeepEqual(sel, v.podLabels) {
		t.Errorf("Service selector %v, want the vcluster pod's labels %v", sel, v.podLabels)
	}
	want := []any{obj{"name": "metrics", "port": v.port, "targetPort": v.port, "protocol": "TCP"}}
	if got := get(svc, "spec", "ports"); !reflect.DeepEqual(got, want) {
		t.Errorf("Service ports %v, want %v", got, want)
	}
	if headless := str(svc, "spec", "clusterIP") == "None"; headless != v.headless {
		t.Errorf("Service clusterIP %q does not follow metrics.service.headless", str(svc, "spec", "clusterIP"))
	}
}

// The parts of prometheus-operator's monitoring.coreos.com/v1 types the chart uses, decoded
// strictly: a misspelt or misplaced field fails (no CRDs on the test apiserver to do it).
type (
	labelSelector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	}
	serviceMonitor struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       struct {
			JobLabel          string        `json:"jobLabel,omitempty"`
			Selector          labelSelector `json:"selector"`
			NamespaceSelector struct {
				Any        bool     `json:"any,omitempty"`
				MatchNames []string `json:"matchNames"`
			} `json:"namespaceSelector"`
			Endpoints []struct {
				Port          string `json:"port"`
				Path          string `json:"path"`
				Scheme        string `json:"scheme"`
				Interval      string `json:"interval"`
				ScrapeTimeout string `json:"scrapeTimeout"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	rule struct {
		Alert       string            `json:"alert"`
		Expr        string            `json:"expr"`
		For         string            `json:"for"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	}
	prometheusRule struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []rule `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
)

func strict(t *testing.T, o obj, into any) {
	t.Helper()
	b, err := yaml.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Errorf("%s: %v", str(o, "kind"), err)
	}
}

func checkServiceMonitor(t *testing.T, v valueSet, ns string, o, svc obj) {
	t.Helper()
	var sm serviceMonitor
	strict(t, o, &sm)
	if sm.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion %q", sm.APIVersion)
	}
	if svc == nil {
		t.Fatal("a ServiceMonitor without the Service")
	}
	for k, val := range sm.Spec.Selector.MatchLabels {
		if str(svc, "metadata", "labels", k) != val {
			t.Errorf("ServiceMonitor selects %s=%s, the Service has %q", k, val, str(svc, "metadata", "labels", k))
		}
	}
	if len(sm.Spec.Selector.MatchLabels) < 2 {
		t.Errorf("ServiceMonitor selector %v is too wide", sm.Spec.Selector.MatchLabels)
	}
	if !reflect.DeepEqual(sm.Spec.NamespaceSelector.MatchNames, []string{ns}) {
		t.Errorf("ServiceMonitor namespaces %v, want [%s]", sm.Spec.NamespaceSelector.MatchNames, ns)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != str(svc, "spec", "ports", 0, "name") || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v do not scrape the Service's port at /metrics", sm.Spec.Endpoints)
	}
	if str(o, "metadata", "labels", "release") != "kube-prometheus-stack" {
		t.Error("metrics.serviceMonitor.labels not applied")
	}
}

func checkPrometheusRule(t *testing.T, v valueSet, ns string, o, svc obj) {
	t.Helper()
	var pr prometheusRule
	strict(t, o, &pr)
	if pr.APIVersion != "monitoring.coreos.com/v1" || len(pr.Spec.Groups) != 1 {
		t.Fatalf("PrometheusRule %s with %d groups", pr.APIVersion, len(pr.Spec.Groups))
	}
	sel := fmt.Sprintf(`{namespace=%q,service=%q}`, ns, str(svc, "metadata", "name"))
	type key struct{ alert, severity string }
	got := map[key]rule{}
	for _, r := range pr.Spec.Groups[0].Rules {
		got[key{r.Alert, r.Labels["severity"]}] = r
		if n := strings.Count(r.Expr, "{"); n == 0 || n != strings.Count(r.Expr, sel) {
			t.Errorf("%s: every series selector must be %s (alerts of this vcluster only): %s", r.Alert, sel, r.Expr)
		}
		if r.Labels["vcluster"] != v.vcluster || r.Labels["team"] != "platform" {
			t.Errorf("%s: labels %v lack vcluster=%s or the alertLabels", r.Alert, r.Labels, v.vcluster)
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: no summary/description", r.Alert)
		}
	}
	for k, want := range map[key]struct{ metric, threshold, forDur string }{
		{"CertguardCertificateExpiresSoon", "warning"}:  {"x509_cert_not_after", "< 2419200", "15m"}, // 28d
		{"CertguardCertificateExpiresSoon", "critical"}: {"x509_cert_not_after", "< 1209600", "15m"}, // 14d
		{"CertguardCertificateExpired", "critical"}:     {"x509_cert_expired", "== 1", "5m"},
		{"CertguardDiskSecretDrift", "warning"}:         {"certguard_disk_secret_drift", "> 0", "30m"},
		// served ≠ stored for as long as the drift may last after a start (for.drift)
		{"CertguardServedCertificateNotStored", "warning"}: {"certguard_vcluster_served_mismatch", "== 1", "30m"},
	} {
		r, ok := got[k]
		if !ok {
			t.Errorf("no %s alert with severity %s", k.alert, k.severity)
			continue
		}
		if !strings.Contains(r.Expr, want.metric) || !strings.Contains(r.Expr, want.threshold) || r.For != want.forDur {
			t.Errorf("%s/%s: expr %q for %q, want %s %s for %s", k.alert, k.severity, r.Expr, r.For, want.metric, want.threshold, want.forDur)
		}
	}
	if len(got) != 5 {
		t.Errorf("%d alerts, want 5", len(got))
	}
	promtoolRules(t, ns, str(svc, "metadata", "name"), o)
}

// promtoolRules checks the rules with Prometheus's own promtool: the PromQL and templates parse,
// and the alerts fire on synthetic series at the thresholds, only for this vcluster's series.
func promtoolRules(t *testing.T, ns, svc string, o obj) {
	t.Helper()
	promtool, write := promtoolCheckRules(t, o)
	const day = 86400
	series := func(metric, file, values string) obj {
		l := fmt.Sprintf(`namespace=%q,service=%q,pod="my-vcluster-0"`, ns, svc)
		if file != "" {
			l += fmt.Sprintf(`,filename=%q`, file)
		}
		return obj{"series": metric + "{" + l + "}", "values": values}
	}
	// At eval_time 1h (3600 s), time() is 3600: NotAfter = 3600 + days left.
	notAfter := func(days int) string { return fmt.Sprintf("%dx120", 3600+days*day) }
	labels := func(file, severity string) obj {
		l := obj{"namespace": ns, "service": svc, "pod": "my-vcluster-0", "severity": severity, "vcluster": "my-vcluster", "team": "platform"}
		if file != "" {
			l["filename"] = file
		}
		return l
	}
	tests := obj{
		"rule_files":          []any{"bare.yaml"},
		"evaluation_interval": "1m",
		"tests": []any{obj{
			"interval": "1m",
			"input_series": []any{
				series("x509_cert_not_after", "server.crt", notAfter(20)),  // warning only
				series("x509_cert_not_after", "admin.crt", notAfter(10)),   // warning and critical
				series("x509_cert_not_after", "ca.crt", notAfter(3000)),    // nothing
				series("x509_cert_not_after", "expired.crt", notAfter(-1)), // expired: the other alert's job
				obj{"series": `x509_cert_not_after{namespace="other",service="x-certguard-metrics",filename="server.crt"}`, "values": notAfter(1)},
				series("x509_cert_expired", "k0s-api.crt", "0x29 1x90"),
				series("x509_cert_expired", "server.crt", "0x120"),
				series("certguard_disk_secret_drift", "", "0x10 1x110"),
				// the API server serves another leaf than server.crt for 40m: fires after 30m;
				// the syncer's for 20m (a start, the Secret catching up): never
				obj{"series": fmt.Sprintf(`certguard_vcluster_served_mismatch{namespace=%q,service=%q,pod="my-vcluster-0",endpoint="apiserver"}`, ns, svc), "values": "0x20 1x100"},
				obj{"series": fmt.Sprintf(`certguard_vcluster_served_mismatch{namespace=%q,service=%q,pod="my-vcluster-0",endpoint="syncer"}`, ns, svc), "values": "0x20 1x20 0x80"},
			},
			"alert_rule_test": []any{
				obj{"eval_time": "1h", "alertname": "CertguardCertificateExpiresSoon", "exp_alerts": []any{
					obj{"exp_labels": labels("server.crt", "warning")},
					obj{"exp_labels": labels("admin.crt", "warning")},
					obj{"exp_labels": labels("admin.crt", "critical")},
				}},
				obj{"eval_time": "20m", "alertname": "CertguardCertificateExpired", "exp_alerts": []any{}},
				obj{"eval_time": "1h", "alertname": "CertguardCertificateExpired", "exp_alerts": []any{
					obj{"exp_labels": labels("k0s-api.crt", "critical")},
				}},
				obj{"eval_time": "35m", "alertname": "CertguardDiskSecretDrift", "exp_alerts": []any{}},
				obj{"eval_time": "1h", "alertname": "CertguardDiskSecretDrift", "exp_alerts": []any{
					obj{"exp_labels": labels("", "warning")},
				}},
				obj{"eval_time": "49m", "alertname": "CertguardServedCertificateNotStored", "exp_alerts": []any{}},
				obj{"eval_time": "52m", "alertname": "CertguardServedCertificateNotStored", "exp_alerts": []any{
					obj{"exp_labels": func() obj { l := labels("", "warning"); l["endpoint"] = "apiserver"; return l }()},
				}},
			},
		}},
	}
	r := run(t, nil, promtool, "test", "rules", write("tests.yaml", tests))
	if r.code != 0 {
		t.Errorf("promtool test rules: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func checkFleet(t *testing.T, v valueSet, cr, crb obj) {
	t.Helper()
	if str(cr, "metadata", "name") != v.fleet {
		t.Errorf("ClusterRole %q, want %q", str(cr, "metadata", "name"), v.fleet)
	}
	// list for fleet and fleet plan, watch for fleet serve's informer; no get, no write.
	want := []any{obj{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"list", "watch"}},
		obj{"apiGroups": []any{"apps"}, "resources": []any{"statefulsets"}, "verbs": []any{"list", "watch"}}}
	if got := get(cr, "rules"); !reflect.DeepEqual(got, want) {
		t.Errorf("fleet ClusterRole rules %v, want exactly %v", got, want)
	}
	if strings.Contains(v.values, "subjects:") {
		if crb == nil || str(crb, "roleRef", "name") != v.fleet || len(get(crb, "subjects").([]any)) != 1 {
			t.Errorf("fleet ClusterRoleBinding %v does not bind the subjects to %s", crb, v.fleet)
		}
	} else if crb != nil {
		t.Error("a ClusterRoleBinding without fleet.subjects")
	}
}

// serverDryRun validates objects against the real apiserver: types, unknown fields, RBAC
// escalation checks (an admin may grant what it has), names.
func serverDryRun(t *testing.T, objs []obj) {
	t.Helper()
	var b strings.Builder
	var want []string
	for _, o := range objs {
		y, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
		res := strings.ToLower(str(o, "kind"))
		if gv := str(o, "apiVersion"); strings.Contains(gv, "/") {
			res += "." + gv[:strings.Index(gv, "/")]
		}
		want = append(want, res+"/"+str(o, "metadata", "name")+" created (server dry run)")
	}
	p := filepath.Join(t.TempDir(), "core.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, kubectlBin, "apply", "--dry-run=server", "--validate=strict", "-f", p)
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("kubectl apply --dry-run=server did not accept %s:\n%s", w, r.stdout)
		}
	}
	t.Logf("kubectl apply --dry-run=server --validate=strict: %d objects in %v", len(objs), r.took.Round(time.Millisecond))
}

// TestAddonChartNotes renders NOTES.txt the way `helm install` shows it (a server dry run).
func TestAddonChartNotes(t *testing.T) {
	ns := namespace(t, "notes")
	r := mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, helmBin, "install", "my-vcluster-certguard", chartDir, "-n", ns, "--dry-run=server")
	notes := r.stdout[strings.Index(r.stdout, "NOTES:"):]
	for _, want := range []string{
		`certguard add-on for vcluster "my-vcluster" in namespace "` + ns + `"`,
		"events create for ServiceAccount " + ns + "/vc-my-vcluster",
		"NEXT STEP",
		"vcluster create my-vcluster -n " + ns + " --upgrade -f vcluster-v0.20-v0.25.yaml",
		"-f values-v0.19.yaml",
		"derived from this release's name",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES lack %q:\n%s", want, notes)
		}
	}
	r = mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, helmBin, "install", "certguard", chartDir, "-n", ns, "--dry-run=server",
		"--set", "vcluster.release=prod-vc,metrics.enabled=true,metrics.serviceMonitor.enabled=false")
	notes = r.stdout[strings.Index(r.stdout, "NOTES:"):]
	for _, want := range []string{"vcluster-v0.20-v0.25-watch.yaml", "values-v0.19-watch.yaml", "Metrics need the sidecar"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES with metrics lack %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "derived from") || slices.Contains(strings.Fields(notes), "ServiceMonitor") {
		t.Errorf("NOTES mention what was not installed:\n%s", notes)
	}
	r = mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, helmBin, "install", "certguard-fleet", chartDir, "-n", ns, "--dry-run=server",
		"--set", "rbac.events=false,fleet.enabled=true")
	notes = r.stdout[strings.Index(r.stdout, "NOTES:"):]
	for _, want := range []string{"fleet only", "ClusterRole certguard-fleet", "bind it to who runs", "certguard fleet"} {
		if !strings.Contains(notes, want) {
			t.Errorf("fleet-only NOTES lack %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "vcluster create") || strings.Contains(notes, "derived from") {
		t.Errorf("fleet-only NOTES talk about a vcluster:\n%s", notes)
	}
	r = mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, helmBin, "install", "certguard-fleet", chartDir, "-n", ns, "--dry-run=server",
		"--set", "rbac.events=false,fleet.serve.enabled=true")
	notes = r.stdout[strings.Index(r.stdout, "NOTES:"):]
	for _, want := range []string{"fleet only", "Deployment certguard-fleet-serve runs `certguard fleet serve`", "port-forward svc/certguard-fleet-serve 9793",
		"ClusterRole certguard-fleet-serve: list and watch on secrets and statefulsets)"} {
		if !strings.Contains(notes, want) {
			t.Errorf("fleet serve NOTES lack %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "restart-due") || strings.Contains(notes, "Lease") {
		t.Errorf("fleet serve NOTES without restartDue talk about restarts:\n%s", notes)
	}
	installPrometheusRuleCRD(t)
	r = mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, helmBin, "install", "certguard-fleet", chartDir, "-n", ns, "--dry-run=server",
		"--set", "rbac.events=false,fleet.serve.enabled=true,fleet.serve.restartDue=true,fleet.serve.dryRun=true,fleet.serve.prometheusRule.enabled=true",
		"--set-string", "fleet.serve.restartWindow=Sat 02:00-04:00")
	notes = r.stdout[strings.Index(r.stdout, "NOTES:"):]
	for _, want := range []string{
		"get and delete on pods, get and update on secrets, create on events; Role certguard-fleet-serve on its Lease)",
		"PrometheusRule certguard-fleet-serve alerts on it",
		`--restart-due --dry-run (restarts are only logged): due vclusters with certguard's init container are restarted in "Sat 02:00-04:00" (UTC), at most 1 per window opening.`,
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("fleet serve restartDue NOTES lack %q:\n%s", want, notes)
		}
	}
}

// checkFleetServe checks the fleet serve objects of a value set: the Deployment runs `certguard
// fleet serve` with the values as flags, as a ServiceAccount bound to a ClusterRole of its own
// with exactly v.serve.rules (and, with restartDue, to a Role on its Lease), behind a Service (and
// a ServiceMonitor) that select it.
func checkFleetServe(t *testing.T, v valueSet, ns string, objs map[string]obj) {
	t.Helper()
	want := v.serve
	if got := slices.Sorted(maps.Keys(objs)); !reflect.DeepEqual(got, want.kinds) {
		t.Fatalf("fleet serve objects %v, want %v", got, want.kinds)
	}
	const name = "certguard-fleet-serve"
	for k, o := range objs {
		if str(o, "metadata", "name") != name {
			t.Errorf("%s named %q, want %s", k, str(o, "metadata", "name"), name)
		}
	}
	subjects := []any{obj{"kind": "ServiceAccount", "name": name, "namespace": ns}}
	if got := get(objs["ClusterRole"], "rules"); !reflect.DeepEqual(got, want.rules) {
		t.Errorf("fleet serve ClusterRole rules %v, want exactly %v", got, want.rules)
	}
	crb := objs["ClusterRoleBinding"]
	if str(crb, "roleRef", "kind") != "ClusterRole" || str(crb, "roleRef", "name") != name {
		t.Errorf("fleet serve ClusterRoleBinding roleRef %v, want its own ClusterRole %s", get(crb, "roleRef"), name)
	}
	if !reflect.DeepEqual(get(crb, "subjects"), subjects) {
		t.Errorf("fleet serve ClusterRoleBinding subjects %v, want %v", get(crb, "subjects"), subjects)
	}
	if want.role != nil {
		if got := get(objs["Role"], "rules"); !reflect.DeepEqual(got, want.role) {
			t.Errorf("fleet serve Role rules %v, want exactly %v", got, want.role)
		}
		rb := objs["RoleBinding"]
		if str(rb, "roleRef", "kind") != "Role" || str(rb, "roleRef", "name") != name || !reflect.DeepEqual(get(rb, "subjects"), subjects) {
			t.Errorf("fleet serve RoleBinding roleRef %v subjects %v, want Role %s for %v", get(rb, "roleRef"), get(rb, "subjects"), name, subjects)
		}
	}
	d := objs["Deployment"]
	pod := get(d, "spec", "template").(obj)
	if str(pod, "spec", "serviceAccountName") != name || get(d, "spec", "replicas") != float64(1) {
		t.Errorf("Deployment: serviceAccountName %q, replicas %v", str(pod, "spec", "serviceAccountName"), get(d, "spec", "replicas"))
	}
	c := get(pod, "spec", "containers").([]any)[0].(obj)
	if got := strs(c, "args"); !reflect.DeepEqual(got, want.args) {
		t.Errorf("fleet serve args %q, want %q", got, want.args)
	}
	if got, _ := get(c, "env").([]any); !reflect.DeepEqual(got, want.env) {
		t.Errorf("fleet serve env %v, want %v", got, want.env)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	readYAML(t, filepath.Join(chartDir, "Chart.yaml"), &chart)
	if want := "ghcr.io/certguard/certguard:" + chart.AppVersion; str(c, "image") != want {
		t.Errorf("fleet serve image %q, want %q (the release the chart ships with)", str(c, "image"), want)
	}
	if str(c, "readinessProbe", "httpGet", "path") != "/readyz" || str(c, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Errorf("probes: readiness %v, liveness %v", get(c, "readinessProbe"), get(c, "livenessProbe"))
	}
	podLabels := get(pod, "metadata", "labels").(obj)
	for k, v := range get(d, "spec", "selector", "matchLabels").(obj) {
		if podLabels[k] != v {
			t.Errorf("Deployment selector %s=%v does not match its pod labels %v", k, v, podLabels)
		}
	}
	svc := objs["Service"]
	for k, v := range get(svc, "spec", "selector").(obj) {
		if podLabels[k] != v {
			t.Errorf("Service selector %s=%v does not select the fleet serve pod %v", k, v, podLabels)
		}
	}
	if want := []any{obj{"name": "metrics", "port": float64(9793), "targetPort": "metrics", "protocol": "TCP"}}; !reflect.DeepEqual(get(svc, "spec", "ports"), want) {
		t.Errorf("Service ports %v, want %v", get(svc, "spec", "ports"), want)
	}
	if pr := objs["PrometheusRule"]; pr != nil {
		var rule prometheusRule
		strict(t, pr, &rule) // the alerts themselves: TestFleetPrometheusRule
	}
	if objs["ServiceMonitor"] == nil {
		return
	}
	var sm serviceMonitor
	strict(t, objs["ServiceMonitor"], &sm)
	svcLabels := get(svc, "metadata", "labels").(obj)
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svcLabels[k] != v {
			t.Errorf("ServiceMonitor selector %s=%s does not select the fleet serve Service", k, v)
		}
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" ||
		!reflect.DeepEqual(sm.Spec.NamespaceSelector.MatchNames, []string{ns}) || str(objs["ServiceMonitor"], "metadata", "labels", "release") != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor %+v", sm.Spec)
	}
}

// withoutAnnotations returns rule groups with each rule's annotations left out, for
// `promtool test rules`, which would otherwise compare their rendered text too.
func withoutAnnotations(groups any) []any {
	var bare []any
	for _, g := range groups.([]any) {
		g := g.(obj)
		var rules []any
		for _, r := range g["rules"].([]any) {
			r := r.(obj)
			delete(r, "annotations")
			rules = append(rules, r)
		}
		bare = append(bare, obj{"name": g["name"], "rules": rules})
	}
	return bare
}
