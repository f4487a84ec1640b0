package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/certguard/certguard/kube/kubetest"
)

// TestVersionStamped builds certguard with the -X stamps the release uses and reads them back,
// as text and as JSON, with the Go version and client-go's version from go.mod.
func TestVersionStamped(t *testing.T) {
	const ver, sha, when = "v9.8.7-test", "0123456789abcdef0123456789abcdef01234567", "2026-01-02T03:04:05Z"
	stamped, err := kubetest.BuildCertguard(t.TempDir(), "-trimpath", "-ldflags",
		"-X main.version="+ver+" -X main.commit="+sha+" -X main.date="+when)
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/client-go (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod requires no k8s.io/client-go")
	}
	clientGo := string(m[1])

	code, stdout, stderr := runBinAt(t, stamped, "version")
	if code != 0 {
		t.Fatalf("version: exit %d: %s", code, stderr)
	}
	lines := strings.Split(stdout, "\n")
	if lines[0] != "certguard "+ver {
		t.Errorf("first line %q, want %q", lines[0], "certguard "+ver)
	}
	for _, want := range []string{sha, when, runtime.Version(), "k8s.io/client-go " + clientGo} {
		if !strings.Contains(stdout, want) {
			t.Errorf("version text lacks %q:\n%s", want, stdout)
		}
	}

	code, stdout, stderr = runBinAt(t, stamped, "version", "-o", "json")
	if code != 0 {
		t.Fatalf("version -o json: exit %d: %s", code, stderr)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("version -o json: %v\n%s", err, stdout)
	}
	if v.Version != ver || v.Commit != sha || v.Date != when || v.GoVersion != runtime.Version() {
		t.Errorf("version -o json = %+v, want %s %s %s %s", v, ver, sha, when, runtime.Version())
	}
	if got := v.Deps["k8s.io/client-go"]; got != clientGo {
		t.Errorf("deps[k8s.io/client-go] = %q, go.mod says %s", got, clientGo)
	}

	if code, _, _ := runBinAt(t, stamped, "version", "-o", "yaml"); code != exitUsage {
		t.Errorf("version -o yaml: exit %d, want %d", code, exitUsage)
	}
}

// runBinAt runs the binary at path with this process's environment minus CERTGUARD_*.
func runBinAt(t *testing.T, path string, args ...string) (int, string, string) {
	t.Helper()
	c := exec.Command(path, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CERTGUARD_") {
			c.Env = append(c.Env, e)
		}
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatal(err)
	return 0, "", ""
}
