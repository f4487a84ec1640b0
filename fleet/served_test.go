package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/certguard/certguard/exporter/exportertest"
	"github.com/certguard/certguard/fleet"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/kube/kubetest"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/probe"
	"github.com/certguard/certguard/probe/probetest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probedFleet is fleet serve --probe-served on a real apiserver, following one vcluster, vc1:
// its certificate Secret, its Service and an EndpointSlice pointing at a local TLS server standing
// for its syncer (on this machine's own address: the API server refuses loopback in an
// EndpointSlice), plus the EndpointSlice of its headless Service, which no Secret names.
type probedFleet struct {
	env    *kubetest.Env
	ns     string
	addr   string // fleet serve's /metrics
	v      probetest.Vcluster
	syncer *probetest.Server
}

func startProbedFleet(t *testing.T) *probedFleet {
	t.Helper()
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	ns, err := env.Namespace(ctx, "served")
	if err != nil {
		t.Fatal(err)
	}
	v := probetest.NewVcluster(t)
	host := probetest.HostIP(t)
	syncer := probetest.StartOn(t, host, probetest.KeyPair(t, v.SyncerCrt, v.SyncerKey))
	_, port, _ := net.SplitHostPort(syncer.Addr)
	portNum, _ := strconv.Atoi(port)

	labels := map[string]string{"app": "vcluster", "release": "vc1"}
	core := env.Client.CoreV1()
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vc1-certs", Labels: labels},
		Type: corev1.SecretTypeOpaque, Data: v.PKI.SecretData()}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The Service as vcluster's chart makes it (443 → 8443); no selector, so the test owns its
	// endpoints (there is no EndpointSlice controller here anyway).
	if _, err := core.Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "vc1", Labels: labels},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443), Protocol: corev1.ProtocolTCP}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready := true
	slice := func(name, service, addr string, port int32) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "vcluster", discoveryv1.LabelServiceName: service}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("https"), Port: &port}},
		}
	}
	eps := env.Client.DiscoveryV1().EndpointSlices(ns)
	for _, s := range []*discoveryv1.EndpointSlice{
		slice("vc1-x1", "vc1", host, int32(portNum)),
		// vcluster's headless Service carries the same labels: no Secret of its name, not probed.
		slice("vc1-headless-x1", "vc1-headless", host, int32(portNum)),
	} {
		if _, err := eps.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	client, err := kube.NewClient(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	svc := &fleet.Service{Client: client, Namespace: ns, Listen: addr, RenewBefore: 90 * 24 * time.Hour,
		Parse: func([]string, map[string]string) (fleet.InitSettings, error) {
			return fleet.InitSettings{}, errors.New("none")
		},
		ProbeServed: true, ProbeInterval: 200 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &probedFleet{env: env, ns: ns, addr: addr, v: v, syncer: syncer}
}

// ser is a series that must read v, alone of its name to match.
type ser struct {
	name  string
	match map[string]string
	v     float64
}

// want scrapes until every series reads its value (at most 15 s) and returns that scrape.
func (f *probedFleet) want(t *testing.T, what string, series ...ser) map[string]*dto.MetricFamily {
	t.Helper()
	var last string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		fams, err := scrapeFleet(f.addr)
		if err != nil {
			last = err.Error()
			continue
		}
		last = ""
		for _, w := range series {
			if got, n := metricValue(fams, w.name, w.match); n != 1 || got != w.v {
				last = fmt.Sprintf("%s%v = %v (%d series), want %v", w.name, w.match, got, n, w.v)
				break
			}
		}
		if last == "" {
			return fams
		}
	}
	t.Fatalf("%s: %s", what, last)
	return nil
}

// TestFleetProbesEachVclusterService runs fleet serve with --probe-served on a real apiserver
// (probedFleet). The test switches what the syncer serves and stops it, and reads the result
// from /metrics as Prometheus parses it.
func TestFleetProbesEachVclusterService(t *testing.T) {
	f := startProbedFleet(t)
	ctx := context.Background()
	ns, syncer, want := f.ns, f.syncer, func(what string, series ...ser) map[string]*dto.MetricFamily {
		t.Helper()
		return f.want(t, what, series...)
	}
	crt, other := f.v.SyncerCrt, f.v.Other
	eps := f.env.Client.DiscoveryV1().EndpointSlices(ns)
	notAfter := func(b []byte) float64 {
		c, err := pki.ParseCertPEM(b)
		if err != nil {
			t.Fatal(err)
		}
		return float64(c.NotAfter.Unix())
	}
	vc := map[string]string{"secret_namespace": ns, "vcluster": "vc1", "endpoint": "syncer"}
	source := map[string]string{"source_kind": "file", "source_name": "tls://" + syncer.Addr}
	fams := want("the syncer serves a leaf of the vcluster's CA",
		ser{"certguard_vcluster_served_expiry_timestamp_seconds", vc, notAfter(crt)},
		ser{"certguard_vcluster_served_mismatch", vc, 0},
		ser{"x509_source_up", source, 1},
		ser{"x509_cert_not_after", map[string]string{"discriminator": "served:syncer", "subject_CN": "kube-apiserver", "filepath": "tls://" + syncer.Addr}, notAfter(crt)},
		ser{"x509_cert_expired", map[string]string{"discriminator": "served:syncer"}, 0},
		ser{"x509_source_up", map[string]string{"source_kind": "kube-secret", "source_name": ns + "/vc1-certs"}, 1},
	)
	if _, n := metricValue(fams, "certguard_vcluster_served_expiry_timestamp_seconds", map[string]string{"vcluster": "vc1-headless"}); n != 0 {
		t.Fatal("the headless Service, which no Secret names, was probed")
	}

	// The syncer restarted on a leaf of another CA (a CA reset it did not follow).
	syncer.Set(probetest.KeyPair(t, other.Files["server.crt"], other.Files["server.key"]))
	want("the served leaf is not the vcluster CA's",
		ser{"certguard_vcluster_served_mismatch", vc, 1},
		ser{"certguard_vcluster_served_expiry_timestamp_seconds", vc, notAfter(other.Files["server.crt"])},
	)

	// The syncer stops answering: up 0 and no served series; the Secret's source stays up.
	syncer.Close()
	fams = want("the syncer is down", ser{"x509_source_up", source, 0},
		ser{"x509_source_up", map[string]string{"source_kind": "kube-secret", "source_name": ns + "/vc1-certs"}, 1})
	for _, name := range []string{"certguard_vcluster_served_expiry_timestamp_seconds", "certguard_vcluster_served_mismatch"} {
		if _, n := metricValue(fams, name, vc); n != 0 {
			t.Fatalf("%s still shown for a syncer that does not answer", name)
		}
	}

	// The EndpointSlice goes (the vcluster is scaled down): the endpoint is no longer probed.
	if err := eps.Delete(ctx, "vc1-x1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		fams, err := scrapeFleet(f.addr)
		if err == nil {
			if _, n := metricValue(fams, "x509_source_up", source); n == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("an endpoint gone from the EndpointSlices is still shown")
		}
	}
}

func ptr[T any](v T) *T { return &v }

func scrapeFleet(addr string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	return p.TextToMetricFamilies(resp.Body)
}

// metricValue is the value of the series of name whose labels include match, and how many match.
func metricValue(fams map[string]*dto.MetricFamily, name string, match map[string]string) (float64, int) {
	f, ok := fams[name]
	if !ok {
		return 0, 0
	}
	var v float64
	n := 0
	for _, m := range f.Metric {
		hit := true
		for k, want := range match {
			if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == want }) {
				hit = false
			}
		}
		if hit {
			n++
			v = m.GetGauge().GetValue()
			if m.Counter != nil {
				v = m.Counter.GetValue()
			}
		}
	}
	return v, n
}

// TestFleetServedEndpointDownIsSourceDown: a vcluster's syncer that accepts TCP and never
// answers, then whose port is closed, is x509_source_up{source_kind="file",
// source_name="tls://…"} 0 at every scrape of fleet serve once its probe has timed out (5 s, the
// default) or been refused: no scrape waits for the probe, the series never goes, and each
// failed probe counts in x509_source_errors_total (unreadable), also once its EndpointSlice marks
// it not ready. The exporter's SourceDown alert, run with promtool over the scrapes (up, muted,
// answering again), fires for that source alone and resolves.
func TestFleetServedEndpointDownIsSourceDown(t *testing.T) {
	f := startProbedFleet(t)
	source := map[string]string{"source_kind": "file", "source_name": "tls://" + f.syncer.Addr}
	errs := func(reason string) map[string]string {
		return map[string]string{"source_kind": "file", "source_name": "tls://" + f.syncer.Addr, "reason": reason}
	}
	up := f.want(t, "the syncer answers", ser{"x509_source_up", source, 1},
		ser{"x509_source_errors_total", errs("unreadable"), 0}, ser{"x509_source_errors_total", errs("no_certificate"), 0})
	scrape := func() map[string]*dto.MetricFamily {
		fams, err := scrapeFleet(f.addr)
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}

	f.syncer.Mute.Store(true) // accepts TCP, never answers
	f.want(t, "the syncer hangs", ser{"x509_source_up", source, 0})
	// Its readiness probe fails as well: the EndpointSlice marks the endpoint not ready, and the
	// fleet keeps probing it (the only address the vcluster has) rather than dropping its series.
	ctx := context.Background()
	eps := f.env.Client.DiscoveryV1().EndpointSlices(f.ns)
	es, err := eps.Get(ctx, "vc1-x1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es.Endpoints[0].Conditions.Ready = ptr(false)
	if _, err := eps.Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// 6 s: the next probe's 5 s timeout ends within them.
	muted := exportertest.HeldDown(t, "the syncer accepts and never answers", scrape, source, 6*time.Second, probe.DefaultTimeout, 2)
	f.syncer.Mute.Store(false)
	again := f.want(t, "the syncer answers again", ser{"x509_source_up", source, 1})
	exportertest.Run(t, exportertest.AlertsFile(),
		exportertest.SourceDownTest("certguard fleet serve: a vcluster's syncer hangs, then answers", up, muted, again, source))

	f.syncer.Close() // the port closed: refused
	f.want(t, "the syncer's port is closed", ser{"x509_source_up", source, 0})
	exportertest.HeldDown(t, "the syncer's port is closed", scrape, source, time.Second, probe.DefaultTimeout, 3)
}
