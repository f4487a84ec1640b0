package fleet

import (
	"bufio"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/certguard/certguard/exporter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// The families /metrics serves besides the exporter's x509_* ones (package exporter, the one
// place for their names and help texts): TestMetricsMatchTheExporter renders the same Secrets
// through both and compares.
var (
	famCount  = exporter.Family{Name: "certguard_fleet_vclusters", Help: "vcluster certificate Secrets followed."}
	famCA     = exporter.Family{Name: "certguard_vcluster_ca_expiry_timestamp_seconds", Help: "When the vcluster's CA (ca.crt) expires."}
	famKC     = exporter.Family{Name: "certguard_vcluster_kubeconfig_expiry_timestamp_seconds", Help: "When the earliest client certificate of a kubeconfig Secret (vc-<release>, exportKubeConfig) expires, and with it every copy of that kubeconfig; vcluster is empty when no followed vcluster's CA issued it."}
	famRepair = exporter.Family{Name: "certguard_vcluster_last_repair_timestamp_seconds", Help: "When certguard last repaired the vcluster (certguard.dev/last-repair; 0: never)."}
	famLeaf   = exporter.Family{Name: "certguard_vcluster_leaf_expiry_timestamp_seconds", Help: "When the earliest k0s leaf certificate in the vcluster's Secret expires."}
	famStatus = exporter.Family{Name: "certguard_vcluster_status", Help: "1 for the vcluster's current status (as certguard fleet prints it), 0 for the others."}
)

// statuses are every value certguard_vcluster_status takes, all sent for each vcluster (a state
// set) so that a status change never leaves a stale series at 1.
var statuses = []Status{StatusExpired, StatusUnreadable, StatusDue, StatusOK, StatusNoK0s}

// textFormat is the Content-Type of the text exposition, as promhttp sends it.
var textFormat = string(expfmt.NewFormat(expfmt.TypeTextPlain))

// Metrics serves /metrics from the state: the x509_cert_* series of every certificate in every
// certificate Secret (x509-certificate-exporter's kube-secret labels, rendered once per change by
// Parse) and the per-vcluster gauges, judged at the scrape's time. It writes the text exposition
// itself, as a stream (gzip when the client accepts it): at 10,000 vclusters a scrape is 1.2
// million series, and building a prometheus.Metric for each at every scrape took seconds and
// hundreds of MiB.
type Metrics struct {
	State       *State
	Now         func() time.Time
	RenewBefore time.Duration
	// Extra (nil: none) is rendered after, through client_golang: the per-vcluster gauges of
	// StatefulSets and restarts (RestartCollector), a few series per vcluster.
	Extra prometheus.Gatherer
	// Workloads tells whether a deleted Secret's vcluster is still there (its StatefulSet): its
	// source is then down. nil: StatefulSets are not followed, and a deleted Secret's source
	// goes with it.
	Workloads *Workloads
	// Build labels x509_exporter_build_info.
	Build exporter.Build
	// Served (nil: --probe-served is off) adds the served leaves' series (served.go).
	Served *Served
}

// ServeHTTP writes every series.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", textFormat)
	var out io.Writer = w
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		w.Header().Set("Content-Encoding", "gzip")
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // the level is valid
		defer zw.Close()
		out = zw
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	m.Write(bw, m.Now())
	if m.Extra != nil {
		if mfs, err := m.Extra.Gather(); err == nil {
			enc := expfmt.NewEncoder(bw, expfmt.NewFormat(expfmt.TypeTextPlain))
			for _, mf := range mfs {
				_ = enc.Encode(mf)
			}
		}
	}
	_ = bw.Flush() // a client that went away: nothing to tell it
}

func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		enc, params, _ := strings.Cut(part, ";")
		if strings.TrimSpace(enc) != "gzip" {
			continue
		}
		q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		if v, err := strconv.ParseFloat(q, 64); ok && err == nil && v == 0 {
			return false // refused explicitly
		}
		return true
	}
	return false
}

// Write renders every series at now.
func (m *Metrics) Write(w *bufio.Writer, now time.Time) {
	secrets := m.State.snapshot()
	var certSecrets, kubeconfigs []*Secret
	for _, s := range secrets {
		if s.kubeconfig != nil {
			kubeconfigs = append(kubeconfigs, s)
		} else {
			certSecrets = append(certSecrets, s)
		}
	}
	rows := make([]Row, len(certSecrets))
	for i, s := range certSecrets {
		rows[i] = s.facts.Row(now, m.RenewBefore)
	}
	var buf []byte
	value := func(v float64) {
		buf = strconv.AppendFloat(buf[:0], v, 'g', -1, 64)
		w.Write(buf)
		w.WriteByte('\n')
	}
	seconds := func(v int64) {
		buf = appendSeconds(buf[:0], v)
		w.Write(buf)
		w.WriteByte('\n')
	}
	vcluster := func(name string, i int) {
		w.WriteString(name)
		w.WriteString(`{secret_namespace="`)
		w.WriteString(escapeLabel(rows[i].Namespace))
		w.WriteString(`",vcluster="`)
		w.WriteString(escapeLabel(rows[i].Release))
		w.WriteString(`"} `)
	}
	header(w, famCount)
	w.WriteString(famCount.Name + " ")
	value(float64(len(certSecrets)))
	m.writeBuildInfo(w)
	gone := m.downSources()
	if len(secrets) == 0 && len(gone) == 0 {
		return
	}
	kubeconfigRows := func() {
		if len(kubeconfigs) == 0 {
			return
		}
		own := indexOwners(certSecrets)
		header(w, famKC)
		for _, s := range kubeconfigs {
			w.WriteString(famKC.Name + `{secret_name="`)
			w.WriteString(escapeLabel(s.name))
			w.WriteString(`",secret_namespace="`)
			w.WriteString(escapeLabel(s.namespace))
			w.WriteString(`",vcluster="`)
			w.WriteString(escapeLabel(own.vcluster(s)))
			w.WriteString(`"} `)
			value(float64(s.kubeconfig.expiry.Unix()))
		}
	}
	for _, f := range []exporter.Family{famCA, famKC, famRepair, famLeaf} {
		if f == famKC {
			kubeconfigRows()
			continue
		}
		first := true
		for i := range rows {
			var t time.Time
			switch f {
			case famCA:
				t = rows[i].CAExpiry
			case famLeaf:
				t = rows[i].LeafExpiry
			}
			if f != famRepair && t.IsZero() {
				continue
			}
			if first {
				header(w, f)
				first = false
			}
			vcluster(f.Name, i)
			if f == famRepair {
				value(unix(rows[i].LastRepair.At))
				continue
			}
			value(float64(t.Unix()))
		}
	}
	if len(rows) > 0 {
		header(w, famStatus)
	}
	// A concatenation of non-constant strings allocates: these lines are written in pieces.
	for i := range rows {
		ns, release := escapeLabel(rows[i].Namespace), escapeLabel(rows[i].Release)
		for _, st := range statuses {
			w.WriteString(famStatus.Name)
			w.WriteString(`{secret_namespace="`)
			w.WriteString(ns)
			w.WriteString(`",status="`)
			w.WriteString(string(st))
			w.WriteString(`",vcluster="`)
			w.WriteString(release)
			if st == rows[i].Status {
				w.WriteString("\"} 1\n")
			} else {
				w.WriteString("\"} 0\n")
			}
		}
	}
	for _, f := range []exporter.Family{exporter.CertExpired, exporter.CertExpiresIn, exporter.CertNotAfter, exporter.CertNotBefore} {
		first := true
		for _, s := range secrets {
			for i := range s.certs {
				c := &s.certs[i]
				if first {
					header(w, f)
					first = false
				}
				w.WriteString(f.Name)
				w.WriteByte('{')
				lp := c.labels.Value()
				w.WriteString(lp.pre)
				w.WriteString(lp.key)
				w.WriteString(s.secretLabels)
				w.WriteString(`serial_number="`)
				w.WriteString(s.serial(c))
				w.WriteString(`",`)
				w.WriteString(lp.post)
				w.WriteString("} ")
				switch f {
				case exporter.CertExpired:
					if now.After(time.Unix(c.notAfter, 0)) {
						w.WriteString("1\n")
					} else {
						w.WriteString("0\n")
					}
				case exporter.CertExpiresIn:
					value(time.Unix(c.notAfter, 0).Sub(now).Seconds())
				case exporter.CertNotAfter:
					seconds(c.notAfter)
				case exporter.CertNotBefore:
					seconds(c.notBefore)
				}
			}
		}
		m.Served.writeServed(w, f, &first, now)
	}
	header(w, exporter.SourceUp)
	// Each line is written in constant pieces: a concatenation here would allocate once per
	// Secret and scrape.
	upPrefix := exporter.SourceUp.Name + `{source_kind="` + string(exporter.KindKubeSecret) + `",source_name="`
	up := func(key, line string) {
		w.WriteString(upPrefix)
		w.WriteString(escapeLabel(exporter.LabelValue(key)))
		w.WriteString(line)
	}
	for _, s := range secrets {
		up(s.key, "\"} 1\n")
	}
	for _, g := range gone {
		up(g.key, "\"} 0\n")
	}
	m.Served.writeServed(w, exporter.SourceUp, nil, now)
	m.Served.writeServedGauges(w)
}

// downSources are the deleted certificate Secrets whose vcluster is still there: each is a
// source that cannot be read (x509_source_up 0), as the exporter shows a source it lost, so that
// its SourceDown alert sees a vcluster whose certificates nobody watches any more. The others
// are forgotten: their vcluster was removed.
func (m *Metrics) downSources() []goneSecret {
	var out []goneSecret
	for _, g := range m.State.deleted() {
		if m.Workloads.Get(g.namespace, g.release) == nil {
			m.State.forget(g.key)
			continue
		}
		out = append(out, g)
	}
	return out
}

// writeBuildInfo writes x509_exporter_build_info.
func (m *Metrics) writeBuildInfo(w *bufio.Writer) {
	header(w, exporter.BuildInfo)
	names, values := m.Build.Labels()
	w.WriteString(exporter.BuildInfo.Name + "{")
	for i := range names {
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteString(names[i] + `="` + escapeLabel(values[i]) + `"`)
	}
	w.WriteString("} 1\n")
}

func header(w *bufio.Writer, f exporter.Family) {
	w.WriteString("# HELP " + f.Name + " " + f.Help + "\n# TYPE " + f.Name + " gauge\n")
}

// appendSeconds appends float64(v) as strconv.AppendFloat(dst, float64(v), 'g', -1, 64) does,
// four times faster for the whole seconds of a certificate's dates (two of every four x509_cert_*
// lines): the shortest digits of an integer below 2^53 are its own without trailing zeros, in
// %e form from 7 digits on.
func appendSeconds(dst []byte, v int64) []byte {
	if v <= -1<<53 || v >= 1<<53 {
		return strconv.AppendFloat(dst, float64(v), 'g', -1, 64)
	}
	if v < 0 {
		dst, v = append(dst, '-'), -v
	}
	var d [16]byte
	digits := strconv.AppendInt(d[:0], v, 10)
	exp := len(digits) - 1
	if exp < 6 {
		return append(dst, digits...)
	}
	for len(digits) > 1 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
	}
	dst = append(dst, digits[0])
	if len(digits) > 1 {
		dst = append(append(dst, '.'), digits[1:]...)
	}
	dst = append(dst, 'e', '+')
	if exp < 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, int64(exp), 10)
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.Unix())
}
