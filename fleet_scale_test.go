package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// BenchmarkFleetScale is issue 12's scale check, not a timed test: it creates N vcluster
// certificate Secrets (one RSA-2048 vcluster v0.25 + k0s PKI, its bytes reused under N names) and
// N unrelated Opaque Secrets of CERTGUARD_SCALE_OTHER_BYTES each on the real test apiserver,
// starts the real `certguard fleet serve` on them and prints what an operator would ask:
// time to /readyz 200, RSS after sync and after scrapes, a /metrics scrape's time and size
// (plain and gzip), and how long a Secret change takes to show. Run it with bench/fleet-scale.sh.
//
// CERTGUARD_SCALE_N (default 10000) is the number of vclusters; CERTGUARD_SCALE_SERVE_ENV, space
// separated NAME=VALUE, is added to fleet serve's environment only (GOMEMLIMIT=120MiB).
func BenchmarkFleetScale(b *testing.B) {
	n := envInt(b, "CERTGUARD_SCALE_N", 10000)
	otherBytes := envInt(b, "CERTGUARD_SCALE_OTHER_BYTES", 4096)
	ctx := context.Background()
	ns, err := kenv.Namespace(ctx, "scale")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	gen := func(leavesExpire time.Time) map[string][]byte {
		p, err := pkigen.Generate(pkigen.Options{Now: now, Key: pkigentest.RSA, K0sIssued: leavesExpire.Add(-pkigen.Year + pkigen.Backdate), K0sLifetime: pkigen.Year})
		if err != nil {
			b.Fatal(err)
		}
		return p.SecretData()
	}
	data := gen(now.Add(200 * day).Truncate(time.Second))
	size := 0
	for _, v := range data {
		size += len(v)
	}
	other := map[string][]byte{"blob": make([]byte, otherBytes)}
	report := func(format string, args ...any) { fmt.Printf("fleet-scale: "+format+"\n", args...) }
	if e := os.Getenv("CERTGUARD_SCALE_SERVE_ENV"); e != "" {
		report("fleet serve's environment adds %s", e)
	}
	report("N=%d vcluster Secrets (%d keys, %d bytes of data each) + %d unrelated Opaque Secrets of %d bytes", n, len(data), size, n, otherBytes)

	t0 := time.Now()
	create := func(name string, labels map[string]string, d map[string][]byte) error {
		_, err := kenv.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Data: d}, metav1.CreateOptions{})
		return err
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 16 { // parallel requests: creating 2N Secrets one by one takes minutes
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var labels map[string]string
				if i%2 == 0 { // half v0.24+ (labelled), half v0.19-v0.23 (no labels)
					labels = map[string]string{"app": "vcluster"}
				}
				if err := create(fmt.Sprintf("vc%05d-certs", i), labels, data); err != nil {
					failed.Store(err)
				}
				if err := create(fmt.Sprintf("other%05d", i), nil, other); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	report("created %d Secrets in %.1f s", 2*n, time.Since(t0).Seconds())
	_, kc := fleetUserWith(b, "list", "watch")
	// The floor, by a minimal client in this process, in the media type fleet serve asks for and
	// in JSON; again after fleet serve has run, since the machine's load moves in between.
	floor := func(when string) (json, pb floorRun) {
		json, pb = listFloor(b, ns, mediaJSON, 100), listFloor(b, ns, mediaProtobuf, 100)
		report("floor %s: a bare paginated LIST (100 a page) in JSON %v, in protobuf %v", when, json, pb)
		return json, pb
	}
	jsonBefore, pbBefore := floor("before")
	if os.Getenv("CERTGUARD_SCALE_LEVERS") != "" {
		levers(b, ns, report)
	}
	if other := os.Getenv("CERTGUARD_SCALE_COMPARE"); other != "" {
		compareReady(b, kc, ns, other, report)
	}

	b.ResetTimer()
	var r scaleRow
	for range b.N {
		start, cpu0 := time.Now(), serverCPU(b)
		s := startServeEnv(b, strings.Fields(os.Getenv("CERTGUARD_SCALE_SERVE_ENV")), "--kubeconfig", kc, "-n", ns)
		pid := s.cmd.Process.Pid
		for {
			if code, _ := s.get("/readyz"); code == http.StatusOK {
				break
			}
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("not ready after 5 min:\n%s", s.log())
			}
			time.Sleep(20 * time.Millisecond) // poll interval, not synchronization
		}
		r.ready = time.Since(start)
		r.readyCPU, r.readyServer = processCPU(b, pid), serverCPU(b)-cpu0
		report("ready (/readyz 200) %.2f s after start, having used %.2f s of CPU (the apiserver and etcd meanwhile: %.2f s)", r.ready.Seconds(), r.readyCPU.Seconds(), r.readyServer.Seconds())
		r.atReady = rssOf(b, pid)
		report("RSS at ready: %v", r.atReady)
		time.Sleep(10 * time.Second) // idle: what the process holds between scrapes
		r.steady = rssOf(b, pid)
		report("RSS 10 s after ready (steady): %v", r.steady)

		want := fmt.Sprintf("certguard_fleet_vclusters %d", n)
		for i := range 5 {
			gz := i >= 3 // 3 plain, then 2 gzip: Prometheus asks for gzip
			d, wire, size, ok := scrape(b, s.addr, gz, want)
			if !ok {
				b.Fatalf("scrape %d lacks %q", i+1, want)
			}
			r.scrapes[btoi(gz)] = append(r.scrapes[btoi(gz)], d)
			r.text, r.wire = size, wire
			report("scrape %d (gzip %v): %.2f s, %.1f MiB on the wire, %.1f MiB of text", i+1, gz, d.Seconds(), float64(wire)/(1<<20), float64(size)/(1<<20))
		}
		r.afterScrapes = rssOf(b, pid)
		report("RSS after 5 scrapes: %v", r.afterScrapes)

		// A change: vc00000's leaves replaced by ones expiring at a known second; first seen on
		// /plan (a few MiB: polled every 10 ms), then a second change seen on /metrics, scraped
		// back to back (the bound is then the scrape's own duration).
		for i, via := range []string{"/plan", "/metrics"} {
			at := now.Add(100 * day).Truncate(time.Second)
			if via == "/metrics" {
				at = now.Add(150 * day).Truncate(time.Second)
			}
			fresh := gen(at)
			sec, err := kenv.Client.CoreV1().Secrets(ns).Get(ctx, "vc00000-certs", metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			sec.Data = fresh
			// The floor of a change: when a bare WATCH of the Secret, opened before the update
			// by this process, hears of it (the apiserver's own delay, on this loaded machine).
			wt, err := kenv.Client.CoreV1().Secrets(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=vc00000-certs", ResourceVersion: sec.ResourceVersion})
			if err != nil {
				b.Fatal(err)
			}
			heard := make(chan time.Time, 1)
			go func() {
				for ev := range wt.ResultChan() {
					if ev.Type == watch.Modified {
						heard <- time.Now()
						return
					}
				}
			}()
			t1 := time.Now()
			if _, err := kenv.Client.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
			var seen time.Duration
			for seen == 0 {
				if time.Since(t1) > time.Minute {
					b.Fatalf("change not seen on %s within a minute", via)
				}
				if via == "/plan" {
					if planLeafExpiry(b, s, "vc00000").Equal(at) {
						seen = time.Since(t1)
					}
					time.Sleep(10 * time.Millisecond) // poll interval
					continue
				}
				line := `certguard_vcluster_leaf_expiry_timestamp_seconds{secret_namespace="` + ns + `",vcluster="vc00000"} ` + strconv.FormatFloat(float64(at.Unix()), 'g', -1, 64)
				if _, _, _, ok := scrape(b, s.addr, false, line); ok {
					seen = time.Since(t1)
				}
			}
			select {
			case at := <-heard:
				r.watch[i] = at.Sub(t1)
			case <-time.After(time.Minute):
				b.Fatal("a bare WATCH did not hear of the change within a minute")
			}
			wt.Stop()
			r.change[i] = seen
			report("change seen on %s %.3f s after the update returned (a bare WATCH heard of it after %.3f s)", via, seen.Seconds(), r.watch[i].Seconds())
		}
		report("RSS at the end: %v", rssOf(b, pid))
		if err := s.stop(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.ready.Seconds(), "s-to-ready")
	}
	b.StopTimer()
	jsonAfter, pbAfter := floor("after")
	r.n, r.env = n, os.Getenv("CERTGUARD_SCALE_SERVE_ENV")
	r.floorJSON = [2]floorRun{jsonBefore, jsonAfter}
	r.floorPB = [2]floorRun{pbBefore, pbAfter}
	r.print(report)
}

// scaleRow is one run's figures, printed as the row of the table docs/performance.md quotes.
type scaleRow struct {
	n                             int
	env                           string
	floorJSON, floorPB            [2]floorRun // before and after fleet serve ran
	ready, readyCPU, readyServer  time.Duration
	atReady, steady, afterScrapes memory
	scrapes                       [2][]time.Duration // plain, gzip
	text, wire                    int64              // of the last (gzip) scrape
	change                        [2]time.Duration   // on /plan, on /metrics
	watch                         [2]time.Duration   // when a bare WATCH heard of each change
}

func (r scaleRow) print(report func(string, ...any)) {
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	span := func(ds []time.Duration) string {
		return fmt.Sprintf("%.2f–%.2f s", slices.Min(ds).Seconds(), slices.Max(ds).Seconds())
	}
	floor := func(f [2]floorRun) string {
		return fmt.Sprintf("%.2f, %.2f s (%.1f, %.1f)", f[0].d.Seconds(), f[1].d.Seconds(), f[0].server.Seconds(), f[1].server.Seconds())
	}
	// The ratio is taken against the larger floor of the two runs around it (before, after), and
	// against the smaller in brackets: the floor's spread is the machine's other load.
	ratio := func(f [2]floorRun) string {
		return fmt.Sprintf("%.2f× (%.2f×)", r.ready.Seconds()/max(f[0].d, f[1].d).Seconds(), r.ready.Seconds()/min(f[0].d, f[1].d).Seconds())
	}
	env := "–"
	if r.env != "" {
		env = "`" + r.env + "`"
	}
	report("table: | N | env | floor JSON: wall, before and after (apiserver CPU) | floor protobuf: the same | ready | ready ÷ floor JSON | ready ÷ floor protobuf | CPU to ready: certguard, apiserver | RSS at ready (peak) | steady RSS | RSS after scrapes | scrape plain | scrape gzip (wire) | change on /plan (a bare WATCH) | on /metrics (a bare WATCH) |")
	report("table: |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	report("table: | %d | %s | %s | %s | %s | %s | %s | %.1f, %.1f s | %.0f MiB (%.0f) | %.0f MiB | %.0f MiB | %s, %.0f MiB | %s (%.1f MiB) | %s (%.2f) | %s (%.2f) |",
		r.n, env, floor(r.floorJSON), floor(r.floorPB), sec(r.ready), ratio(r.floorJSON), ratio(r.floorPB), r.readyCPU.Seconds(), r.readyServer.Seconds(),
		r.atReady.rss, r.atReady.peak, r.steady.rss, r.afterScrapes.rss, span(r.scrapes[0]), float64(r.text)/(1<<20),
		span(r.scrapes[1]), float64(r.wire)/(1<<20), sec(r.change[0]), r.watch[0].Seconds(), sec(r.change[1]), r.watch[1].Seconds())
}

// levers times the LIST alternatives fleet serve could make (issue 20: protobuf, a
// metadata-only first pass, the page size), each by the same minimal client.
func levers(b *testing.B, ns string, report func(string, ...any)) {
	for _, m := range []struct{ name, media string }{{"JSON", mediaJSON}, {"protobuf", mediaProtobuf},
		{"metadata only, JSON", mediaMetaJSON}, {"metadata only, protobuf", mediaMetaProtobuf}} {
		for _, limit := range []int{50, 100, 250, 500} {
			report("lever: LIST %s, %d a page: %v", m.name, limit, listFloor(b, ns, m.media, limit))
		}
	}
}

// compareReady starts this tree's certguard and another build of it (a path) in turn on the same
// Secrets, three times each, and prints each one's time to ready and CPU: a lever measured side by
// side, under the same load, rather than across two runs.
func compareReady(b *testing.B, kc, ns, other string, report func(string, ...any)) {
	this := bin
	defer func() { bin = this }()
	for i := range 6 {
		bin = []string{this, other}[i%2]
		start := time.Now()
		s := startServeEnv(b, strings.Fields(os.Getenv("CERTGUARD_SCALE_SERVE_ENV")), "--kubeconfig", kc, "-n", ns)
		for code, _ := s.get("/readyz"); code != http.StatusOK; code, _ = s.get("/readyz") {
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("not ready after 5 min:\n%s", s.log())
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
		ready, cpu, mem := time.Since(start), processCPU(b, s.cmd.Process.Pid), rssOf(b, s.cmd.Process.Pid)
		time.Sleep(3 * time.Second) // what it holds once the LIST is behind it
		later := rssOf(b, s.cmd.Process.Pid)
		if err := s.stop(); err != nil {
			b.Fatal(err)
		}
		report("compare: %s ready in %.2f s, %.2f s CPU; at ready %v; 3 s later %v", []string{"this tree", other}[i%2], ready.Seconds(), cpu.Seconds(), mem, later)
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s: want a positive number (got %q)", name, v)
	}
	return n
}

var rssLine = regexp.MustCompile(`(VmRSS|VmHWM):\s+(\d+) kB`)

// memory is a process's resident set (VmRSS) and its peak so far (VmHWM), in MiB.
type memory struct{ rss, peak float64 }

func (m memory) String() string { return fmt.Sprintf("VmRSS %.0f MiB, VmHWM %.0f MiB", m.rss, m.peak) }

func rssOf(b *testing.B, pid int) memory {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	var m memory
	for _, f := range rssLine.FindAllSubmatch(st, -1) {
		kib, _ := strconv.ParseFloat(string(f[2]), 64)
		if string(f[1]) == "VmRSS" {
			m.rss = kib / 1024
		} else {
			m.peak = kib / 1024
		}
	}
	return m
}

// scrape GETs /metrics, asking for gzip or not, and reads it as a scraper would, a line at a
// time without keeping it. It returns the time to the last byte, the bytes that crossed the
// connection and the bytes of text, and whether each wanted line was in it.
func scrape(b *testing.B, addr string, gz bool, want ...string) (time.Duration, int64, int64, bool) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	} else {
		req.Header.Set("Accept-Encoding", "identity")
	}
	t0 := time.Now()
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("/metrics: %d", resp.StatusCode)
	}
	if gz != (resp.Header.Get("Content-Encoding") == "gzip") {
		b.Fatalf("asked gzip=%v, got Content-Encoding %q", gz, resp.Header.Get("Content-Encoding"))
	}
	wire := &countingReader{r: resp.Body}
	var body io.Reader = wire
	if gz {
		zr, err := gzip.NewReader(wire)
		if err != nil {
			b.Fatal(err)
		}
		body = zr
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var text int64
	found := 0
	for sc.Scan() {
		text += int64(len(sc.Bytes())) + 1
		for _, w := range want {
			if string(sc.Bytes()) == w {
				found++
			}
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0), wire.n, text, found == len(want)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// planLeafExpiry is a vcluster's earliest k0s leaf expiry as /plan says.
func planLeafExpiry(b *testing.B, s *served, release string) time.Time {
	code, body := s.get("/plan")
	if code != http.StatusOK {
		b.Fatalf("/plan: %d", code)
	}
	var p struct {
		Vclusters []struct {
			Release    string
			LeafExpiry time.Time `json:"earliestLeafExpiry"`
		}
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		b.Fatal(err)
	}
	for _, r := range p.Vclusters {
		if r.Release == release {
			return r.LeafExpiry
		}
	}
	return time.Time{}
}

// floorRun is one paginated LIST of the namespace's Opaque Secrets by a minimal client.
type floorRun struct {
	d, server    time.Duration // wall time; the apiserver's and etcd's CPU time meanwhile
	pages, bytes int
}

func (f floorRun) String() string {
	return fmt.Sprintf("%.2f s (%d pages, %.0f MiB; apiserver+etcd CPU %.2f s)", f.d.Seconds(), f.pages, float64(f.bytes)/(1<<20), f.server.Seconds())
}

// Media types of a LIST: what fleet serve asks for, and the levers measured beside it.
const (
	mediaJSON     = "application/json"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
	// Only each Secret's metadata (PartialObjectMetadataList): what a first pass that picks the
	// vcluster Secrets by name or label before reading any data would cost.
	mediaMetaJSON     = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
	mediaMetaProtobuf = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
)

// listFloor is the floor under fleet serve's time to ready: the apiserver's paginated LIST of the
// namespace's Opaque Secrets (limit a page, no compression, in the media type accept), each page
// read whole and only its continue token looked at, in this process.
func listFloor(b *testing.B, ns, accept string, limit int) floorRun {
	cfg := rest.CopyConfig(kenv.Config)
	cfg.DisableCompression = true
	cfg.QPS, cfg.Burst = -1, 0
	cfg.GroupVersion, cfg.APIPath = nil, ""
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.UnversionedRESTClientFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	t0, cpu0 := time.Now(), serverCPU(b)
	var f floorRun
	cont := ""
	for {
		req := rc.Get().AbsPath("/api/v1/namespaces", ns, "secrets").Param("fieldSelector", "type=Opaque").
			Param("limit", strconv.Itoa(limit)).SetHeader("Accept", accept)
		if cont != "" {
			req = req.Param("continue", cont)
		}
		raw, err := req.Do(context.Background()).Raw()
		if err != nil {
			b.Fatal(err)
		}
		f.bytes += len(raw)
		f.pages++
		if cont = continueOf(b, raw); cont == "" {
			break
		}
	}
	f.d, f.server = time.Since(t0), serverCPU(b)-cpu0
	return f
}

// serverCPU is the CPU time (user + system) used so far by the apiserver and etcd this test
// process started: what a LIST costs the server, which the machine's other load moves less than
// wall time.
func serverCPU(b *testing.B) time.Duration {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	var sum time.Duration
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		comm, rest, ok := strings.Cut(string(st[bytes.IndexByte(st, '(')+1:]), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 13 || (comm != "kube-apiserver" && comm != "etcd") || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		sum += cpuTime(f)
	}
	return sum
}

// cpuTime is utime + stime from the fields of /proc/<pid>/stat after the command's name.
func cpuTime(f []string) time.Duration {
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * time.Second / 100 // USER_HZ
}

// processCPU is a process's CPU time (user + system) so far.
func processCPU(b *testing.B, pid int) time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(st), ") ")
	return cpuTime(strings.Fields(rest))
}

// continueOf is a LIST page's continue token, JSON or Kubernetes protobuf.
func continueOf(b *testing.B, raw []byte) string {
	if pb, ok := bytes.CutPrefix(raw, []byte("k8s\x00")); ok {
		// runtime.Unknown{raw: 2} → the list{metadata: 1} → ListMeta{continue: 3}
		return string(pbField(b, pbField(b, pbField(b, pb, 2), 1), 3))
	}
	var page struct {
		Metadata struct{ Continue string } `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		b.Fatal(err)
	}
	return page.Metadata.Continue
}

// pbField is the last length-delimited field num of the protobuf message m.
func pbField(b *testing.B, m []byte, num protowire.Number) []byte {
	var out []byte
	for len(m) > 0 {
		n, typ, l := protowire.ConsumeTag(m)
		if l < 0 {
			b.Fatal(protowire.ParseError(l))
		}
		m = m[l:]
		if typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(m)
			if l < 0 {
				b.Fatal(protowire.ParseError(l))
			}
			if n == num {
				out = v
			}
			m = m[l:]
			continue
		}
		if l = protowire.ConsumeFieldValue(n, typ, m); l < 0 {
			b.Fatal(protowire.ParseError(l))
		}
		m = m[l:]
	}
	return out
}
