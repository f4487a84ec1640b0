package fleet

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certguard/certguard/exporter"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/probe"
)

// vclusterServiceSelector selects vcluster's Services, and with them their EndpointSlices (the
// EndpointSlice controller copies a Service's labels): app=vcluster in every chart v0.19–v0.25.
const vclusterServiceSelector = "app=vcluster"

// vclusterServicePort is the port name of the vcluster Service's 443 (targetPort 8443: the syncer).
const vclusterServicePort = "https"

// Served probes the syncer of each followed vcluster through its Service's endpoints (the
// vcluster Service <release> in the Secret's namespace, port https): what a kubeconfig meets. It
// lists the EndpointSlices once per Interval and hands one ready address per vcluster to a
// bounded prober (package probe). docs/served.md.
type Served struct {
	Client    *kube.Client
	Namespace string // "" = all
	State     *State
	// Interval, Timeout and Workers bound the prober (zero: probe's defaults).
	Interval, Timeout time.Duration
	Workers           int
	Log               *slog.Logger
	// endpoints lists the Service endpoints (nil: kube.ServiceEndpoints).
	endpoints func(ctx context.Context) ([]kube.ServiceEndpoint, error)

	prober  probe.Prober
	mu      sync.Mutex
	targets []servedTarget // sorted by key
	// errs counts the failed probes of each target (by key) at its current address: a new
	// address is a new source, whose count starts at 0.
	errs map[string]*servedErrors
}

// servedErrors are one served source's x509_source_errors_total, by reason (exporter.ServedReasons).
type servedErrors struct {
	addr  string
	count [2]uint64 // by index in exporter.ServedReasons
}

type servedTarget struct {
	ns, release string
	target      probe.Target
}

// Run probes until ctx ends.
func (v *Served) Run(ctx context.Context) {
	v.prober.Workers, v.prober.Timeout, v.prober.Interval, v.prober.Jitter = v.Workers, v.Timeout, v.Interval, probe.DefaultJitter
	v.prober.OnResult = v.count
	interval := v.Interval
	if interval <= 0 {
		interval = probe.DefaultInterval
	}
	var wg sync.WaitGroup
	wg.Go(func() { v.prober.Run(ctx) })
	defer wg.Wait()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		v.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh lists the endpoints and makes each followed vcluster's first ready one (by address)
// its target, else its first not ready one: a syncer that stops answering fails its readiness
// probe, and probing its address still is what keeps it x509_source_up 0 rather than a series
// gone. A vcluster without any endpoint is not probed (no series): a Service without endpoints
// (a vcluster scaled down) has nothing to serve.
func (v *Served) refresh(ctx context.Context) {
	list := v.endpoints
	if list == nil {
		list = func(ctx context.Context) ([]kube.ServiceEndpoint, error) {
			return kube.ServiceEndpoints(ctx, v.Client, v.Namespace, vclusterServiceSelector, vclusterServicePort)
		}
	}
	eps, err := list(ctx)
	if err != nil {
		if ctx.Err() == nil {
			v.Log.Warn("listing the vcluster Services' endpoints failed; keeping the last ones", "err", err)
		}
		return
	}
	slices.SortFunc(eps, func(a, b kube.ServiceEndpoint) int {
		if c := strings.Compare(a.Namespace+"/"+a.Service, b.Namespace+"/"+b.Service); c != 0 {
			return c
		}
		if a.Ready != b.Ready {
			return b2i(b.Ready) - b2i(a.Ready) // ready first
		}
		return strings.Compare(a.Addr, b.Addr)
	})
	var ts []servedTarget
	var probes []probe.Target
	for i, e := range eps {
		key := e.Namespace + "/" + e.Service
		if i > 0 && eps[i-1].Namespace+"/"+eps[i-1].Service == key {
			continue // one address per vcluster: its series carry no address label of their own
		}
		if sec := v.State.get(key + "-certs"); sec == nil || sec.kubeconfig != nil {
			continue // not a vcluster the service follows (its headless Service, another app)
		}
		t := probe.Target{Key: key, Addr: e.Addr}
		ts, probes = append(ts, servedTarget{ns: e.Namespace, release: e.Service, target: t}), append(probes, t)
	}
	v.mu.Lock()
	v.targets = ts
	errs := make(map[string]*servedErrors, len(ts))
	for _, t := range ts {
		if e := v.errs[t.target.Key]; e != nil && e.addr == t.target.Addr {
			errs[t.target.Key] = e
		} else {
			errs[t.target.Key] = &servedErrors{addr: t.target.Addr}
		}
	}
	v.errs = errs
	v.mu.Unlock()
	v.prober.Set(probes)
}

// count counts a failed probe of a target still followed at that address.
func (v *Served) count(r probe.Result) {
	if r.Up() {
		return
	}
	i := slices.Index(exporter.ServedReasons, exporter.ServedReason(errors.Is(r.Err, probe.ErrNoCertificate)))
	v.mu.Lock()
	if e := v.errs[r.Target.Key]; e != nil && e.addr == r.Target.Addr {
		e.count[i]++
	}
	v.mu.Unlock()
}

// current is every target probed at least once, judged against its Secret's ca.crt.
func (v *Served) current() []exporter.Served {
	if v == nil {
		return nil
	}
	v.mu.Lock()
	ts := v.targets
	v.mu.Unlock()
	results := v.prober.Results()
	out := make([]exporter.Served, 0, len(ts))
	for _, t := range ts {
		r, ok := results[t.target.Key]
		if !ok {
			continue
		}
		l := r.Leaf
		s := exporter.Served{Namespace: t.ns, Vcluster: t.release, Endpoint: string(probe.EndpointSyncer), Addr: t.target.Addr, Up: r.Up(),
			Cert: exporter.Cert{Serial: l.Serial, Subject: l.Subject, Issuer: l.Issuer, NotBefore: l.NotBefore, NotAfter: l.NotAfter}}
		if sec := v.State.get(t.target.Key + "-certs"); sec != nil {
			id, _ := hex.DecodeString(sec.caKeyID)
			s.Mismatch, s.MismatchKnown = probe.IssuedBy(r.Leaf, id)
		}
		out = append(out, s)
	}
	return out
}

// get is one entry of the state (nil: none).
func (s *State) get(key string) *Secret {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.entries[key]
}

// writeServed writes the served leaves' lines of family f (an x509_cert_* family or
// x509_source_up) into the family Metrics.Write is writing, its header first when first says
// none was written yet (first nil: written).
func (v *Served) writeServed(w *bufio.Writer, f exporter.Family, first *bool, now time.Time) {
	for _, s := range v.current() {
		if f == exporter.SourceUp {
			w.WriteString(f.Name + `{source_kind="` + string(exporter.ServedSourceKind) + `",source_name="` + escapeLabel(exporter.LabelValue(s.SourceName())) + `"} `)
			w.WriteString(strconv.Itoa(b2i(s.Up)) + "\n")
			continue
		}
		if !s.Up {
			continue
		}
		if first != nil && *first {
			header(w, f)
			*first = false
		}
		w.WriteString(f.Name + "{")
		for i, l := range s.CertLabels() {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(exporter.CertLabels[i] + `="` + escapeLabel(exporter.LabelValue(l)) + `"`)
		}
		w.WriteString("} ")
		na := s.Cert.NotAfter
		var val float64
		switch f {
		case exporter.CertExpired:
			val = float64(b2i(now.After(na)))
		case exporter.CertExpiresIn:
			val = na.Sub(now).Seconds()
		case exporter.CertNotAfter:
			val = float64(na.Unix())
		case exporter.CertNotBefore:
			val = float64(s.Cert.NotBefore.Unix())
		}
		w.WriteString(strconv.FormatFloat(val, 'g', -1, 64) + "\n")
	}
}

// writeServedGauges writes certguard_vcluster_served_expiry_timestamp_seconds,
// certguard_vcluster_served_mismatch, and x509_source_errors_total of the served sources (the
// fleet counts no other source's errors, so the family is whole here).
func (v *Served) writeServedGauges(w *bufio.Writer) {
	list := v.current()
	for _, f := range []exporter.Family{exporter.ServedExpiry, exporter.ServedMismatch} {
		first := true
		for _, s := range list {
			if !s.Up || (f == exporter.ServedMismatch && !s.MismatchKnown) {
				continue
			}
			if first {
				header(w, f)
				first = false
			}
			w.WriteString(f.Name + `{endpoint="` + s.Endpoint + `",secret_namespace="` + escapeLabel(exporter.LabelValue(s.Namespace)) + `",vcluster="` + escapeLabel(exporter.LabelValue(s.Vcluster)) + `"} `)
			if f == exporter.ServedExpiry {
				w.WriteString(strconv.FormatInt(s.Cert.NotAfter.Unix(), 10) + "\n")
			} else {
				w.WriteString(strconv.Itoa(b2i(s.Mismatch)) + "\n")
			}
		}
	}
	v.writeServedErrors(w)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// writeServedErrors writes x509_source_errors_total: every followed target's two reasons, from
// the moment it is followed, as the exporter pre-sets a source's (so that increase() sees the
// first error).
func (v *Served) writeServedErrors(w *bufio.Writer) {
	if v == nil {
		return
	}
	// Copied under the lock, written without it: a slow reader of /metrics must not hold up the
	// probes' counting.
	v.mu.Lock()
	rows := make([]servedErrors, 0, len(v.targets))
	for _, t := range v.targets {
		rows = append(rows, *v.errs[t.target.Key])
	}
	v.mu.Unlock()
	if len(rows) == 0 {
		return
	}
	f := exporter.SourceErrors
	w.WriteString("# HELP " + f.Name + " " + f.Help + "\n# TYPE " + f.Name + " counter\n")
	for _, e := range rows {
		for i, r := range exporter.ServedReasons {
			w.WriteString(f.Name + `{source_kind="` + string(exporter.ServedSourceKind) + `",source_name="` + escapeLabel(exporter.LabelValue(exporter.ServedSourceName(e.addr))) + `",reason="` + string(r) + `"} `)
			w.WriteString(strconv.FormatUint(e.count[i], 10) + "\n")
		}
	}
}
