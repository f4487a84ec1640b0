package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// createPod stands in for the vcluster pod (release-0) in the host namespace, with the
// containers vcluster v0.25's chart gives it for the k0s distro (chart/templates/
// _init-containers.tpl): certguard's plugin init container, the init container "vcluster" that
// copies the k0s binary out of k0sImage, and the syncer. Nothing runs it: certguard reads its spec.
func (s *scenario) createPod(k0sImage string) {
	s.t.Helper()
	_, err := env.Client.CoreV1().Pods(s.node.Namespace).Create(s.ctx(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: release + "-0", Labels: map[string]string{"app": "vcluster", "release": release}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: "certguard", Image: "ghcr.io/certguard/certguard:v0.1.0", Command: []string{"/certguard"}, Args: []string{"repair"}},
				{Name: "vcluster", Image: k0sImage, Command: []string{"/bin/sh"}, Args: []string{"-c", "cp /usr/local/bin/k0s /binaries/k0s"}},
			},
			Containers: []corev1.Container{{Name: "syncer", Image: "ghcr.io/loft-sh/vcluster:0.25.0"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
}

// checkJSON is what this test reads of `certguard check -o json` (kubeadm's
// CertificateExpirationInfo), decoded on its own so that it reads any version's output.
type checkJSON struct {
	Certificates []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Source string `json:"source"`
		Drift  string `json:"drift"`
	} `json:"certificates"`
	K0s struct {
		Version      string `json:"version"`
		From         string `json:"from"`
		RenewsLeaves bool   `json:"renewsLeaves"`
	} `json:"k0s"`
}

// check runs `certguard check -o json` against the scenario as an operator would (the pod named,
// the Secret read with the scenario's kubeconfig) and returns its exit code and output.
func (s *scenario) check(extra ...string) (int, checkJSON, string) {
	s.t.Helper()
	args := append([]string{"check", "--pki-dir=" + s.node.PKIDir(), "--vcluster-name=" + release, "--namespace=" + s.node.Namespace,
		"--kubeconfig=" + s.kubeconfig, "--pod-name=" + release + "-0", "--api-timeout=10s", "-o", "json"}, extra...)
	ctx, cancel := context.WithTimeout(s.ctx(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, certguardBin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + s.root}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			s.t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	var r checkJSON
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		s.t.Fatalf("check -o json: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	return code, r, errb.String()
}

// TestK0s1351_LeavesExpired_BootsWithoutRepair_SecretStale: on k0s ≥ v1.35.1 (modelled: its
// isManagedByK0s counts vcluster's CA, CN kubernetes, as its own) the leaves expired on disk and
// in the Secret do not break the start: k0s re-signs them, and vcluster ≤ v0.25 keeps the old
// copies in the Secret (its secretIsUpToDate compares the Secret with what it just downloaded).
// certguard, reading k0s's version from the pod's spec, then reports those copies stale and
// plans nothing: check exits 0, repair --dry-run has no step, the init container changes
// nothing and the next start serves. On main, check exited 4 with the 8 Secret copies
// "expired … differs (disk newer)", and repair planned a leaf repair of 15 steps.
func TestK0s1351_LeavesExpired_BootsWithoutRepair_SecretStale(t *testing.T) {
	t.Parallel()
	s := newScenario(t, expiredLeaves())
	s.node.K0s = K0sV1351
	s.createPod("k0sproject/k0s:v1.35.1-k0s.0")
	expired := s.pki.Files["server.crt"]

	// The modelled boot, with no certguard: it serves, on leaves k0s signed at this start.
	s.boot().Stop()
	if served := cert(t, s.read("server.crt")); !served.NotAfter.After(time.Now().Add(300 * day)) {
		t.Fatalf("the disk's server.crt runs to %s: k0s v1.35.1 did not re-sign it", served.NotAfter)
	}
	if !bytes.Equal(s.secretData()["server.crt"], expired) {
		t.Fatal("the Secret's server.crt changed: vcluster ≤ v0.25 never writes the k0s files back once it holds them")
	}

	// certguard check on that pod: the Secret's copies are stale, nothing is expired.
	code, r, stderr := s.check()
	if code != 0 {
		t.Errorf("check exited %d, want 0\n%s", code, stderr)
	}
	if r.K0s.Version != "v1.35.1-k0s.0" || r.K0s.From != "pod" || !r.K0s.RenewsLeaves {
		t.Errorf("check judged for k0s %+v, want v1.35.1-k0s.0 read from the pod", r.K0s)
	}
	// What k0s v1.35.1 re-signs under vcluster's CA: the 8 certificates among the 14 k0s files
	// (whose Secret copies main reported "EXPIRED … differs (disk newer)") and
	// apiserver-kubelet-client.crt (its Secret copy is vcluster's first one). The fixture aged
	// the etcd leaves and admin.conf/scheduler.conf too: k0s rewrites those at every start on
	// any version, and certguard reports them as they are and never acted on them.
	resigned := []string{"admin.crt", "apiserver-kubelet-client.crt", "ccm.conf", "ccm.crt", "k0s-api.crt",
		"konnectivity.conf", "konnectivity.crt", "scheduler.crt", "server.crt"}
	var stale []string
	for _, c := range r.Certificates {
		if c.Drift == "stale" {
			stale = append(stale, c.Name)
			if c.Status != "ok" || c.Source != "disk" {
				t.Errorf("%s: %s from %s, want ok from the disk", c.Name, c.Status, c.Source)
			}
		}
	}
	if strings.Join(stale, " ") != strings.Join(resigned, " ") {
		t.Errorf("stale: %v, want %v", stale, resigned)
	}
	// The same state judged for the k0s certguard assumed before (told by the flag): today's
	// findings, exit 4.
	if code, _, stderr := s.check("--k0s-version=v1.30.2-k0s.0"); code != 4 {
		t.Errorf("check --k0s-version=v1.30.2-k0s.0 exited %d, want 4\n%s", code, stderr)
	}

	// repair --dry-run plans nothing.
	dry := s.repair(0, "--dry-run")
	if dry.Outcome == nil || dry.Outcome.Plan.Decision != pki.DecideNothing || len(dry.Outcome.Plan.Steps) != 0 {
		t.Fatalf("repair --dry-run: %+v\n%s", dry.Outcome, dry.Stderr)
	}
	if !hasCode(dry.Outcome.Plan.Why, "secret-stale") {
		t.Errorf("the plan does not say why: %s", findings(dry.Outcome.Plan.Why))
	}

	// The init container at the next start: no change, and the start serves.
	before := s.manifest()
	if r := s.repair(0); r.Outcome == nil || r.Outcome.Applied || !strings.Contains(r.Stderr, "nothing to do") {
		t.Fatalf("repair: %+v\n%s", r.Outcome, r.Stderr)
	}
	if !before.Equal(s.manifest()) {
		t.Error("repair changed the disk or the Secret")
	}
	s.boot()
}

// TestK0s1351_CAExpired_StillFullReset: k0s ≥ v1.35.1 re-signs its leaves, but under a dead CA
// they cannot verify: the start fails as before, and certguard still resets the PKI.
func TestK0s1351_CAExpired_StillFullReset(t *testing.T) {
	t.Parallel()
	s := newScenario(t, expiredCA())
	s.node.K0s = K0sV1351
	s.createPod("k0sproject/k0s:v1.35.1-k0s.0")
	s.bootFails(expiredText)
	r := s.repair(0)
	if decision(r) != pki.DecideFull || !r.Outcome.Applied {
		t.Fatalf("repair decided %s (applied %v), want a full reset\n%s", decision(r), r.Outcome != nil && r.Outcome.Applied, r.Stderr)
	}
	s.boot()
}

// hasCode reports whether a finding of code is among fs (by its JSON code, as a program reads it).
func hasCode(fs []pki.Finding, code string) bool {
	for _, f := range fs {
		if string(f.Code) == code {
			return true
		}
	}
	return false
}
