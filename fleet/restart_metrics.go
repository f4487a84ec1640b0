package fleet

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// vclusterLabels name a vcluster as the streamed certguard_vcluster_* series do (Metrics).
var vclusterLabels = []string{"secret_namespace", "vcluster"}

var (
	descGuarded   = prometheus.NewDesc("certguard_vcluster_init_container", "1 when the vcluster's StatefulSet runs certguard's init container (a restart renews its k0s leaves), else 0.", vclusterLabels, nil)
	descK0sRenews = prometheus.NewDesc("certguard_vcluster_k0s_renews", "1 when the vcluster runs k0s v1.35.1 or later, which renews its leaves itself: certguard never restarts it.", vclusterLabels, nil)
	descBlocked   = prometheus.NewDesc("certguard_vcluster_restart_blocked", "1 when the vcluster's leaves are due but its init container would not renew them (fleet serve --restart-due).", vclusterLabels, nil)
	descRestart   = prometheus.NewDesc("certguard_vcluster_restarting", "1 while certguard restarts the vcluster (its new pod is not Ready yet).", vclusterLabels, nil)
	descStalled   = prometheus.NewDesc("certguard_vcluster_restart_stalled", "1 when the vcluster's pod was not Ready within --restart-ready-timeout of its restart.", vclusterLabels, nil)
	descLastRst   = prometheus.NewDesc("certguard_vcluster_last_restart_timestamp_seconds", "When certguard (sidecar or fleet) last deleted the vcluster's pod (certguard.dev/last-restart; 0: never).", vclusterLabels, nil)
	descBlocker   = prometheus.NewDesc("certguard_vcluster_restart_blocker", "1 for the code that keeps the fleet from restarting the vcluster (the fleet plan's blocker).", append(slices.Clone(vclusterLabels), "code"), nil)
	descLeader    = prometheus.NewDesc("certguard_fleet_restart_leader", "1 when this replica holds the restart Lease (fleet serve --restart-due), else 0.", nil, nil)
)

// RestartCollector renders what the fleet knows from StatefulSets and the restarter.
type RestartCollector struct {
	State     *State
	Workloads *Workloads
	Parse     InitParser
	Restarter *Restarter // nil: no --restart-due
	Plan      func() Plan
}

// Describe sends the descriptors.
func (c *RestartCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGuarded, descK0sRenews, descBlocked, descRestart, descStalled, descLastRst, descBlocker, descLeader} {
		ch <- d
	}
}

// Collect sends one series of each per vcluster.
func (c *RestartCollector) Collect(ch chan<- prometheus.Metric) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		if m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, l...); err == nil {
			ch <- m
		}
	}
	_, leader := c.Restarter.Plan()
	plan := c.Plan()
	rows := make(map[string]PlanRow, len(plan.Rows))
	for _, r := range plan.Rows {
		rows[r.Namespace+"/"+r.Release] = r
	}
	// The facts as read, not judged: these gauges need names and the restart record only.
	for _, s := range c.State.snapshot() {
		if s.kubeconfig != nil {
			continue
		}
		row := s.facts
		ns, rel := row.Namespace, row.Release
		wl := c.Workloads.Read(ns, rel, c.Parse)
		gauge(descGuarded, b(wl.Guarded), ns, rel)
		gauge(descK0sRenews, b(wl.K0sRenews), ns, rel)
		last := 0.0
		if !row.LastRestart.IsZero() {
			last = float64(row.LastRestart.Unix())
		}
		gauge(descLastRst, last, ns, rel)
		pr := rows[ns+"/"+rel]
		if pr.Blocker != "" {
			gauge(descBlocker, 1, ns, rel, string(pr.Blocker))
		}
		if c.Restarter != nil {
			// Blocked keeps its meaning: due, and a restart would not renew the leaves.
			due := !pr.Due.IsZero() && !pr.Due.After(plan.Now)
			gauge(descBlocked, b(due && pr.State == StateBlocked), ns, rel)
			gauge(descRestart, b(pr.State == StateRestarting || pr.State == StateStalled), ns, rel)
			gauge(descStalled, b(pr.State == StateStalled), ns, rel)
		}
	}
	if c.Restarter != nil {
		gauge(descLeader, b(leader))
	}
}
