package fleet

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certguard/certguard/exporter"
	"github.com/certguard/certguard/exporter/exportertest"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/kube/kubetest"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// reference is how fleet serve rendered its metrics before Metrics: a prometheus.Collector over
// whole Secrets, x509_cert_* through the exporter contract the sidecar renders with
// (exporter.CollectSecretCerts), encoded by client_golang. Metrics must write exactly its lines.
type reference struct {
	secrets     []*pki.Secret
	now         time.Time
	renewBefore time.Duration
}

var (
	refLabels = []string{"secret_namespace", "vcluster"}
	refLeaf   = prometheus.NewDesc("certguard_vcluster_leaf_expiry_timestamp_seconds", "When the earliest k0s leaf certificate in the vcluster's Secret expires.", refLabels, nil)
	refCA     = prometheus.NewDesc("certguard_vcluster_ca_expiry_timestamp_seconds", "When the vcluster's CA (ca.crt) expires.", refLabels, nil)
	refStatus = prometheus.NewDesc("certguard_vcluster_status", "1 for the vcluster's current status (as certguard fleet prints it), 0 for the others.", append(refLabels, "status"), nil)
	refRepair = prometheus.NewDesc("certguard_vcluster_last_repair_timestamp_seconds", "When certguard last repaired the vcluster (certguard.dev/last-repair; 0: never).", refLabels, nil)
	refCount  = prometheus.NewDesc("certguard_fleet_vclusters", "vcluster certificate Secrets followed.", nil, nil)
)

func (r *reference) Describe(ch chan<- *prometheus.Desc) {
	exporter.DescribeCerts(ch)
	for _, d := range []*prometheus.Desc{refLeaf, refCA, refStatus, refRepair, refCount} {
		ch <- d
	}
}

func (r *reference) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]bool{}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	for _, s := range r.secrets {
		report := pki.Inspect(pki.Store{}, pki.FromSecret(s), time.Time{}, 0)
		exporter.CollectSecretCerts(ch, r.now, seen, s.Namespace, s.Name, report)
		exporter.SendSourceUp(ch, exporter.KindKubeSecret, s.Namespace+"/"+s.Name, true)
		row := Judge(s, r.now, r.renewBefore)
		if !row.LeafExpiry.IsZero() {
			gauge(refLeaf, float64(row.LeafExpiry.Unix()), s.Namespace, row.Release)
		}
		if !row.CAExpiry.IsZero() {
			gauge(refCA, float64(row.CAExpiry.Unix()), s.Namespace, row.Release)
		}
		for _, st := range statuses {
			v := 0.0
			if st == row.Status {
				v = 1
			}
			gauge(refStatus, v, s.Namespace, row.Release, string(st))
		}
		rep := 0.0
		if t := row.LastRepair.At; !t.IsZero() {
			rep = float64(t.Unix())
		}
		gauge(refRepair, rep, s.Namespace, row.Release)
	}
	gauge(refCount, float64(len(r.secrets)))
	exporter.SendBuildInfo(ch, exporter.Build{})
}

func sortedLines(t *testing.T, text []byte) []string {
	t.Helper()
	// It must parse as the text exposition, as Prometheus would read it.
	if _, err := new(expfmt.TextParser).TextToMetricFamilies(bytes.NewReader(text)); err != nil {
		t.Fatalf("not the text exposition format: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	slices.Sort(lines)
	return lines
}

// TestMetricsMatchTheExporter renders Secrets of every kind fleet meets (healthy, due, expired,
// no k0s keys, a corrupt certificate, a repair recorded) through Metrics and through the
// reference, at instants around their expiry, and wants the same lines.
func TestMetricsMatchTheExporter(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 890, time.UTC)
	gen := func(leavesExpire time.Time) map[string][]byte {
		p, err := pkigen.Generate(pkigen.Options{Now: now, K0sIssued: leavesExpire.Add(-pkigen.Year + pkigen.Backdate), K0sLifetime: pkigen.Year})
		if err != nil {
			t.Fatal(err)
		}
		return p.SecretData()
	}
	leavesAt := now.Add(30 * 24 * time.Hour)
	healthy := gen(now.Add(300 * 24 * time.Hour))
	due := gen(leavesAt)
	noK0s := gen(now.Add(300 * 24 * time.Hour))
	for _, k := range pki.K0sLeafFiles {
		delete(noK0s, pki.SecretKey(k))
	}
	corrupt := gen(now.Add(300 * 24 * time.Hour))
	corrupt["apiserver.crt"] = []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
	secrets := []*pki.Secret{
		{Namespace: "ns-a", Name: "healthy-certs", Data: healthy},
		{Namespace: "ns-a", Name: "due-certs", Data: due, Annotations: map[string]string{pki.LastRepairAnnotation: "2026-01-02T03:04:05Z leaves"}},
		{Namespace: "ns-b", Name: "nok0s-certs", Data: noK0s},
		{Namespace: "ns-b", Name: "corrupt-certs", Data: corrupt},
	}
	st := NewState()
	for _, s := range secrets {
		st.Set(s.Namespace+"/"+s.Name, Parse(s))
	}
	for _, at := range []time.Time{now, leavesAt.Add(-time.Second), leavesAt, leavesAt.Add(time.Nanosecond), leavesAt.Add(time.Second)} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(&reference{secrets: secrets, now: at, renewBefore: 120 * 24 * time.Hour})
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		enc := expfmt.NewEncoder(&want, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				t.Fatal(err)
			}
		}
		var got bytes.Buffer
		w := bufio.NewWriter(&got)
		(&Metrics{State: st, RenewBefore: 120 * 24 * time.Hour}).Write(w, at)
		w.Flush()
		g, wl := sortedLines(t, got.Bytes()), sortedLines(t, want.Bytes())
		if !slices.Equal(g, wl) {
			for _, l := range wl {
				if !slices.Contains(g, l) {
					t.Errorf("at %s: missing %s", at, l)
				}
			}
			for _, l := range g {
				if !slices.Contains(wl, l) {
					t.Errorf("at %s: extra %s", at, l)
				}
			}
		}
	}
}

// TestMetricsEmpty: no Secret yet, only the count and the build info.
func TestMetricsEmpty(t *testing.T) {
	var got bytes.Buffer
	w := bufio.NewWriter(&got)
	(&Metrics{State: NewState(), Build: exporter.Build{Version: "v1.2.3", Commit: "abc", Date: "2026-12-05T00:00:00Z"}}).Write(w, time.Now())
	w.Flush()
	want := "# HELP certguard_fleet_vclusters vcluster certificate Secrets followed.\n# TYPE certguard_fleet_vclusters gauge\ncertguard_fleet_vclusters 0\n" +
		"# HELP x509_exporter_build_info Constant 1, with build labels.\n# TYPE x509_exporter_build_info gauge\n" +
		`x509_exporter_build_info{built="2026-12-05T00:00:00Z",git_commit="abc",go_arch="` + runtime.GOARCH + `",go_os="` + runtime.GOOS +
		`",go_runtime="` + runtime.Version() + `",version="v1.2.3"} 1` + "\n"
	if got.String() != want {
		t.Errorf("got\n%s\nwant\n%s", got.String(), want)
	}
}

// TestDeletedSecretIsASourceDown: a certificate Secret deleted while its vcluster's StatefulSet
// is there is a source that cannot be read (x509_source_up 0, its certificate series gone), up
// again once re-created; so is a kubeconfig Secret of that vcluster, exported to another
// namespace. Once the StatefulSet is gone too, the vcluster was removed and its sources are
// forgotten.
func TestDeletedSecretIsASourceDown(t *testing.T) {
	p, err := pkigen.Generate(pkigen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sec := &pki.Secret{Namespace: "ns", Name: "a-certs", Data: p.SecretData()}
	st, wl := NewState(), NewWorkloads()
	wl.Set("ns/a", &kube.StatefulSet{Namespace: "ns", Name: "a"})
	m := &Metrics{State: st, Workloads: wl}
	up := func() string {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		m.Write(w, time.Now())
		w.Flush()
		sortedLines(t, b.Bytes()) // parses
		return grep(b.String(), "x509_source_up{")
	}
	const series = `x509_source_up{source_kind="kube-secret",source_name="ns/a-certs"} `
	st.Set("ns/a-certs", Parse(sec))
	if got := up(); got != series+"1" {
		t.Fatalf("present: %q", got)
	}
	st.Set("ns/a-certs", nil)
	if got := up(); got != series+"0" {
		t.Fatalf("deleted, StatefulSet there: %q", got)
	}
	st.Set("ns/a-certs", Parse(sec))
	if got := up(); got != series+"1" {
		t.Fatalf("re-created: %q", got)
	}
	kc := &pki.Secret{Namespace: "other", Name: "vc-a", Data: map[string][]byte{KubeconfigKey: pkigen.Kubeconfig("https://a.ns:443", p.Files["ca.crt"], p.Files["admin.crt"], p.Files["admin.key"])}}
	const kcSeries = `x509_source_up{source_kind="kube-secret",source_name="other/vc-a"} `
	st.Set("other/vc-a", Parse(kc))
	st.Set("other/vc-a", nil)
	if got := up(); got != series+"1\n"+kcSeries+"0" {
		t.Fatalf("kubeconfig deleted, its vcluster there: %q", got)
	}
	st.Set("ns/a-certs", nil)
	wl.Set("ns/a", nil)
	if got := up(); got != "" {
		t.Fatalf("deleted with its StatefulSet: %q", got)
	}
	if len(st.deleted()) != 0 {
		t.Fatal("the removed vcluster's source is still remembered")
	}
}

// grep returns the lines of s that start with prefix.
func grep(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// BenchmarkMetricsWrite renders 1,000 and 10,000 vclusters (one PKI's Secret under N names),
// plain text, to nowhere: the server's side of a scrape. Per op: one scrape; MB/s is the text's.
func BenchmarkMetricsWrite(b *testing.B) {
	p, err := pkigen.Generate(pkigen.Options{Key: pkigentest.RSA})
	if err != nil {
		b.Fatal(err)
	}
	data := p.SecretData()
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			st := NewState()
			for i := range n {
				s := &pki.Secret{Namespace: "ns", Name: fmt.Sprintf("vc%05d-certs", i), Data: data}
				st.Set(s.Namespace+"/"+s.Name, Parse(s))
			}
			m := &Metrics{State: st, RenewBefore: 120 * 24 * time.Hour}
			now := time.Now()
			var size countingWriter
			w := bufio.NewWriterSize(&size, 64<<10)
			m.Write(w, now)
			w.Flush()
			b.SetBytes(int64(size))
			for b.Loop() {
				m.Write(w, now)
				w.Flush()
			}
		})
	}
}

// countingWriter counts what is written to it and drops it.
type countingWriter int

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// TestMetricsGzip: gzip when the client accepts it (Prometheus does by default), the same text.
func TestMetricsGzip(t *testing.T) {
	p, err := pkigen.Generate(pkigen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := NewState()
	st.Set("ns/a-certs", Parse(&pki.Secret{Namespace: "ns", Name: "a-certs", Data: p.SecretData()}))
	now := time.Now()
	m := &Metrics{State: st, Now: func() time.Time { return now }}
	get := func(accept string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if accept != "" {
			r.Header.Set("Accept-Encoding", accept)
		}
		w := httptest.NewRecorder()
		m.ServeHTTP(w, r)
		return w
	}
	plain := get("")
	if plain.Header().Get("Content-Encoding") != "" || !strings.Contains(plain.Body.String(), "\ncertguard_fleet_vclusters 1\n") {
		t.Fatalf("plain: %q\n%.300s", plain.Header().Get("Content-Encoding"), plain.Body.String())
	}
	if !strings.HasPrefix(plain.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", plain.Header().Get("Content-Type"))
	}
	for _, c := range []struct {
		accept string
		gzip   bool
	}{{"gzip", true}, {"identity, gzip;q=0.5", true}, {"gzip;q=0", false}, {"gzip; q=0.000", false}, {"br, deflate", false}} {
		w := get(c.accept)
		if got := w.Header().Get("Content-Encoding") == "gzip"; got != c.gzip {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", c.accept, got, c.gzip)
			continue
		}
		body := w.Body.Bytes()
		if c.gzip {
			zr, err := gzip.NewReader(w.Body)
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		if string(body) != plain.Body.String() {
			t.Errorf("Accept-Encoding %q: not the plain text", c.accept)
		}
	}
}

// apiserver is the test apiserver of this package, started by the first test that asks for it
// (the others run without one) and stopped by TestMain.
var apiserver struct {
	once sync.Once
	env  *kubetest.Env
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if apiserver.env != nil {
		_ = apiserver.env.Stop()
	}
	os.Exit(code)
}

func liveEnv(t *testing.T) *kubetest.Env {
	t.Helper()
	apiserver.once.Do(func() { apiserver.env, apiserver.err = kubetest.Start() })
	if apiserver.err != nil {
		t.Fatal(apiserver.err)
	}
	return apiserver.env
}

// TestSourceDownOnALiveScrape follows a vcluster's StatefulSet and certificate Secret on the real
// apiserver with the service's informers, scrapes /metrics while the Secret is there, after it
// is deleted and once it is re-created, and runs x509-certificate-exporter's SourceDown alert
// over the three scrapes: quiet, then firing for that Secret's source alone, then resolved.
// Deleted with its StatefulSet (the vcluster removed), the source goes away rather than down.
func TestSourceDownOnALiveScrape(t *testing.T) {
	env := liveEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns, err := env.Namespace(ctx, "fleet-source")
	if err != nil {
		t.Fatal(err)
	}
	client, err := kube.NewClient(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "vcluster", "release": "a"}
	if _, err := env.Client.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: labels},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, ServiceName: "a",
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "syncer", Image: "x"}}}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := pkigen.Generate(pkigen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "a-certs"}, Data: p.SecretData()}
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	st, wl := NewState(), NewWorkloads()
	inf, _, err := kube.CertSecretInformer(client, ns, Parse, st.Set, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	stsInf, _, err := kube.StatefulSetInformer(client, ns, wl.Set, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	go kube.RunInformer(ctx, inf)
	go kube.RunInformer(ctx, stsInf)
	m := &Metrics{State: st, Workloads: wl, Now: time.Now}
	scrape := func() map[string]*dto.MetricFamily {
		w := httptest.NewRecorder()
		m.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		fams, err := new(expfmt.TextParser).TextToMetricFamilies(w.Body)
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}
	ref := map[string]string{"source_kind": "kube-secret", "source_name": ns + "/a-certs"}
	// upIs waits for the source's x509_source_up to read want (absent: -1) and returns that scrape.
	upIs := func(what string, want float64) map[string]*dto.MetricFamily {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			fams, got := scrape(), -1.0
			for _, s := range fams["x509_source_up"].GetMetric() {
				if l := labelSet(s); l["source_kind"] == ref["source_kind"] && l["source_name"] == ref["source_name"] {
					got = s.GetGauge().GetValue()
				}
			}
			if got == want && (want != 1 || wl.Get(ns, "a") != nil) {
				return fams
			}
		}
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
	up := upIs("the Secret's source up", 1)
	if err := env.Client.CoreV1().Secrets(ns).Delete(ctx, "a-certs", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	down := upIs("the deleted Secret's source down", 0)
	for _, s := range down["x509_cert_not_after"].GetMetric() {
		if labelSet(s)["secret_name"] == "a-certs" {
			t.Fatal("the deleted Secret's certificates are still served")
		}
	}
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	again := upIs("the re-created Secret's source up", 1)
	exportertest.Run(t, exportertest.AlertsFile(), exportertest.SourceDownTest("certguard fleet serve: a Secret deleted and re-created", up, down, again, ref))

	// The vcluster removed: StatefulSet and Secret gone, nothing is down.
	if err := env.Client.AppsV1().StatefulSets(ns).Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.CoreV1().Secrets(ns).Delete(ctx, "a-certs", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	upIs("the removed vcluster's source gone", -1)
}

func labelSet(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}
