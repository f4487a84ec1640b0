package watch

import (
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/prometheus/client_golang/prometheus"
)

// certLabels are x509-certificate-exporter v4's label slots, all emitted, empty when they do not
// apply, so its dashboards and alerts work unchanged.
var certLabels = []string{
	"filename", "filepath", "embedded_kind", "embedded_key", "serial_number",
	"subject_C", "subject_ST", "subject_L", "subject_O", "subject_OU", "subject_CN",
	"issuer_C", "issuer_ST", "issuer_L", "issuer_O", "issuer_OU", "issuer_CN",
	"secret_namespace", "secret_name", "secret_key", "discriminator",
}

var (
	descNotAfter  = prometheus.NewDesc("x509_cert_not_after", "Certificate expiration timestamp in seconds since the Unix epoch.", certLabels, nil)
	descNotBefore = prometheus.NewDesc("x509_cert_not_before", "Certificate validity start timestamp in seconds since the Unix epoch.", certLabels, nil)
	descExpired   = prometheus.NewDesc("x509_cert_expired", "1 when the certificate has expired, 0 otherwise.", certLabels, nil)
	descExpiresIn = prometheus.NewDesc("x509_cert_expires_in_seconds", "Seconds until the certificate expires (negative once expired).", certLabels, nil)
	descSourceUp  = prometheus.NewDesc("x509_source_up", "1 when the source could be read, 0 otherwise.", []string{"source_kind", "source_name"}, nil)
	descDrift     = prometheus.NewDesc("certguard_disk_secret_drift", "Files whose bytes differ between the pki dir and the Secret, other than those k0s rewrites at every start.", nil, nil)
	descRepair    = prometheus.NewDesc("certguard_last_repair_timestamp_seconds", "When the last completed repair finished (0: none recorded).", nil, nil)
	descRestart   = prometheus.NewDesc("certguard_next_restart_timestamp_seconds", "When the sidecar plans to restart the pod so that the init container renews the leaves (0: none planned).", nil, nil)
	descBlocked   = prometheus.NewDesc("certguard_restart_blocked", "1 when a restart is due but the init container's plan would not renew the leaves (it would do nothing, refuse or reset the PKI), so the sidecar does not restart.", nil, nil)
)

// snapshot is what one scrape renders. It is replaced whole after every change.
type snapshot struct {
	pkiDir      string
	disk        *pki.Report
	secret      *pki.Report
	secretNS    string
	secretName  string
	diskUp      bool
	secretUp    bool
	drift       int
	lastRepair  time.Time
	nextRestart time.Time
	// restartBlocked: a restart is due, but the init container would not renew the leaves.
	restartBlocked bool
}

// Metrics is a prometheus.Collector over the latest snapshot; the scrape time comes from an
// injected clock, so expires_in is exact at scrape time and tests are deterministic.
type Metrics struct {
	Now    func() time.Time
	Errors *prometheus.CounterVec

	mu   sync.Mutex
	snap snapshot
}

// NewMetrics makes the collector and its x509_source_errors_total counter.
func NewMetrics(now func() time.Time) *Metrics {
	return &Metrics{Now: now, Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "x509_source_errors_total", Help: "Errors reading certificates, by reason.",
	}, []string{"reason"})}
}

func (m *Metrics) set(s snapshot) {
	m.mu.Lock()
	m.snap = s
	m.mu.Unlock()
}

// Describe sends the descriptors.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNotAfter, descNotBefore, descExpired, descExpiresIn, descSourceUp, descDrift, descRepair, descRestart, descBlocked} {
		ch <- d
	}
	m.Errors.Describe(ch)
}

// Collect renders the snapshot.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	s := m.snap
	m.mu.Unlock()
	now := m.Now()
	emit := func(r *pki.Report, secret bool) {
		if r == nil {
			return
		}
		for _, f := range r.Files {
			if f.Cert == nil {
				continue
			}
			l := labels(f, s, secret)
			exp := 0.0
			if now.After(f.Cert.NotAfter) {
				exp = 1
			}
			ch <- prometheus.MustNewConstMetric(descNotAfter, prometheus.GaugeValue, float64(f.Cert.NotAfter.Unix()), l...)
			ch <- prometheus.MustNewConstMetric(descNotBefore, prometheus.GaugeValue, float64(f.Cert.NotBefore.Unix()), l...)
			ch <- prometheus.MustNewConstMetric(descExpired, prometheus.GaugeValue, exp, l...)
			ch <- prometheus.MustNewConstMetric(descExpiresIn, prometheus.GaugeValue, f.Cert.NotAfter.Sub(now).Seconds(), l...)
		}
	}
	emit(s.disk, false)
	emit(s.secret, true)
	ch <- prometheus.MustNewConstMetric(descSourceUp, prometheus.GaugeValue, b2f(s.diskUp), "file", s.pkiDir)
	if s.secretName != "" {
		ch <- prometheus.MustNewConstMetric(descSourceUp, prometheus.GaugeValue, b2f(s.secretUp), "secret", s.secretNS+"/"+s.secretName)
	}
	ch <- prometheus.MustNewConstMetric(descDrift, prometheus.GaugeValue, float64(s.drift))
	ch <- prometheus.MustNewConstMetric(descRepair, prometheus.GaugeValue, unix(s.lastRepair))
	ch <- prometheus.MustNewConstMetric(descRestart, prometheus.GaugeValue, unix(s.nextRestart))
	blocked := 0.0
	if s.restartBlocked {
		blocked = 1
	}
	ch <- prometheus.MustNewConstMetric(descBlocked, prometheus.GaugeValue, blocked)
	m.Errors.Collect(ch)
}

func labels(f pki.File, s snapshot, secret bool) []string {
	c := f.Cert
	one := func(v []string) string { return strings.Join(v, ",") }
	var filename, path, kind, key, ns, name, skey string
	if secret {
		ns, name, skey = s.secretNS, s.secretName, pki.SecretKey(f.Path)
	} else {
		path = filepath.Join(s.pkiDir, filepath.FromSlash(f.Path))
		filename = filepath.Base(path)
	}
	if c.User != "" {
		kind, key = "user", c.User
	}
	return []string{filename, path, kind, key, c.Serial,
		one(c.SubjectName.Country), one(c.SubjectName.Province), one(c.SubjectName.Locality), one(c.SubjectName.Organization), one(c.SubjectName.OrganizationalUnit), c.SubjectName.CommonName,
		one(c.IssuerName.Country), one(c.IssuerName.Province), one(c.IssuerName.Locality), one(c.IssuerName.Organization), one(c.IssuerName.OrganizationalUnit), c.IssuerName.CommonName,
		ns, name, skey, ""}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.Unix())
}
