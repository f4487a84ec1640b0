package watch_test

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/probe/probetest"
	"github.com/certguard/certguard/restart"
	"github.com/certguard/certguard/watch"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSidecarK0sRenews_StaleSecretRaisesNoAlarm: the state k0s ≥ v1.35.1 leaves on vcluster
// ≤ v0.25 (the Secret keeps the k0s leaves of an earlier start, expired; the pki dir holds the
// ones k0s signed at this start). Told nothing about k0s, the sidecar alarms as it always did
// (on main it has no other way): the Secret's server.crt series reads expired, drift counts the
// 12 k0s files that are no kubeconfig, a Warning Event. Told k0s v1.35.1, it alarms on nothing: no Secret series for the
// stale copies, the disk's series (what k0s serves) all unexpired, drift 0, no restart blocked,
// CertificateExpirationOK. k0s's API server serves the disk's server.crt: held against the stale
// copy it would read served ≠ stored for good; told k0s v1.35.1 it holds it against the disk's.
func TestSidecarK0sRenews_StaleSecretRaisesNoAlarm(t *testing.T) {
	for _, c := range []struct {
		name  string
		k0s   *pki.K0s
		alarm bool
	}{
		{"k0s unknown", nil, true},
		{"k0s v1.35.1", &pki.K0s{Version: "v1.35.1-k0s.0", From: pki.K0sFromPod, RenewsLeaves: true}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			ns, err := env.Namespace(ctx, "watch")
			if err != nil {
				t.Fatal(err)
			}
			// The disk: what k0s signed at this start. The Secret: the same, but its 14 k0s files
			// are those of the first start, a year and a month ago.
			p, err := pkigen.Generate(pkigen.Options{K0sIssued: time.Now().Add(-time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			old, err := pkigen.New(pkigen.Options{K0sIssued: time.Now().Add(-400 * day)}).IssueK0sLeaves(p.CAs["ca"], p.Files["ca.crt"])
			if err != nil {
				t.Fatal(err)
			}
			data := p.SecretData()
			maps.Copy(data, old)
			dir := filepath.Join(t.TempDir(), "pki")
			if err := pkigen.WriteDir(dir, p.Files); err != nil {
				t.Fatal(err)
			}
			if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vc-certs"}, Data: data}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			client, err := kube.NewClient(env.Config)
			if err != nil {
				t.Fatal(err)
			}
			api := probetest.Start(t, probetest.KeyPair(t, p.Files["server.crt"], p.Files["server.key"]))
			asked := 0
			s := &watch.Sidecar{
				PKIDir: dir, BackupDir: dir + ".old", RenewBefore: 120 * day, Reminder: 6 * time.Hour, Debounce: 50 * time.Millisecond,
				Restart: restart.Policy{Before: 30 * day, Window: openNow(), MinInterval: day, MaxSkew: 5 * time.Minute},
				DryRun:  true, Listen: "127.0.0.1:0",
				Secrets: &kube.SecretStore{Client: client, Namespace: ns, Name: "vc-certs", Retry: time.Second},
				Events:  &kube.Events{Client: client, Namespace: ns, Pod: "vc-0", Log: quiet},
				Client:  client, Namespace: ns, Pod: "vc-0", Log: quiet, Now: time.Now, Ready: make(chan struct{}),
				Served: &watch.Served{APIServer: api.Addr, Interval: 100 * time.Millisecond, Timeout: time.Second, Now: time.Now},
			}
			if c.k0s != nil {
				s.K0s = func(context.Context) pki.K0s { asked++; return *c.k0s }
			}
			runSidecar(t, s)
			apiL := map[string]string{"endpoint": "apiserver", "secret_namespace": ns, "vcluster": "vc"}
			waitSeries(t, s.Addr, "the API server probed", ser{"certguard_vcluster_served_expiry_timestamp_seconds", apiL, notAfterOf(t, p.Files["server.crt"])})
			fams := scrape(t, s.Addr)
			mismatch, _ := value(fams, "certguard_vcluster_served_mismatch", apiL)

			secretExpired, secretSeries := value(fams, "x509_cert_expired", map[string]string{"secret_name": "vc-certs", "secret_key": "server.crt"})
			drift, _ := value(fams, "certguard_disk_secret_drift", nil)
			blocked, _ := value(fams, "certguard_restart_blocked", nil)
			if blocked != 0 {
				t.Errorf("certguard_restart_blocked = %v", blocked)
			}
			evs, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var reasons []string
			for _, e := range evs.Items {
				reasons = append(reasons, e.Reason)
			}
			if c.alarm {
				if !secretSeries || secretExpired != 1 || drift != 12 || !slices.Contains(reasons, string(kube.ReasonExpiryWarning)) || mismatch != 1 {
					t.Fatalf("baseline: Secret server.crt expired %v (series %v), drift %v, events %v, served mismatch %v; want 1, 12 (the k0s files but the two kubeconfigs), a warning and 1", secretExpired, secretSeries, drift, reasons, mismatch)
				}
				return
			}
			if secretSeries {
				t.Errorf("the Secret's stale server.crt is still a series (x509_cert_expired = %v)", secretExpired)
			}
			if _, ok := value(fams, "x509_cert_not_after", map[string]string{"secret_name": "vc-certs", "secret_key": "ca.crt"}); !ok {
				t.Error("the Secret's other certificates lost their series")
			}
			for _, m := range fams["x509_cert_expired"].Metric {
				if m.Gauge.GetValue() != 0 {
					t.Errorf("an expired series: %v", m.Label)
				}
			}
			if diskServer, ok := value(fams, "x509_cert_expired", map[string]string{"filepath": filepath.Join(dir, "server.crt")}); !ok || diskServer != 0 {
				t.Errorf("the disk's server.crt: expired %v, series %v", diskServer, ok)
			}
			if drift != 0 {
				t.Errorf("certguard_disk_secret_drift = %v, want 0: stale copies are no drift", drift)
			}
			if slices.Contains(reasons, string(kube.ReasonExpiryWarning)) || !slices.Contains(reasons, string(kube.ReasonExpirationOK)) {
				t.Errorf("events %v, want %s and no %s", reasons, string(kube.ReasonExpirationOK), string(kube.ReasonExpiryWarning))
			}
			if mismatch != 0 {
				t.Errorf("certguard_vcluster_served_mismatch{endpoint=apiserver} = %v, want 0: k0s serves the disk's server.crt, the Secret's is a stale copy", mismatch)
			}
			if asked == 0 {
				t.Error("the sidecar never asked which k0s runs")
			}
		})
	}
}
