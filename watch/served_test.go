package watch_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certguard/certguard/exporter/exportertest"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/probe/probetest"
	"github.com/certguard/certguard/restart"
	"github.com/certguard/certguard/watch"
	dto "github.com/prometheus/client_model/go"
)

// TestSidecarProbesWhatThePodServes runs the sidecar against two local TLS servers standing for
// k0s's API server and the syncer, switches what they serve, and reads the result from /metrics:
// the served leaf's expiry, whether it is the stored one, and its source going down.
func TestSidecarProbesWhatThePodServes(t *testing.T) {
	v := probetest.NewVcluster(t)
	p, other, syncCrt, syncKey := v.PKI, v.Other, v.SyncerCrt, v.SyncerKey
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pkigen.WriteDir(dir, p.Files); err != nil {
		t.Fatal(err)
	}
	api := probetest.Start(t, probetest.KeyPair(t, p.Files["server.crt"], p.Files["server.key"]))
	syncer := probetest.Start(t, probetest.KeyPair(t, syncCrt, syncKey))

	s := &watch.Sidecar{PKIDir: dir, BackupDir: dir + ".old", RenewBefore: 120 * day, Reminder: 6 * time.Hour, Debounce: 50 * time.Millisecond,
		Restart: restart.Policy{Before: 30 * day, MinInterval: day, MaxSkew: 5 * time.Minute},
		Listen:  "127.0.0.1:0", Log: quiet, Now: time.Now, Ready: make(chan struct{}), Namespace: "vc-a",
		Served: &watch.Served{APIServer: api.Addr, Syncer: syncer.Addr, Interval: 100 * time.Millisecond, Timeout: time.Second, Now: time.Now}}
	runSidecar(t, s)

	notAfter := func(pemBytes []byte) float64 { return notAfterOf(t, pemBytes) }
	want := func(what string, series ...ser) { t.Helper(); waitSeries(t, s.Addr, what, series...) }
	apiL := map[string]string{"endpoint": "apiserver", "secret_namespace": "vc-a"}
	syncL := map[string]string{"endpoint": "syncer", "secret_namespace": "vc-a"}
	want("both endpoints serve the stored certificates",
		ser{"certguard_vcluster_served_expiry_timestamp_seconds", apiL, notAfter(p.Files["server.crt"])},
		ser{"certguard_vcluster_served_expiry_timestamp_seconds", syncL, notAfter(syncCrt)},
		ser{"certguard_vcluster_served_mismatch", apiL, 0},
		ser{"certguard_vcluster_served_mismatch", syncL, 0},
		ser{"x509_source_up", map[string]string{"source_kind": "file", "source_name": "tls://" + api.Addr}, 1},
		ser{"x509_source_up", map[string]string{"source_kind": "file", "source_name": "tls://" + syncer.Addr}, 1},
		ser{"x509_cert_not_after", map[string]string{"discriminator": "served:apiserver", "filepath": "tls://" + api.Addr, "subject_CN": "kubernetes"}, notAfter(p.Files["server.crt"])},
		ser{"x509_cert_not_after", map[string]string{"discriminator": "served:syncer", "subject_CN": "kube-apiserver"}, notAfter(syncCrt)},
	)

	// k0s restarted on a leaf that is not the stored server.crt; the syncer on a leaf of another CA.
	api.Set(probetest.KeyPair(t, other.Files["server.crt"], other.Files["server.key"]))
	syncer.Set(probetest.KeyPair(t, other.Files["server.crt"], other.Files["server.key"]))
	want("served is not stored",
		ser{"certguard_vcluster_served_mismatch", apiL, 1},
		ser{"certguard_vcluster_served_mismatch", syncL, 1},
		ser{"certguard_vcluster_served_expiry_timestamp_seconds", apiL, notAfter(other.Files["server.crt"])},
	)

	// The stored server.crt catches up (a repair wrote it): the API server's mismatch clears.
	if err := os.WriteFile(filepath.Join(dir, "server.crt"), other.Files["server.crt"], 0o644); err != nil {
		t.Fatal(err)
	}
	want("the stored leaf caught up", ser{"certguard_vcluster_served_mismatch", apiL, 0})

	// The syncer stops answering: its source is down and its served series are gone.
	syncer.Close()
	want("the syncer is down",
		ser{"x509_source_up", map[string]string{"source_kind": "file", "source_name": "tls://" + syncer.Addr}, 0},
	)
	if _, ok := value(scrape(t, s.Addr), "certguard_vcluster_served_expiry_timestamp_seconds", syncL); ok {
		t.Fatal("a down endpoint still shows a served expiry")
	}
}

// notAfterOf is a PEM certificate's NotAfter in Unix seconds, as the series carry it.
func notAfterOf(t *testing.T, pemBytes []byte) float64 {
	t.Helper()
	c, err := pki.ParseCertPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return float64(c.NotAfter.Unix())
}

// ser is a series that must read v.
type ser struct {
	name  string
	match map[string]string
	v     float64
}

// waitSeries scrapes the sidecar at addr until every series reads its value (at most 10 s).
func waitSeries(t *testing.T, addr, what string, series ...ser) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		fams := scrape(t, addr)
		last = ""
		for _, w := range series {
			if got, ok := value(fams, w.name, w.match); !ok || got != w.v {
				last = fmt.Sprintf("%s%v = %v (present %v), want %v", w.name, w.match, got, ok, w.v)
				break
			}
		}
		if last == "" {
			return
		}
	}
	t.Fatalf("%s: %s", what, last)
}

// TestSidecarEndpointDownIsSourceDown: an endpoint that accepts TCP and never answers, then one
// whose port is closed, is x509_source_up{source_kind="file",source_name="tls://…"} 0 at every
// scrape once its probe has timed out or been refused: never a scrape that waits for the probe,
// never a scrape without the series; every failed probe counts in x509_source_errors_total
// (unreadable). The exporter's SourceDown alert, run with promtool over the scrapes (up, muted,
// answering again), fires for that source alone after its 5 minutes and resolves.
func TestSidecarEndpointDownIsSourceDown(t *testing.T) {
	v := probetest.NewVcluster(t)
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pkigen.WriteDir(dir, v.PKI.Files); err != nil {
		t.Fatal(err)
	}
	api := probetest.Start(t, probetest.KeyPair(t, v.PKI.Files["server.crt"], v.PKI.Files["server.key"]))
	syncer := probetest.Start(t, probetest.KeyPair(t, v.SyncerCrt, v.SyncerKey))
	const timeout = 2 * time.Second
	s := &watch.Sidecar{PKIDir: dir, BackupDir: dir + ".old", RenewBefore: 120 * day, Reminder: 6 * time.Hour, Debounce: 50 * time.Millisecond,
		Restart: restart.Policy{Before: 30 * day, MinInterval: day, MaxSkew: 5 * time.Minute},
		Listen:  "127.0.0.1:0", Log: quiet, Now: time.Now, Ready: make(chan struct{}), Namespace: "vc-a",
		Served: &watch.Served{APIServer: api.Addr, Syncer: syncer.Addr, Interval: 100 * time.Millisecond, Timeout: timeout, Now: time.Now}}
	runSidecar(t, s)
	source := func(srv *probetest.Server) map[string]string {
		return map[string]string{"source_kind": "file", "source_name": "tls://" + srv.Addr}
	}
	unreadable := func(srv *probetest.Server) map[string]string {
		return map[string]string{"source_kind": "file", "source_name": "tls://" + srv.Addr, "reason": "unreadable"}
	}
	waitSeries(t, s.Addr, "both endpoints answer", ser{"x509_source_up", source(api), 1}, ser{"x509_source_up", source(syncer), 1},
		ser{"x509_source_errors_total", unreadable(api), 0},
		ser{"x509_source_errors_total", map[string]string{"source_name": "tls://" + api.Addr, "reason": "no_certificate"}, 0})
	up := scrape(t, s.Addr)

	down := func(what string, srv *probetest.Server, span time.Duration) map[string]*dto.MetricFamily {
		t.Helper()
		waitSeries(t, s.Addr, what, ser{"x509_source_up", source(srv), 0})
		return exportertest.HeldDown(t, what, func() map[string]*dto.MetricFamily { return scrape(t, s.Addr) }, source(srv), span, timeout, 2)
	}

	api.Mute.Store(true) // accepts TCP, never answers
	muted := down("the API server accepts and never answers", api, 2*timeout+time.Second)
	api.Mute.Store(false)
	waitSeries(t, s.Addr, "the API server answers again", ser{"x509_source_up", source(api), 1})
	exportertest.Run(t, exportertest.AlertsFile(),
		exportertest.SourceDownTest("certguard watch: the API server hangs, then answers", up, muted, scrape(t, s.Addr), source(api)))

	syncer.Close() // the port closed: refused
	down("the syncer's port is closed", syncer, time.Second)
}
