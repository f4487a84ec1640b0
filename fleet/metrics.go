package fleet

import (
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/watch"
	"github.com/prometheus/client_golang/prometheus"
)

// vclusterLabels name a vcluster by its certificate Secret, as the x509_cert_* series do
// (secret_namespace), plus the release: "namespace" would be renamed exported_namespace by a
// ServiceMonitor's target labels.
var vclusterLabels = []string{"secret_namespace", "vcluster"}

var (
	descLeaf   = prometheus.NewDesc("certguard_vcluster_leaf_expiry_timestamp_seconds", "When the earliest k0s leaf certificate in the vcluster's Secret expires.", vclusterLabels, nil)
	descCA     = prometheus.NewDesc("certguard_vcluster_ca_expiry_timestamp_seconds", "When the vcluster's CA (ca.crt) expires.", vclusterLabels, nil)
	descStatus = prometheus.NewDesc("certguard_vcluster_status", "1 for the vcluster's current status (as certguard fleet prints it), 0 for the others.", append(vclusterLabels, "status"), nil)
	descRepair = prometheus.NewDesc("certguard_vcluster_last_repair_timestamp_seconds", "When certguard last repaired the vcluster (certguard.dev/last-repair; 0: never).", vclusterLabels, nil)
	descCount  = prometheus.NewDesc("certguard_fleet_vclusters", "vcluster certificate Secrets followed.", nil, nil)
)

// statuses are every value certguard_vcluster_status takes, all sent for each vcluster (a state
// set) so that a status change never leaves a stale series at 1.
var statuses = []pki.FleetStatus{pki.FleetExpired, pki.FleetUnreadable, pki.FleetDue, pki.FleetOK, pki.FleetNoK0s}

// Collector renders the state at scrape time; the clock is injected.
type Collector struct {
	State       *State
	Now         func() time.Time
	RenewBefore time.Duration
}

// Describe sends the descriptors.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	watch.DescribeCerts(ch)
	for _, d := range []*prometheus.Desc{descLeaf, descCA, descStatus, descRepair, descCount} {
		ch <- d
	}
}

// Collect sends, for every certificate Secret, its x509_cert_* series (the sidecar's code) and
// the per-vcluster gauges.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	now := c.Now()
	seen := map[string]bool{}
	entries := c.State.snapshot()
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		if m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, l...); err == nil {
			ch <- m
		}
	}
	for _, e := range entries {
		s := e.secret
		watch.CollectSecretCerts(ch, now, seen, s.Namespace, s.Name, e.report)
		watch.SourceUp(ch, watch.KindKubeSecret, s.Namespace+"/"+s.Name, true)
		row := pki.Fleet(s, now, c.RenewBefore)
		if !row.LeafExpiry.IsZero() {
			gauge(descLeaf, float64(row.LeafExpiry.Unix()), s.Namespace, row.Release)
		}
		if !row.CAExpiry.IsZero() {
			gauge(descCA, float64(row.CAExpiry.Unix()), s.Namespace, row.Release)
		}
		for _, st := range statuses {
			v := 0.0
			if st == row.Status {
				v = 1
			}
			gauge(descStatus, v, s.Namespace, row.Release, string(st))
		}
		r := 0.0
		if t := lastRepair(row.LastRepair); !t.IsZero() {
			r = float64(t.Unix())
		}
		gauge(descRepair, r, s.Namespace, row.Release)
	}
	gauge(descCount, float64(len(entries)))
}
