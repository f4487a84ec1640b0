package watch_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/kube/kubetest"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkSidecarIdle runs the real `certguard watch` binary on a pki dir of 30 certificate
// files (plus their keys) and the Secret, waits until it serves, then measures it while idle:
// resident memory (VmRSS, and the peak VmHWM) and the CPU it uses in a 20 s idle period.
//
//	go test -run '^$' -bench SidecarIdle -benchtime 1x ./watch
func BenchmarkSidecarIdle(b *testing.B) {
	cmd := startSidecar(b)
	b.ResetTimer()
	for range b.N {
		cpu0 := cpuTicks(b, cmd.Process.Pid)
		start := time.Now()
		time.Sleep(20 * time.Second)
		cpu := float64(cpuTicks(b, cmd.Process.Pid)-cpu0) * 10 // 100 ticks a second: ms
		b.ReportMetric(cpu/time.Since(start).Seconds(), "idle-cpu-ms/s")
	}
	b.ReportMetric(float64(status(b, cmd.Process.Pid, "VmRSS"))/1024, "RSS-MiB")
	b.ReportMetric(float64(status(b, cmd.Process.Pid, "VmHWM"))/1024, "peak-RSS-MiB")
	// RSS is the Go heap and runtime (anonymous) plus the pages of the binary in use (file).
	b.ReportMetric(float64(status(b, cmd.Process.Pid, "RssAnon"))/1024, "anon-MiB")
	b.ReportMetric(float64(status(b, cmd.Process.Pid, "RssFile"))/1024, "file-MiB")
	b.ReportMetric(30, "cert-files")
}

// BenchmarkSidecarManyConnections opens 2,000 connections to the real sidecar, each sending one
// keep-alive request and then nothing, and reports its resident memory 10 s later: a leaky
// client or a port scan, against the 96 MiB limit of the values files. Before the connection
// limit, 8,000 such connections took it from 18 to 171 MB.
//
//	go test -run '^$' -bench SidecarManyConnections -benchtime 1x ./watch
func BenchmarkSidecarManyConnections(b *testing.B) {
	cmd := startSidecar(b)
	b.ReportMetric(float64(status(b, cmd.Process.Pid, "VmRSS"))/1024, "RSS-before-MiB")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2000 {
		c, err := net.Dial("tcp", "127.0.0.1:19793")
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprint(c, "GET /metrics HTTP/1.1\r\nHost: certguard\r\n\r\n")
		conns = append(conns, c)
	}
	time.Sleep(10 * time.Second)
	b.ReportMetric(float64(status(b, cmd.Process.Pid, "VmRSS"))/1024, "RSS-2000-conns-MiB")
	b.ReportMetric(float64(status(b, cmd.Process.Pid, "VmHWM"))/1024, "peak-RSS-MiB")
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
	b.ReportMetric(float64(len(fds)), "open-fds")
}

// startSidecar builds the release binary and runs `certguard watch` on 30 certificate files and
// the Secret, listening on 127.0.0.1:19793, until it is ready and scraped once.
func startSidecar(b *testing.B) *exec.Cmd {
	dir := b.TempDir()
	// The release build, as in the image: what is resident depends on the binary's size.
	b.Setenv("CGO_ENABLED", "0")
	bin, err := kubetest.BuildCertguard(dir, "-trimpath", "-ldflags=-s -w")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ns, _ := env.Namespace(ctx, "idle")
	p, _ := pkigen.Generate(pkigen.Options{Key: pkigentest.RSA})
	files := p.Files
	certs := 0
	for name := range files {
		if strings.HasSuffix(name, ".crt") || strings.HasSuffix(name, ".conf") {
			certs++
		}
	}
	for i := 0; certs < 30; i++ {
		files[fmt.Sprintf("extra-%d.crt", i)] = files["apiserver.crt"]
		certs++
	}
	pkiDir := filepath.Join(dir, "pki")
	pkigen.WriteDir(pkiDir, files)
	env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vc-certs"}, Data: p.SecretData()}, metav1.CreateOptions{})
	kc, err := env.Kubeconfig(dir, "idle", "system:masters")
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "watch", "--pki-dir", pkiDir, "--namespace", ns, "--vcluster-name", "vc", "--pod-name", "vc-0",
		"--kubeconfig", kc, "--listen", "127.0.0.1:19793", "--restart-window", "Sat 02:00-04:00")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://127.0.0.1:19793/readyz"); err == nil && resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("sidecar not ready")
		}
	}
	if resp, err := http.Get("http://127.0.0.1:19793/metrics"); err == nil { // one scrape, as Prometheus would
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(2 * time.Second)
	return cmd
}

func cpuTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

func status(b *testing.B, pid int, key string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n // kB
		}
	}
	return 0
}
