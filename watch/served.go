package watch

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/certguard/certguard/exporter"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/probe"
	"github.com/prometheus/client_golang/prometheus"
)

// Default loopback addresses of the two endpoints in a vcluster k0s pod (docs/served.md): k0s's
// kube-apiserver (spec.api.port 6443 in vcluster's k0s config) and the syncer's proxy
// (controlPlane.proxy.port 8443, behind the Service's 443).
const (
	DefaultAPIServerAddr = "127.0.0.1:6443"
	DefaultSyncerAddr    = "127.0.0.1:8443"
)

// Served probes the endpoints of the sidecar's own pod and renders what they serve, held against
// what the sidecar read last from the Secret (or, without one, the pki dir).
type Served struct {
	// APIServer and Syncer are host:port; "" leaves that endpoint out.
	APIServer, Syncer string
	// Interval and Timeout bound the prober (zero: probe's defaults).
	Interval, Timeout time.Duration
	Now               func() time.Time

	prober probe.Prober
	mu     sync.Mutex
	ns, vc string
	stored map[string][]byte
}

func (v *Served) targets() []probe.Target {
	var ts []probe.Target
	for _, t := range []struct {
		e    probe.Endpoint
		addr string
	}{{probe.EndpointAPIServer, v.APIServer}, {probe.EndpointSyncer, v.Syncer}} {
		if t.addr != "" {
			ts = append(ts, probe.Target{Key: string(t.e), Addr: t.addr})
		}
	}
	return ts
}

// run probes until ctx ends: two endpoints, one worker each at most. The vcluster is named by
// its certificate Secret (<release>-certs), as the fleet names it; without one, by the pod's
// namespace alone. Every failed probe counts in errs, under the endpoint's source.
func (v *Served) run(ctx context.Context, secrets *kube.SecretStore, podNamespace string, errs *exporter.Errors) {
	v.mu.Lock()
	v.ns = podNamespace
	if secrets != nil {
		v.ns, v.vc = secrets.Namespace, strings.TrimSuffix(secrets.Name, "-certs")
	}
	v.mu.Unlock()
	v.prober.Workers, v.prober.Timeout, v.prober.Interval, v.prober.Jitter = 2, v.Timeout, v.Interval, probe.DefaultJitter
	v.prober.KeepCerts = true // two leaves, whose signature the syncer's check verifies
	for _, t := range v.targets() {
		errs.AddSource(exporter.ServedSourceKind, exporter.ServedSourceName(t.Addr), exporter.ServedReasons...)
	}
	v.prober.OnResult = func(r probe.Result) {
		if !r.Up() {
			errs.Count(exporter.ServedSourceKind, exporter.ServedSourceName(r.Target.Addr), exporter.ServedReason(errors.Is(r.Err, probe.ErrNoCertificate)))
		}
	}
	v.prober.Set(v.targets())
	v.prober.Run(ctx)
}

// setStored records the stored files the served leaves are held against: for each, the bytes
// certguard judges (eff's Source: the Secret's copy, which every start writes to disk, or the pki
// dir's where the Secret has none or k0s ≥ v1.35.1 re-signs the leaf at every start, so that
// the Secret's copy is stale and the disk's is what k0s serves).
func (v *Served) setStored(eff *pki.Report, disk, sec pki.Store) {
	stored := map[string][]byte{}
	for _, p := range []string{probe.StoredServerCert, probe.StoredCA} {
		stored[p] = disk.Files[p]
		if f, ok := eff.File(p); ok && f.Source == pki.SourceSecret && sec.Files[p] != nil {
			stored[p] = sec.Files[p]
		}
	}
	v.mu.Lock()
	v.stored = stored
	v.mu.Unlock()
}

// Describe sends nothing: the x509_* descriptors are registered by the sidecar's Metrics, and a
// second registration of them would be refused. An unchecked collector may send them.
func (v *Served) Describe(chan<- *prometheus.Desc) {}

// Collect renders the last probe of each endpoint; an endpoint not probed yet is left out.
func (v *Served) Collect(ch chan<- prometheus.Metric) {
	v.mu.Lock()
	ns, vc, stored := v.ns, v.vc, v.stored
	v.mu.Unlock()
	now := v.Now()
	seen := map[string]bool{}
	results := v.prober.Results()
	for _, t := range v.targets() {
		r, ok := results[t.Key]
		if !ok {
			continue
		}
		l := r.Leaf
		s := exporter.Served{Namespace: ns, Vcluster: vc, Endpoint: t.Key, Addr: t.Addr, Up: r.Up(),
			Cert: exporter.Cert{Serial: l.Serial, Subject: l.Subject, Issuer: l.Issuer, NotBefore: l.NotBefore, NotAfter: l.NotAfter}}
		s.Mismatch, s.MismatchKnown = probe.Mismatch(probe.Endpoint(t.Key), r.Cert, stored)
		exporter.SendServed(ch, now, seen, s)
	}
}
