package e2e

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certguard/certguard/kube/kubetest"
)

// The package shares one host apiserver (holding every scenario's namespace and Secret) and two
// certguard binaries: the release build and the failpoint build.
var (
	env           *kubetest.Env
	assets        string
	certguardBin  string
	failpointBin  string
	bootTimeout   = 40 * time.Second
	packageStart  = time.Now()
	bootLogMu     sync.Mutex
	bootLogLines  []string
	hostStartTook time.Duration
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Scenarios mostly wait (for a boot slot, for a certificate to expire, for processes): run
	// more of them at once than -parallel's default of GOMAXPROCS. The boots themselves are
	// limited by E2E_BOOTS (default 3).
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "12")
	}
	if d, err := time.ParseDuration(os.Getenv("E2E_BOOT_TIMEOUT")); err == nil && d > 0 {
		bootTimeout = d
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if assets, err = kubetest.AssetsDir(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	bins, err := os.MkdirTemp("", "certguard-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(bins)

	var wg sync.WaitGroup
	var errs [3]error
	wg.Add(3)
	go func() {
		defer wg.Done()
		t0 := time.Now()
		env, errs[0] = kubetest.Start()
		hostStartTook = time.Since(t0)
	}()
	go func() {
		defer wg.Done()
		_ = os.MkdirAll(filepath.Join(bins, "release"), 0o755)
		certguardBin, errs[1] = kubetest.BuildCertguard(filepath.Join(bins, "release"))
	}()
	go func() {
		defer wg.Done()
		_ = os.MkdirAll(filepath.Join(bins, "failpoint"), 0o755)
		failpointBin, errs[2] = kubetest.BuildCertguard(filepath.Join(bins, "failpoint"), "-tags", "failpoint")
	}()
	wg.Wait()
	if env != nil {
		defer env.Stop()
	}
	for _, err := range errs {
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	}
	fmt.Printf("e2e: host apiserver up in %s; boots: at most %d at once, timeout %s\n",
		hostStartTook.Round(100*time.Millisecond), BootSlots(), bootTimeout)
	code := m.Run()
	bootLogMu.Lock()
	slices.Sort(bootLogLines)
	fmt.Printf("e2e: boot times (%d boots, package wall time %s)\n  %s\n", len(bootLogLines),
		time.Since(packageStart).Round(time.Second), strings.Join(bootLogLines, "\n  "))
	bootLogMu.Unlock()
	return code
}

func recordBoot(t *testing.T, line string) {
	bootLogMu.Lock()
	defer bootLogMu.Unlock()
	bootLogLines = append(bootLogLines, t.Name()+": "+line)
}
