package watch_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/kube/kubetest"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/restart"
	"github.com/certguard/certguard/watch"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	flag.Parse()
	// A fuzz run (the coordinator and each worker process) exercises the collector alone: no
	// apiserver to start per process.
	for _, f := range []string{"test.fuzz", "test.fuzzworker"} {
		if fl := flag.Lookup(f); fl != nil && fl.Value.String() != "" && fl.Value.String() != "false" {
			os.Exit(m.Run())
		}
	}
	os.Exit(kubetest.Main(m, &env))
}

const day = 24 * time.Hour

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// eventually polls cond (after a change it takes a debounce and a flush) for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestDirFollowsTheFilesystem(t *testing.T) {
	p, _ := pkigen.Generate(pkigen.Options{})
	root := t.TempDir()
	dir := filepath.Join(root, "data", "k0s", "pki")
	d, err := watch.NewDir(dir, 50*time.Millisecond, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	done := make(chan struct{})
	defer close(done)
	changed := make(chan struct{}, 100)
	go d.Run(done, changed, func(error) {})
	files := func() map[string][]byte { return d.Store().Files }
	if d.Store().Present {
		t.Fatal("a missing dir is present")
	}
	// First start: /data/k0s/pki appears seconds after the sidecar started.
	if err := pkigen.WriteDir(dir, p.Files); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new pki dir", func() bool { return len(files()) == len(p.Files) })
	// Replace in place.
	os.WriteFile(filepath.Join(dir, "server.crt"), p.Files["ca.crt"], 0o644)
	eventually(t, "a replaced file", func() bool { return string(files()["server.crt"]) == string(p.Files["ca.crt"]) })
	// An editor's atomic write: a temp file renamed over the target.
	tmp := filepath.Join(dir, ".server.crt.swp")
	os.WriteFile(tmp, p.Files["server.crt"], 0o644)
	os.Rename(tmp, filepath.Join(dir, "server.crt"))
	eventually(t, "an atomic write", func() bool {
		f := files()
		_, swp := f[".server.crt.swp"]
		return string(f["server.crt"]) == string(p.Files["server.crt"]) && !swp
	})
	// Rename and delete, in etcd/.
	os.Rename(filepath.Join(dir, "etcd", "peer.crt"), filepath.Join(dir, "etcd", "peer.crt.bak"))
	os.Remove(filepath.Join(dir, "etcd", "server.key"))
	eventually(t, "a rename and a delete", func() bool {
		f := files()
		_, a := f["etcd/peer.crt"]
		_, b := f["etcd/peer.crt.bak"]
		_, c := f["etcd/server.key"]
		return !a && b && !c
	})
	// A full reset moves the dir away; k0s recreates it.
	os.MkdirAll(dir+".old/20261125T000000Z", 0o700)
	if err := os.Rename(dir, dir+".old/20261125T000000Z/pki"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the dir moved away", func() bool { return !d.Store().Present })
	fresh, _ := pkigen.Generate(pkigen.Options{})
	pkigen.WriteDir(dir, fresh.Files)
	eventually(t, "the recreated dir", func() bool {
		return string(files()["ca.crt"]) == string(fresh.Files["ca.crt"]) && len(files()) == len(fresh.Files)
	})
	// A new subdirectory is watched too.
	os.WriteFile(filepath.Join(dir, "etcd", "extra.crt"), fresh.Files["ca.crt"], 0o644)
	eventually(t, "a file in etcd/ of the recreated dir", func() bool { _, ok := files()["etcd/extra.crt"]; return ok })
}

// vcluster sets up a namespace with the Secret, a Pod standing in for the vcluster pod, and a
// pki dir, with leaves issued k0sAge ago.
type vcluster struct {
	ns, dir string
	client  *kube.Client
	p       *pkigen.PKI
}

func newVcluster(t *testing.T, k0sAge time.Duration) *vcluster {
	ctx := context.Background()
	ns, err := env.Namespace(ctx, "watch")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pkigen.Generate(pkigen.Options{K0sIssued: time.Now().Add(-k0sAge)})
	if err != nil {
		t.Fatal(err)
	}
	v := &vcluster{ns: ns, dir: filepath.Join(t.TempDir(), "pki"), p: p}
	pkigen.WriteDir(v.dir, p.Files)
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vc-certs"}, Data: p.SecretData()}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v.createPod(t)
	v.client, err = kube.NewClient(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *vcluster) createPod(t *testing.T) {
	_, err := env.Client.CoreV1().Pods(v.ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vc-0", Labels: map[string]string{"app": "vcluster", "release": "vc"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "syncer", Image: "x"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func (v *vcluster) podExists(t *testing.T) bool {
	_, err := env.Client.CoreV1().Pods(v.ns).Get(context.Background(), "vc-0", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// openNow is a window open right now, whatever the time of day.
func openNow() *restart.Window {
	now := time.Now().UTC()
	w, _ := restart.ParseWindow(fmt.Sprintf("%s %02d:00-%02d:00", now.Weekday().String()[:3], now.Hour(), (now.Hour()+2)%24), time.UTC)
	return w
}

func (v *vcluster) sidecar(t *testing.T, window *restart.Window, dryRun bool) (*watch.Sidecar, context.CancelFunc) {
	s := &watch.Sidecar{
		PKIDir: v.dir, BackupDir: v.dir + ".old", RenewBefore: 120 * day, Reminder: 6 * time.Hour, Debounce: 50 * time.Millisecond,
		Restart: restart.Policy{Before: 30 * day, Window: window, MinInterval: day, MaxSkew: 5 * time.Minute},
		DryRun:  dryRun, Listen: "127.0.0.1:0",
		Secrets: &kube.SecretStore{Client: v.client, Namespace: v.ns, Name: "vc-certs", Retry: time.Second},
		Events:  &kube.Events{Client: v.client, Namespace: v.ns, Pod: "vc-0", Log: quiet},
		Client:  v.client, Namespace: v.ns, Pod: "vc-0", Log: quiet, Now: time.Now, Ready: make(chan struct{}),
	}
	return s, runSidecar(t, s)
}

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func value(fams map[string]*dto.MetricFamily, name string, match map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.Metric {
		hit := true
		for k, v := range match {
			if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				hit = false
			}
		}
		if hit {
			if m.Gauge != nil {
				return m.Gauge.GetValue(), true
			}
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

// exporterLabels are x509-certificate-exporter v4's per-certificate labels, as measured from its
// output (shared/research/anchors.md §5).
var exporterLabels = []string{"discriminator", "embedded_key", "embedded_kind", "filename", "filepath",
	"issuer_C", "issuer_CN", "issuer_L", "issuer_O", "issuer_OU", "issuer_ST", "secret_key", "secret_name", "secret_namespace",
	"serial_number", "subject_C", "subject_CN", "subject_L", "subject_O", "subject_OU", "subject_ST"}

func TestSidecarMetricsEventsAndRestart(t *testing.T) {
	v := newVcluster(t, 350*day) // k0s leaves expire in ~15 days: within --restart-before
	s, _ := v.sidecar(t, openNow(), false)
	ctx := context.Background()

	fams := scrape(t, s.Addr)
	for _, name := range []string{"x509_cert_not_after", "x509_cert_not_before", "x509_cert_expired", "x509_cert_expires_in_seconds"} {
		f := fams[name]
		if f == nil || len(f.Metric) == 0 {
			t.Fatalf("no %s", name)
		}
		var got []string
		for _, l := range f.Metric[0].Label {
			got = append(got, l.GetName())
		}
		sort.Strings(got)
		if !slices.Equal(got, exporterLabels) {
			t.Fatalf("%s labels %v, want the exporter's %v", name, got, exporterLabels)
		}
	}
	serverNA, ok := value(fams, "x509_cert_not_after", map[string]string{"filename": "server.crt", "filepath": filepath.Join(v.dir, "server.crt"), "subject_CN": "kubernetes", "issuer_CN": "kubernetes"})
	if c, _ := pki.ParseCertPEM(v.p.Files["server.crt"]); !ok || int64(serverNA) != c.NotAfter.Unix() {
		t.Fatalf("x509_cert_not_after{server.crt} = %v, %v", serverNA, ok)
	}
	if _, ok := value(fams, "x509_cert_not_after", map[string]string{"secret_namespace": v.ns, "secret_name": "vc-certs", "secret_key": "etcd-ca.crt"}); !ok {
		t.Fatal("no series for the Secret's etcd-ca.crt")
	}
	if _, ok := value(fams, "x509_cert_not_after", map[string]string{"embedded_kind": "user", "embedded_key": "user", "filename": "ccm.conf"}); !ok {
		t.Fatal("no series for the certificate embedded in ccm.conf")
	}
	for kind, want := range map[string]float64{"file": 1, "kubeconfig": 1, "kube-secret": 1} {
		if got, _ := value(fams, "x509_source_up", map[string]string{"source_kind": kind}); got != want {
			t.Errorf("x509_source_up{%s} = %v", kind, got)
		}
	}
	if got, ok := value(fams, "certguard_disk_secret_drift", nil); !ok || got != 0 {
		t.Errorf("drift = %v, %v", got, ok)
	}

	// Due and inside the window: the restart is recorded on the Secret, then the pod deleted.
	eventually(t, "the pod deleted", func() bool { return !v.podExists(t) })
	sec, _ := env.Client.CoreV1().Secrets(v.ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	last, err := time.Parse(time.RFC3339, sec.Annotations[restart.LastRestartAnnotation])
	if err != nil || time.Since(last) > time.Minute {
		t.Fatalf("last-restart annotation %q", sec.Annotations[restart.LastRestartAnnotation])
	}
	evs, _ := env.Client.CoreV1().Events(v.ns).List(ctx, metav1.ListOptions{})
	var reasons []string
	for _, e := range evs.Items {
		reasons = append(reasons, e.Reason)
	}
	if slices.Index(reasons, string(kube.ReasonExpiryWarning)) < 0 || slices.Index(reasons, string(kube.ReasonRestart)) < 0 {
		t.Fatalf("events %v", reasons)
	}

	// The StatefulSet recreates the pod and its sidecar starts again: the rate guard, read back
	// from the Secret, holds it off. No wait: the sidecar is Ready after a refresh that read the
	// Secret, and that refresh decided (and would have deleted the pod) before Ready.
	v.createPod(t)
	s2, _ := v.sidecar(t, openNow(), false)
	next, _ := value(scrape(t, s2.Addr), "certguard_next_restart_timestamp_seconds", nil)
	if int64(next) < last.Add(day).Unix() {
		t.Fatalf("next restart %v, want after the min interval", time.Unix(int64(next), 0))
	}
	if !v.podExists(t) {
		t.Fatal("the restarted sidecar deleted the pod again within --restart-min-interval")
	}

	// Drift: the disk's server.crt replaced by other bytes shows through fsnotify.
	os.WriteFile(filepath.Join(v.dir, "server.crt"), v.p.Files["apiserver.crt"], 0o644)
	eventually(t, "drift reported", func() bool {
		got, _ := value(scrape(t, s2.Addr), "certguard_disk_secret_drift", nil)
		return got == 1
	})
}

// TestSidecarDryRunAndNoWindowNeverRestart: the leaves are due. With --dry-run in an open window
// the sidecar decides a restart now (certguard_next_restart_timestamp_seconds is now) and does
// not delete the pod; with no window it plans none (0). No wait: the decision is made, and a
// restart would have been done, in the refresh before Ready.
func TestSidecarDryRunAndNoWindowNeverRestart(t *testing.T) {
	for name, window := range map[string]*restart.Window{"dry run": openNow(), "no window": nil} {
		t.Run(name, func(t *testing.T) {
			v := newVcluster(t, 350*day)
			before := time.Now()
			s, _ := v.sidecar(t, window, name == "dry run")
			next, ok := value(scrape(t, s.Addr), "certguard_next_restart_timestamp_seconds", nil)
			if window != nil && (!ok || int64(next) < before.Unix() || int64(next) > time.Now().Unix()) {
				t.Fatalf("next restart %v, want a restart decided now", time.Unix(int64(next), 0))
			}
			if window == nil && (!ok || next != 0) {
				t.Fatalf("next restart %v, %v with no window, want 0", next, ok)
			}
			if !v.podExists(t) {
				t.Fatal("pod deleted")
			}
			resp, err := http.Get("http://" + s.Addr + "/readyz")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("readyz: %v %v", resp, err)
			}
		})
	}
}

// TestSidecarSurvivesAMissingPKIDir: with the pki dir missing, the sidecar serves, reports the
// file source down and does not restart the pod, although the Secret's leaves are due and the
// window is open (the decision is made in the refresh before Ready). Once the dir appears it is
// picked up, and the restart the due leaves call for happens.
func TestSidecarSurvivesAMissingPKIDir(t *testing.T) {
	v := newVcluster(t, 350*day) // leaves expire in ~15 days: within --restart-before
	os.RemoveAll(v.dir)
	s, _ := v.sidecar(t, openNow(), false)
	if !v.podExists(t) {
		t.Fatal("pod deleted while the pki dir was missing")
	}
	if up, _ := value(scrape(t, s.Addr), "x509_source_up", map[string]string{"source_kind": "file"}); up != 0 {
		t.Fatalf("x509_source_up{file} = %v with no pki dir", up)
	}
	pkigen.WriteDir(v.dir, v.p.Files)
	eventually(t, "the pki dir picked up", func() bool {
		up, _ := value(scrape(t, s.Addr), "x509_source_up", map[string]string{"source_kind": "file"})
		return up == 1
	})
	eventually(t, "the restart once the pki dir is readable", func() bool { return !v.podExists(t) })
}

// TestSidecarNeverRestartsIntoARepairThatWouldNotRenew: a restart is due (the k0s leaves expire
// in 15 days, a window is open), but ca.key is garbage: the init container's plan would reset the
// whole PKI, not renew the leaves. Deleting the running pod would take the control plane down
// into that; the sidecar computes the same plan, keeps the pod, and says why (Event, metric).
func TestSidecarNeverRestartsIntoARepairThatWouldNotRenew(t *testing.T) {
	v := newVcluster(t, 350*day)
	ctx := context.Background()
	garbage := []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
	if err := os.WriteFile(filepath.Join(v.dir, "ca.key"), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	sec, _ := env.Client.CoreV1().Secrets(v.ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	sec.Data["ca.key"] = garbage
	if _, err := env.Client.CoreV1().Secrets(v.ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s, _ := v.sidecar(t, openNow(), false)
	eventually(t, "certguard_restart_blocked = 1", func() bool {
		got, _ := value(scrape(t, s.Addr), "certguard_restart_blocked", nil)
		return got == 1
	})
	eventually(t, "a Warning RestartBlocked Event on the pod", func() bool {
		evs, _ := env.Client.CoreV1().Events(v.ns).List(ctx, metav1.ListOptions{})
		for _, e := range evs.Items {
			if e.Reason == string(kube.ReasonRestartBlocked) && e.Type == "Warning" && e.InvolvedObject.Kind == "Pod" && e.InvolvedObject.Name == "vc-0" {
				return true
			}
		}
		return false
	})
	if !v.podExists(t) {
		t.Fatal("the sidecar deleted the pod although the init container would not renew the leaves")
	}
}

// TestSidecarSaysARepairIsHeld (issue 18): k0s leaves from the future (a node clock behind) are
// no reason to block a start, so the init container holds its repair back and the pod starts;
// the sidecar exports that as certguard_repair_held, so that it does not pass unseen.
func TestSidecarSaysARepairIsHeld(t *testing.T) {
	v := newVcluster(t, -3*time.Hour)
	s, _ := v.sidecar(t, nil, false)
	eventually(t, "certguard_repair_held = 1", func() bool {
		got, ok := value(scrape(t, s.Addr), "certguard_repair_held", nil)
		return ok && got == 1
	})
	h := newVcluster(t, 30*day)
	hs, _ := h.sidecar(t, nil, false)
	eventually(t, "certguard_repair_held = 0 on a healthy vcluster", func() bool {
		got, ok := value(scrape(t, hs.Addr), "certguard_repair_held", nil)
		return ok && got == 0
	})
}
