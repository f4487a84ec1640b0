// Package exportertest runs x509-certificate-exporter's alert expressions on live scrapes of
// certguard with promtool: the sidecar's tests (watch/) and the fleet's (fleet/) share it.
package exportertest

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"
)

// Promtool returns the path of the pinned promtool, built and cached by .ci/tools.sh.
func Promtool(t *testing.T) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("bash", filepath.Join(filepath.Dir(self), "..", "..", ".ci", "tools.sh"), "promtool")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash .ci/tools.sh promtool: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// AlertsFile is x509-certificate-exporter's alerts as text (watch/testdata/exporter/, whose
// README says from which version and how they were read).
func AlertsFile() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..", "watch", "testdata", "exporter", "alerts.yaml")
}

// Scrape is one live scrape and how many minutes of the promtool timeline it stands for.
type Scrape struct {
	Fams    map[string]*dto.MetricFamily
	Minutes int
}

// SeriesName writes a sample's series in PromQL notation, labels sorted by name (one label set,
// one name, whatever order a scrape gave them in), without the empty labels (Prometheus stores
// an empty label as no label).
func SeriesName(name string, m *dto.Metric) string {
	var parts []string
	for _, l := range m.Label {
		if l.GetValue() != "" {
			parts = append(parts, l.GetName()+"="+strconv.Quote(l.GetValue()))
		}
	}
	slices.Sort(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// InputSeries lays the scrapes end to end as promtool input series, one sample a minute: each
// series holds its scraped value for its scrape's minutes and is missing where a scrape did not
// have it, as a Secret's certificates are while it is deleted. A series that goes missing is
// marked stale first, as Prometheus marks a series gone from a scrape (without the marker it
// would still be read for 5 minutes, its lookback). Only x509_* and certguard_* families are kept.
func InputSeries(scrapes []Scrape) []map[string]string {
	values := map[string][]string{} // series -> value per scrape ("_": absent)
	for i, s := range scrapes {
		for name, f := range s.Fams {
			if !strings.HasPrefix(name, "x509_") && !strings.HasPrefix(name, "certguard_") {
				continue
			}
			for _, m := range f.Metric {
				v := m.GetGauge().GetValue()
				if m.Counter != nil {
					v = m.Counter.GetValue()
				}
				key := SeriesName(name, m)
				if values[key] == nil {
					values[key] = slices.Repeat([]string{"_"}, len(scrapes))
				}
				values[key][i] = strconv.FormatFloat(v, 'f', -1, 64)
			}
		}
	}
	var out []map[string]string
	for _, key := range slices.Sorted(func(yield func(string) bool) {
		for k := range values {
			if !yield(k) {
				return
			}
		}
	}) {
		var segs []string
		for i, v := range values[key] {
			n := scrapes[i].Minutes
			switch {
			case v != "_":
				segs = append(segs, v+"x"+strconv.Itoa(n-1)) // "vxN" is N+1 samples
			case i > 0 && values[key][i-1] != "_":
				segs = append(segs, "stale")
				if n > 1 {
					segs = append(segs, "_x"+strconv.Itoa(n-1))
				}
			default:
				segs = append(segs, "_x"+strconv.Itoa(n)) // "_xN" is N missing samples
			}
		}
		out = append(out, map[string]string{"series": key, "values": strings.Join(segs, " ")})
	}
	return out
}

// Run writes a promtool unit test over rules and runs it with `promtool test rules`.
func Run(t *testing.T, rules string, test map[string]any) {
	t.Helper()
	body, err := yaml.Marshal(map[string]any{"rule_files": []string{rules}, "evaluation_interval": "1m", "tests": []map[string]any{test}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "promtool-test.yaml")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(Promtool(t), "test", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// SourceDownTest is a promtool test of the exporter's SourceDown alert over three scrapes laid
// end to end (10, 20 and 30 minutes): the source up, then down, then up again. The alert is
// quiet while the source is up, pending for its 5 minutes, firing for exactly the labels want
// (plus its severity) after them, and resolved once the source is back.
func SourceDownTest(name string, up, down, upAgain map[string]*dto.MetricFamily, want map[string]string) map[string]any {
	exp := map[string]string{"severity": "critical"}
	for k, v := range want {
		exp[k] = v
	}
	at := func(eval string, alerts ...map[string]any) map[string]any {
		return map[string]any{"alertname": "SourceDown", "eval_time": eval, "exp_alerts": append([]map[string]any{}, alerts...)}
	}
	firing := map[string]any{"exp_labels": exp}
	return map[string]any{
		"name":         name,
		"interval":     "1m",
		"input_series": InputSeries([]Scrape{{up, 10}, {down, 20}, {upAgain, 30}}),
		"alert_rule_test": []map[string]any{
			at("9m"),          // up
			at("14m"),         // down for 4 minutes: pending
			at("16m", firing), // down for 6 minutes
			at("29m", firing),
			at("36m"), // up again for 6 minutes
			at("59m"),
		},
	}
}

// Labels are a sample's labels by name.
func Labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.Label {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// Find returns the first sample of f whose labels include all of match ("" = empty or absent).
func Find(f *dto.MetricFamily, match map[string]string) *dto.Metric {
	if f == nil {
		return nil
	}
	for _, m := range f.Metric {
		l := Labels(m)
		ok := true
		for k, v := range match {
			if l[k] != v {
				ok = false
			}
		}
		if ok {
			return m
		}
	}
	return nil
}

// HeldDown scrapes for span and requires, at every scrape, that the served source (labels
// source_kind and source_name) reads x509_source_up 0 and shows no leaf (an endpoint that does
// not answer is up 0, never a vanished series), that no scrape waited for the probe under way
// (one that did would take most of timeout), and at the end that its failed probes were counted
// in x509_source_errors_total{reason="unreadable"}, at least minErrors. It returns the last scrape.
func HeldDown(t *testing.T, what string, scrape func() map[string]*dto.MetricFamily, source map[string]string, span, timeout time.Duration, minErrors float64) map[string]*dto.MetricFamily {
	t.Helper()
	var fams map[string]*dto.MetricFamily
	slowest := time.Duration(0)
	for end := time.Now().Add(span); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		start := time.Now()
		fams = scrape()
		slowest = max(slowest, time.Since(start))
		if m := Find(fams["x509_source_up"], source); m == nil || m.GetGauge().GetValue() != 0 {
			t.Fatalf("%s: x509_source_up%v = %v, want 0 at every scrape", what, source, m)
		}
		if Find(fams["x509_cert_not_after"], map[string]string{"filepath": source["source_name"]}) != nil {
			t.Fatalf("%s: the served leaf of %s is still shown", what, source["source_name"])
		}
	}
	if slowest > timeout*3/4 {
		t.Errorf("%s: a scrape took %v with a probe of up to %v under way: it waited for the probe", what, slowest, timeout)
	}
	errs := map[string]string{"reason": "unreadable"}
	maps.Copy(errs, source)
	n := Find(fams["x509_source_errors_total"], errs).GetCounter().GetValue()
	if n < minErrors {
		t.Errorf("%s: x509_source_errors_total%v = %v after %v, want every failed probe counted (%v or more)", what, errs, n, span, minErrors)
	}
	t.Logf("%s: up 0 at every scrape for %v, the slowest scrape %v, %v failed probes counted", what, span, slowest, n)
	return fams
}
