package watch

import (
	"crypto/x509"
	"encoding/base64"
	"path/filepath"
	"sync"
	"time"

	"github.com/certguard/certguard/exporter"
	"github.com/certguard/certguard/pki"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"
)

// The sidecar's own series; the x509_* ones are the exporter's contract (package exporter).
var (
	descDrift   = prometheus.NewDesc("certguard_disk_secret_drift", "Files whose bytes differ between the pki dir and the Secret, other than those k0s rewrites at every start.", nil, nil)
	descRepair  = prometheus.NewDesc("certguard_last_repair_timestamp_seconds", "When the last completed repair finished (0: none recorded).", nil, nil)
	descRestart = prometheus.NewDesc("certguard_next_restart_timestamp_seconds", "When the sidecar plans to restart the pod so that the init container renews the leaves (0: none planned).", nil, nil)
	descHeld    = prometheus.NewDesc("certguard_repair_held", "1 when the init container's plan holds back a repair the certificates call for, because of the clock "+
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
	Errors *exporter.Errors
	// Build labels x509_exporter_build_info.
	Build exporter.Build

	mu   sync.Mutex
	snap snapshot
}

// NewMetrics makes the collector and its x509_source_errors_total counter.
func NewMetrics(now func() time.Time) *Metrics {
	return &Metrics{Now: now, Errors: exporter.NewErrors()}
}

func (m *Metrics) set(s snapshot) {
	m.mu.Lock()
	m.snap = s
	m.mu.Unlock()
}

// Describe sends the descriptors.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	exporter.DescribeCerts(ch)
	for _, d := range []*prometheus.Desc{descDrift, descRepair, descRestart, descBlocked, descHeld} {
		ch <- d
	}
	m.Errors.Describe(ch)
}

// Collect renders the snapshot. It never panics on what it read: every label value is made
// valid UTF-8 (Prometheus refuses anything else), and a series whose labels repeat another's is
// left out rather than failing the whole scrape (exporter.SendCert).
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	s := m.snap
	m.mu.Unlock()
	now := m.Now()
	seen := map[string]bool{}
	send := func(d *prometheus.Desc, v float64, l []string) { exporter.SendGauge(ch, d, v, l) }
	cert := func(c exporter.Cert, at exporter.Location) {
		exporter.SendCert(ch, now, seen, c, exporter.Labels(c, at))
	}
	if s.disk != nil {
		for _, f := range s.disk.Files {
			if f.Cert == nil {
				continue
			}
			path := filepath.Join(s.pkiDir, filepath.FromSlash(f.Path))
			at := exporter.Location{Filename: filepath.Base(path), Path: path}
			if ks, ok := s.kubeconfigs[f.Path]; ok && f.Cert.User != "" {
				for _, k := range ks {
					at.EmbeddedKind, at.EmbeddedKey = k.kind, k.key
					cert(exporter.FromX509(k.cert), at)
				}
				continue
			}
			cert(exporter.FromInfo(f.Cert), at)
		}
	}
	if s.secret != nil {
		exporter.CollectSecretCerts(ch, now, seen, s.secretNS, s.secretName, s.secret)
	}
	exporter.SendSourceUp(ch, exporter.KindFile, s.pkiDir, s.diskUp)
	exporter.SendSourceUp(ch, exporter.KindKubeconfig, s.pkiDir, s.diskUp)
	if s.secretName != "" {
		exporter.SendSourceUp(ch, exporter.KindKubeSecret, s.secretNS+"/"+s.secretName, s.secretUp)
	}
	send(descDrift, float64(s.drift), nil)
	send(descRepair, unix(s.lastRepair), nil)
	send(descRestart, unix(s.nextRestart), nil)
	send(descBlocked, b2f(s.restartBlocked), nil)
	send(descHeld, b2f(s.repairHeld), nil)
	exporter.SendBuildInfo(ch, m.Build)
	m.Errors.Collect(ch)
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
		add(exporter.EmbeddedCluster, c.Name, c.Cluster.CA)
	}
	for _, u := range doc.Users {
		add(exporter.EmbeddedUser, u.Name, u.User.Cert)
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
