package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	listFloor(b, ns, report)

	b.ResetTimer()
	for range b.N {
		start := time.Now()
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
		ready := time.Since(start)
		report("ready (/readyz 200) %.2f s after start", ready.Seconds())
		report("RSS at ready: %s", rss(b, pid))
		time.Sleep(10 * time.Second) // idle: what the process holds between scrapes
		report("RSS 10 s after ready (steady): %s", rss(b, pid))

		want := fmt.Sprintf("certguard_fleet_vclusters %d", n)
		for i := range 3 {
			d, _, size, ok := scrape(b, s.addr, false, want)
			if !ok {
				b.Fatalf("scrape %d lacks %q", i, want)
			}
			report("scrape %d: %.2f s, %.1f MiB", i+1, d.Seconds(), float64(size)/(1<<20))
		}
		for i := range 2 {
			d, wire, size, ok := scrape(b, s.addr, true, want)
			if !ok {
				b.Fatalf("gzip scrape lacks %q", want)
			}
			report("gzip scrape %d: %.2f s, %.1f MiB on the wire, %.1f MiB of text", i+1, d.Seconds(), float64(wire)/(1<<20), float64(size)/(1<<20))
		}
		report("RSS after 5 scrapes: %s", rss(b, pid))

		// A change: vc00000's leaves replaced by ones expiring at a known second; first seen on
		// /plan (a few MiB: polled every 10 ms), then a second change seen on /metrics, scraped
		// back to back (the bound is then the scrape's own duration).
		for _, via := range []string{"/plan", "/metrics"} {
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
			report("change seen on %s %.3f s after the update returned", via, seen.Seconds())
		}
		report("RSS at the end: %s", rss(b, pid))
		if err := s.stop(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(ready.Seconds(), "s-to-ready")
	}
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

// rss is the process's resident set now (VmRSS) and at its peak so far (VmHWM), in MiB.
func rss(b *testing.B, pid int) string {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for _, m := range rssLine.FindAllSubmatch(st, -1) {
		kib, _ := strconv.ParseFloat(string(m[2]), 64)
		out = append(out, fmt.Sprintf("%s %.0f MiB", m[1], kib/1024))
	}
	return strings.Join(out, ", ")
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

// listFloor is the floor under fleet serve's time to ready: the apiserver's paginated LIST of the
// namespace's Opaque Secrets (100 a page, no compression, as fleet serve asks), read and thrown
// away by this process.
func listFloor(b *testing.B, ns string, report func(string, ...any)) {
	cfg := rest.CopyConfig(kenv.Config)
	cfg.DisableCompression = true
	cfg.GroupVersion, cfg.APIPath = nil, ""
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.UnversionedRESTClientFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	total, pages, cont := 0, 0, ""
	for {
		req := rc.Get().AbsPath("/api/v1/namespaces", ns, "secrets").Param("fieldSelector", "type=Opaque").Param("limit", "100")
		if cont != "" {
			req = req.Param("continue", cont)
		}
		raw, err := req.Do(context.Background()).Raw()
		if err != nil {
			b.Fatal(err)
		}
		var page struct {
			Metadata struct{ Continue string } `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			b.Fatal(err)
		}
		total += len(raw)
		pages++
		if cont = page.Metadata.Continue; cont == "" {
			break
		}
	}
	report("floor: the apiserver's paginated LIST alone (%d pages, %.0f MiB of JSON) %.2f s", pages, float64(total)/(1<<20), time.Since(t0).Seconds())
}
