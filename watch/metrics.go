package watch

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/certguard/certguard/pki"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"
)

// certLabels are x509-certificate-exporter v4's label slots, all emitted, empty when they do not
// apply, so its dashboards and alerts work unchanged.
var certLabels = []string{
	"filename", "filepath", "embedded_kind", "embedded_key", "serial_number",
	"subject_C", "subject_ST", "subject_L", "subject_O", "subject_OU", "subject_CN",
	"issuer_C", "issuer_ST", "issuer_L", "issuer_O", "issuer_OU", "issuer_CN",
	"secret_namespace", "secret_name", "secret_key", "discriminator",
}

// Source kinds as x509-certificate-exporter writes them in source_kind (its pkg/cert KindFile,
// KindKubeconfig, KindKubeSecret): its alerts and dashboards select on them.
const (
	KindFile       = "file"
	KindKubeconfig = "kubeconfig"
	KindKubeSecret = "kube-secret"
)

// Reasons of x509_source_errors_total besides pki's parse reasons.
const (
	ReasonSecretUnreadable = "secret_unreadable"
	ReasonWatchFailed      = "watch_failed"
)

// errorReasons are every reason x509_source_errors_total may carry; each source starts with all
// of them at 0, as the exporter's PreInitBundleSource does, so that rate() and increase() see the
// first error and an absent series never reads as "no errors".
var errorReasons = []string{string(pki.ReasonBadPEM), string(pki.ReasonNoCertificate), string(pki.ReasonBadKey),
	string(pki.ReasonBadKubeconfig), string(pki.ReasonEmpty), string(pki.ReasonUnreadable), string(pki.ReasonNotRegular),
	string(pki.ReasonTooLarge), ReasonSecretUnreadable, ReasonWatchFailed}

var (
	descNotAfter  = prometheus.NewDesc("x509_cert_not_after", "Certificate expiration timestamp in seconds since the Unix epoch.", certLabels, nil)
	descNotBefore = prometheus.NewDesc("x509_cert_not_before", "Certificate validity start timestamp in seconds since the Unix epoch.", certLabels, nil)
	descExpired   = prometheus.NewDesc("x509_cert_expired", "1 when the certificate has expired, 0 otherwise.", certLabels, nil)
	descExpiresIn = prometheus.NewDesc("x509_cert_expires_in_seconds", "Seconds until the certificate expires (negative once expired).", certLabels, nil)
	descSourceUp  = prometheus.NewDesc("x509_source_up", "1 when the source could be read, 0 otherwise.", []string{"source_kind", "source_name"}, nil)
	descDrift     = prometheus.NewDesc("certguard_disk_secret_drift", "Files whose bytes differ between the pki dir and the Secret, other than those k0s rewrites at every start.", nil, nil)
	descRepair    = prometheus.NewDesc("certguard_last_repair_timestamp_seconds", "When the last completed repair finished (0: none recorded).", nil, nil)
	descRestart   = prometheus.NewDesc("certguard_next_restart_timestamp_seconds", "When the sidecar plans to restart the pod so that the init container renews the leaves (0: none planned).", nil, nil)
	descHeld      = prometheus.NewDesc("certguard_repair_held", "1 when the init container's plan holds back a repair the certificates call for, because of the clock "+
		"(node clock off the API server's, a certificate from the future, no clock reference): the pod starts unchanged, and the plan's repair-held finding says why.", nil, nil)
	descBlocked = prometheus.NewDesc("certguard_restart_blocked", "1 when a restart is due but the init container's plan would not renew the leaves (it would do nothing, refuse or reset the PKI), so the sidecar does not restart.", nil, nil)
)

// snapshot is what one scrape renders. It is replaced whole after every change.
type snapshot struct {
	pkiDir      string
	disk        *pki.Report
	kubeconfigs map[string][]embedded // disk kubeconfigs by path: every cluster CA and user
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
	// repairHeld: the init container's plan holds a repair back for the clock (pki.CodeRepairHeld).
	repairHeld bool
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
		Name: "x509_source_errors_total", Help: "Errors reading certificates, by source and reason.",
	}, []string{"source_kind", "source_name", "reason"})}
}

// AddSource makes the source's x509_source_errors_total series exist at 0 for every reason.
func (m *Metrics) AddSource(kind, name string) {
	for _, r := range errorReasons {
		m.Errors.WithLabelValues(kind, labelValue(name), r)
	}
}

// CountError counts one error of a source.
func (m *Metrics) CountError(kind, name, reason string) {
	m.Errors.WithLabelValues(kind, labelValue(name), reason).Inc()
}

func (m *Metrics) set(s snapshot) {
	m.mu.Lock()
	m.snap = s
	m.mu.Unlock()
}

// Describe sends the descriptors.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNotAfter, descNotBefore, descExpired, descExpiresIn, descSourceUp, descDrift, descRepair, descRestart, descBlocked, descHeld} {
		ch <- d
	}
	m.Errors.Describe(ch)
}

// Collect renders the snapshot. It never panics on what it read: every label value is made
// valid UTF-8 (Prometheus refuses anything else), and a series whose labels repeat another's is
// left out rather than failing the whole scrape.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	s := m.snap
	m.mu.Unlock()
	now := m.Now()
	seen := map[string]bool{}
	send := func(d *prometheus.Desc, v float64, l []string) { sendGauge(ch, d, v, l) }
	cert := func(c certFields, l []string) { sendCert(ch, now, seen, c, l) }
	if s.disk != nil {
		for _, f := range s.disk.Files {
			if f.Cert == nil {
				continue
			}
			path := filepath.Join(s.pkiDir, filepath.FromSlash(f.Path))
			loc := location{filename: filepath.Base(path), path: path}
			if ks, ok := s.kubeconfigs[f.Path]; ok && f.Cert.User != "" {
				for _, k := range ks {
					c := fromX509(k.cert)
					cert(c, labels(c, loc, k.kind, k.key))
				}
				continue
			}
			c := fromInfo(f.Cert)
			cert(c, labels(c, loc, "", ""))
		}
	}
	if s.secret != nil {
		CollectSecretCerts(ch, now, seen, s.secretNS, s.secretName, s.secret)
	}
	send(descSourceUp, b2f(s.diskUp), []string{KindFile, labelValue(s.pkiDir)})
	send(descSourceUp, b2f(s.diskUp), []string{KindKubeconfig, labelValue(s.pkiDir)})
	if s.secretName != "" {
		send(descSourceUp, b2f(s.secretUp), []string{KindKubeSecret, s.secretNS + "/" + s.secretName})
	}
	send(descDrift, float64(s.drift), nil)
	send(descRepair, unix(s.lastRepair), nil)
	send(descRestart, unix(s.nextRestart), nil)
	send(descBlocked, b2f(s.restartBlocked), nil)
	send(descHeld, b2f(s.repairHeld), nil)
	m.Errors.Collect(ch)
}

func sendGauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, l []string) {
	if mt, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, l...); err == nil {
		ch <- mt
	}
}

// sendCert sends the four x509_cert_* series of one certificate, once per label set: seen holds
// the label sets already sent in this scrape, since a repeated series fails the whole scrape.
func sendCert(ch chan<- prometheus.Metric, now time.Time, seen map[string]bool, c certFields, l []string) {
	for i := range l {
		l[i] = labelValue(l[i])
	}
	key := strings.Join(l, "\x00")
	if seen[key] {
		return
	}
	seen[key] = true
	exp := 0.0
	if now.After(c.notAfter) {
		exp = 1
	}
	sendGauge(ch, descNotAfter, float64(c.notAfter.Unix()), l)
	sendGauge(ch, descNotBefore, float64(c.notBefore.Unix()), l)
	sendGauge(ch, descExpired, exp, l)
	sendGauge(ch, descExpiresIn, c.notAfter.Sub(now).Seconds(), l)
}

// DescribeCerts sends the descriptors of the x509_cert_* and x509_source_up series, for a
// collector that renders Secrets with CollectSecretCerts (certguard fleet serve).
func DescribeCerts(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNotAfter, descNotBefore, descExpired, descExpiresIn, descSourceUp} {
		ch <- d
	}
}

// CollectSecretCerts sends the x509_cert_* series of every certificate of a Secret's report
// (pki.Inspect of the Secret alone), labelled as x509-certificate-exporter's kube-secret source
// labels them, and its x509_source_up. The sidecar and certguard fleet serve both render Secrets
// through it, so that one dashboard reads both. seen is shared by every call of one scrape.
func CollectSecretCerts(ch chan<- prometheus.Metric, now time.Time, seen map[string]bool, ns, name string, r *pki.Report) {
	for _, f := range r.Files {
		if f.Cert == nil {
			continue
		}
		// The exporter's kube-secret series carry no embedded_* labels: a kubeconfig in a
		// Secret key is one series, like any other key.
		loc := location{ns: ns, name: name, key: pki.SecretKey(f.Path)}
		c := fromInfo(f.Cert)
		sendCert(ch, now, seen, c, labels(c, loc, "", ""))
	}
}

// SourceUp sends one x509_source_up series.
func SourceUp(ch chan<- prometheus.Metric, kind, name string, up bool) {
	sendGauge(ch, descSourceUp, b2f(up), []string{kind, labelValue(name)})
}

// location is where a certificate was read: a file, or a Secret's key.
type location struct {
	filename, path string
	ns, name, key  string
}

// certFields is what the series of one certificate show.
type certFields struct {
	serial              string
	subject, issuer     pkix.Name
	notBefore, notAfter time.Time
}

func fromInfo(c *pki.CertInfo) certFields {
	return certFields{c.Serial, c.SubjectName, c.IssuerName, c.NotBefore, c.NotAfter}
}

func fromX509(c *x509.Certificate) certFields {
	return certFields{c.SerialNumber.String(), c.Subject, c.Issuer, c.NotBefore, c.NotAfter}
}

func labels(c certFields, at location, kind, key string) []string {
	return []string{at.filename, at.path, kind, key, c.serial,
		first(c.subject.Country), first(c.subject.Province), first(c.subject.Locality), first(c.subject.Organization), first(c.subject.OrganizationalUnit), c.subject.CommonName,
		first(c.issuer.Country), first(c.issuer.Province), first(c.issuer.Locality), first(c.issuer.Organization), first(c.issuer.OrganizationalUnit), c.issuer.CommonName,
		at.ns, at.name, at.key, ""}
}

// first is the exporter's reading of a multi-valued RDN (pkg/registry/labels.go dnValue): its
// first value, not all of them joined.
func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// labelValue makes s valid UTF-8: a file name is any bytes but '/' and NUL, and Prometheus
// panics on (MustNewConstMetric) or refuses an invalid label value. Each invalid byte becomes
// \xNN, so two names that differ in those bytes stay apart.
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// diskKubeconfigs reads every certificate of each kubeconfig in the report.
func diskKubeconfigs(disk pki.Store, r *pki.Report) map[string][]embedded {
	out := map[string][]embedded{}
	for _, f := range r.Files {
		if f.Cert != nil && f.Cert.User != "" {
			out[f.Path] = kubeconfigCerts(disk.Files[f.Path])
		}
	}
	return out
}

// embedded is one certificate in a kubeconfig, named as the exporter names it: embedded_kind
// "cluster" (certificate-authority-data) or "user" (client-certificate-data), embedded_key the
// cluster's or user's name.
type embedded struct {
	kind, key string
	cert      *x509.Certificate
}

// kubeconfigCerts reads every embedded certificate of a kubeconfig, as the exporter's kubeconfig
// source does (pkg/source/kubeconfig: clusters, then users). What does not parse is left out:
// pki's report already says why the file is broken.
func kubeconfigCerts(data []byte) []embedded {
	var doc struct {
		Clusters []struct {
			Name    string `json:"name"`
			Cluster struct {
				CA string `json:"certificate-authority-data"`
			} `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			Name string `json:"name"`
			User struct {
				Cert string `json:"client-certificate-data"`
			} `json:"user"`
		} `json:"users"`
	}
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	var out []embedded
	add := func(kind, key, b64 string) {
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return
		}
		c, err := pki.ParseCertPEM(raw)
		if err != nil {
			return
		}
		out = append(out, embedded{kind: kind, key: key, cert: c})
	}
	for _, c := range doc.Clusters {
		add("cluster", c.Name, c.Cluster.CA)
	}
	for _, u := range doc.Users {
		add("user", u.Name, u.User.Cert)
	}
	return out
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
