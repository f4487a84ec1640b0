package exporter

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo is x509-certificate-exporter's build-info family: constant 1, the build in its
// labels (v4.2.0 pkg/registry/registry.go, internal/product/version.go). Dashboards count
// replicas by version and join it onto the certificate series (`* on(instance) group_left(version)`).
var BuildInfo = Family{"x509_exporter_build_info", "Constant 1, with build labels."}

// buildLabels are BuildInfo's label names, sorted as the text exposition writes them (the
// exporter sets them as const labels, which client_golang sorts).
var buildLabels = []string{"built", "git_commit", "go_arch", "go_os", "go_runtime", "version"}

var descBuildInfo = prometheus.NewDesc(BuildInfo.Name, BuildInfo.Help, buildLabels, nil)

// Build is the binary's version, commit and date as `certguard version` prints them (main's
// -ldflags stamps, else what the Go toolchain recorded). What is empty reads "unknown", as the
// exporter writes it, and "dev" for the version, certguard's own default.
type Build struct{ Version, Commit, Date string }

// Labels are the values of BuildInfo's labels, in buildLabels' order.
func (b Build) Labels() (names, values []string) {
	or := func(s, d string) string {
		if s == "" {
			return d
		}
		return LabelValue(s)
	}
	return buildLabels, []string{or(b.Date, "unknown"), or(b.Commit, "unknown"), runtime.GOARCH, runtime.GOOS, runtime.Version(), or(b.Version, "dev")}
}

// SendBuildInfo sends the build-info series.
func SendBuildInfo(ch chan<- prometheus.Metric, b Build) {
	_, v := b.Labels()
	SendGauge(ch, descBuildInfo, 1, v)
}
