package exporter

import (
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/prometheus/client_golang/prometheus"
)

// The served-certificate families (docs/served.md): what a TLS handshake with a vcluster's
// endpoint reads, beside the x509_* series of the same leaf.
var (
	ServedExpiry   = Family{"certguard_vcluster_served_expiry_timestamp_seconds", "When the leaf certificate the vcluster's endpoint serves expires, read by a TLS handshake."}
	ServedMismatch = Family{"certguard_vcluster_served_mismatch", "1 when the leaf the endpoint serves is not the stored one (apiserver: other bytes than server.crt; syncer: not signed by the stored ca.crt), 0 when it is."}
)

// ServedLabels are the label names of the certguard_vcluster_served_* series.
var ServedLabels = []string{"secret_namespace", "vcluster", "endpoint"}

var (
	descServedExpiry   = prometheus.NewDesc(ServedExpiry.Name, ServedExpiry.Help, ServedLabels, nil)
	descServedMismatch = prometheus.NewDesc(ServedMismatch.Name, ServedMismatch.Help, ServedLabels, nil)
)

// Served is one probed endpoint as its series show it.
type Served struct {
	Namespace, Vcluster string // the vcluster (its certificate Secret's namespace, its release)
	Endpoint            string // "apiserver" or "syncer"
	Addr                string // host:port probed
	Up                  bool   // the last handshake served a certificate
	Cert                Cert   // the served leaf, when Up
	// Mismatch holds when MismatchKnown: something stored to hold the leaf against.
	Mismatch, MismatchKnown bool
}

// ServedSourceKind is the source_kind of a served leaf's series: the exporter's contract has no
// kind for a network endpoint, and a new value would fall outside its dashboards' and alerts'
// selectors. A served leaf is one PEM leaf at one location, neither a Secret nor an embedded
// kubeconfig entry: the nearest kind is file (docs/served.md).
const ServedSourceKind = KindFile

// SourceName is the served leaf's source_name and filepath: tls://host:port.
func (s Served) SourceName() string { return ServedSourceName(s.Addr) }

// ServedSourceName is the source_name of the endpoint at addr (host:port): tls://host:port.
func ServedSourceName(addr string) string { return "tls://" + addr }

// ServedReasons are the x509_source_errors_total reasons a probe can give, each served source's
// series at 0 from the start (Errors.AddSource): no_certificate for a handshake that completed
// without one, unreadable for every other failure (refused, timed out, not TLS), as the exporter
// counts a file it cannot read as read_failed whatever the cause.
var ServedReasons = []Reason{Reason(pki.ReasonUnreadable), Reason(pki.ReasonNoCertificate)}

// ServedReason is the reason of a failed probe: noCertificate when the handshake completed
// without a certificate.
func ServedReason(noCertificate bool) Reason {
	if noCertificate {
		return Reason(pki.ReasonNoCertificate)
	}
	return Reason(pki.ReasonUnreadable)
}

// CertLabels are the values of CertLabels for the served leaf: filename the address, filepath
// tls://address, discriminator served:<endpoint>, so its series never collide with the stored
// server.crt's.
func (s Served) CertLabels() []string {
	l := Labels(s.Cert, Location{Filename: s.Addr, Path: s.SourceName()})
	l[len(l)-1] = "served:" + s.Endpoint
	return l
}

// SendServed sends a probed endpoint's series: its source's x509_source_up, and while it serves a
// certificate the four x509_cert_* series, the expiry and, when known, the mismatch. seen is
// shared by every call of one scrape (SendCert).
func SendServed(ch chan<- prometheus.Metric, now time.Time, seen map[string]bool, s Served) {
	SendSourceUp(ch, ServedSourceKind, s.SourceName(), s.Up)
	if !s.Up {
		return
	}
	SendCert(ch, now, seen, s.Cert, s.CertLabels())
	l := []string{LabelValue(s.Namespace), LabelValue(s.Vcluster), s.Endpoint}
	SendGauge(ch, descServedExpiry, float64(s.Cert.NotAfter.Unix()), l)
	if s.MismatchKnown {
		v := 0.0
		if s.Mismatch {
			v = 1
		}
		SendGauge(ch, descServedMismatch, v, l)
	}
}
