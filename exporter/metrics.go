package exporter

import (
	"strings"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/prometheus/client_golang/prometheus"
)

// Family is a metric family's name and help text, as both the client_golang collectors and the
// fleet's streamed text exposition write them.
type Family struct{ Name, Help string }

// The x509-certificate-exporter families certguard serves. Their names and help texts are a
// contract: TestMetricsMatchTheExporter and the charts' promtool tests hold them.
var (
	CertNotAfter  = Family{"x509_cert_not_after", "Certificate expiration timestamp in seconds since the Unix epoch."}
	CertNotBefore = Family{"x509_cert_not_before", "Certificate validity start timestamp in seconds since the Unix epoch."}
	CertExpired   = Family{"x509_cert_expired", "1 when the certificate has expired, 0 otherwise."}
	CertExpiresIn = Family{"x509_cert_expires_in_seconds", "Seconds until the certificate expires (negative once expired)."}
	SourceUp      = Family{"x509_source_up", "1 when the source could be read, 0 otherwise."}
	SourceErrors  = Family{"x509_source_errors_total", "Errors reading certificates, by source and reason."}
)

var (
	descNotAfter  = prometheus.NewDesc(CertNotAfter.Name, CertNotAfter.Help, CertLabels, nil)
	descNotBefore = prometheus.NewDesc(CertNotBefore.Name, CertNotBefore.Help, CertLabels, nil)
	descExpired   = prometheus.NewDesc(CertExpired.Name, CertExpired.Help, CertLabels, nil)
	descExpiresIn = prometheus.NewDesc(CertExpiresIn.Name, CertExpiresIn.Help, CertLabels, nil)
	descSourceUp  = prometheus.NewDesc(SourceUp.Name, SourceUp.Help, sourceLabels, nil)
)

// DescribeCerts sends the descriptors of the x509_cert_*, x509_source_up and build-info series.
func DescribeCerts(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNotAfter, descNotBefore, descExpired, descExpiresIn, descSourceUp, descBuildInfo} {
		ch <- d
	}
}

// SendGauge sends one gauge; a value that cannot be a metric (wrong label count) is left out
// rather than failing the whole scrape.
func SendGauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, l []string) {
	if mt, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, l...); err == nil {
		ch <- mt
	}
}

// SendCert sends the four x509_cert_* series of one certificate labelled l (Labels), once per
// label set: seen holds the label sets already sent in this scrape, since a repeated series fails
// the whole scrape. Every label value is made valid UTF-8 (Prometheus refuses anything else).
func SendCert(ch chan<- prometheus.Metric, now time.Time, seen map[string]bool, c Cert, l []string) {
	for i := range l {
		l[i] = LabelValue(l[i])
	}
	key := strings.Join(l, "\x00")
	if seen[key] {
		return
	}
	seen[key] = true
	exp := 0.0
	if now.After(c.NotAfter) {
		exp = 1
	}
	SendGauge(ch, descNotAfter, float64(c.NotAfter.Unix()), l)
	SendGauge(ch, descNotBefore, float64(c.NotBefore.Unix()), l)
	SendGauge(ch, descExpired, exp, l)
	SendGauge(ch, descExpiresIn, c.NotAfter.Sub(now).Seconds(), l)
}

// CollectSecretCerts sends the x509_cert_* series of every certificate of a Secret's report
// (pki.Inspect of the Secret alone), labelled as x509-certificate-exporter's kube-secret source
// labels them. The sidecar renders its Secret through it, and the fleet's tests hold the fleet's
// streamed series to it. seen is shared by every call of one scrape.
func CollectSecretCerts(ch chan<- prometheus.Metric, now time.Time, seen map[string]bool, ns, name string, r *pki.Report) {
	for _, f := range r.Files {
		if f.Cert == nil {
			continue
		}
		// The exporter's kube-secret series carry no embedded_* labels: a kubeconfig in a
		// Secret key is one series, like any other key.
		c := FromInfo(f.Cert)
		SendCert(ch, now, seen, c, Labels(c, Location{SecretNamespace: ns, SecretName: name, Key: pki.SecretKey(f.Path)}))
	}
}

// SendSourceUp sends one x509_source_up series.
func SendSourceUp(ch chan<- prometheus.Metric, kind SourceKind, name string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	SendGauge(ch, descSourceUp, v, []string{string(kind), LabelValue(name)})
}

// Reason is a reason label value of x509_source_errors_total: pki's parse reasons, and the two a
// source has besides.
type Reason string

// Reasons of x509_source_errors_total besides pki's parse reasons.
const (
	ReasonSecretUnreadable Reason = "secret_unreadable"
	ReasonWatchFailed      Reason = "watch_failed"
)

// errorReasons are every reason x509_source_errors_total may carry; each source starts with all
// of them at 0, as the exporter's PreInitBundleSource does, so that rate() and increase() see the
// first error and an absent series never reads as "no errors".
var errorReasons = []Reason{Reason(pki.ReasonBadPEM), Reason(pki.ReasonNoCertificate), Reason(pki.ReasonBadKey),
	Reason(pki.ReasonBadKubeconfig), Reason(pki.ReasonEmpty), Reason(pki.ReasonUnreadable), Reason(pki.ReasonNotRegular),
	Reason(pki.ReasonTooLarge), ReasonSecretUnreadable, ReasonWatchFailed}

// Errors is x509_source_errors_total, a prometheus.Collector.
type Errors struct{ vec *prometheus.CounterVec }

// NewErrors makes the counter, with no source yet.
func NewErrors() *Errors {
	return &Errors{vec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: SourceErrors.Name, Help: SourceErrors.Help},
		[]string{"source_kind", "source_name", "reason"})}
}

// AddSource makes the source's series exist at 0 for every reason, or for the reasons given
// (those the source can give: ServedReasons).
func (e *Errors) AddSource(kind SourceKind, name string, reasons ...Reason) {
	if len(reasons) == 0 {
		reasons = errorReasons
	}
	for _, r := range reasons {
		e.vec.WithLabelValues(string(kind), LabelValue(name), string(r))
	}
}

// Count counts one error of a source.
func (e *Errors) Count(kind SourceKind, name string, reason Reason) {
	e.vec.WithLabelValues(string(kind), LabelValue(name), string(reason)).Inc()
}

// Describe sends the counter's descriptor.
func (e *Errors) Describe(ch chan<- *prometheus.Desc) { e.vec.Describe(ch) }

// Collect sends the counter's series.
func (e *Errors) Collect(ch chan<- prometheus.Metric) { e.vec.Collect(ch) }
