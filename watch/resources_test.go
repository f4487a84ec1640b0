package watch_test

import (
	"context"
	"fmt"
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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkSidecarIdle runs the real `certguard watch` binary on a pki dir of 30 certificate
// files (plus their keys) and the Secret, waits until it serves, then measures it while idle:
// resident memory (VmRSS, and the peak VmHWM) and the CPU it uses in a 20 s idle period.
//
//	go test -run '^$' -bench SidecarIdle -benchtime 1x ./watch
func BenchmarkSidecarIdle(b *testing.B) {
	dir := b.TempDir()
	// The release build, as in the image: what is resident depends on the binary's size.
	b.Setenv("CGO_ENABLED", "0")
	bin, err := kubetest.BuildCertguard(dir, "-trimpath", "-ldflags=-s -w")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ns, _ := env.Namespace(ctx, "idle")
	p, _ := pkigen.Generate(pkigen.Options{RSA: true})
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
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://127.0.0.1:19793/readyz"); err == nil && resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("sidecar not ready")
		}
	}
	http.Get("http://127.0.0.1:19793/metrics") // one scrape, as Prometheus would
	time.Sleep(2 * time.Second)
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
	b.ReportMetric(float64(certs), "cert-files")
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
