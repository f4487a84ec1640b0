package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

// crashCases are the two strategies, each on the PKI that makes it the right choice.
var crashCases = []struct {
	strategy string
	opts     func() pkigen.Options
}{
	{"leaves", expiredLeaves},
	{"full", expiredCA},
}

// crashStages lists every failpoint of a repair with this strategy: during and after the backup
// write, and after each destructive step of the plan that certguard itself prints (--dry-run -o
// json, .plan.steps).
func crashStages(t *testing.T, strategy string, opts pkigen.Options) []string {
	t.Helper()
	s := newScenario(t, opts)
	r := s.repair(0, "--dry-run", "--strategy="+strategy)
	if r.Outcome == nil || r.Outcome.Plan.Decision != pki.Decision(strategy) {
		t.Fatalf("dry run: want a %s plan, got %+v\n%s", strategy, r.Outcome, r.Stderr)
	}
	stages := []string{"during-backup", "after-backup"}
	// Every step of a plan is destructive (the backup is written before them, not as steps).
	for i := range r.Outcome.Plan.Steps {
		stages = append(stages, fmt.Sprintf("after-step-%d", i))
	}
	t.Logf("%s plan: %d steps, %d failpoints: %s", strategy, len(r.Outcome.Plan.Steps), len(stages), strings.Join(stages, " "))
	return stages
}

// TestCrashSafety kills certguard with SIGKILL at every stage of both strategies, runs it again,
// and boots: every run must end in a serving control plane with every original byte in place or
// in the backup.
func TestCrashSafety(t *testing.T) {
	t.Parallel()
	for _, c := range crashCases {
		t.Run(c.strategy, func(t *testing.T) {
			t.Parallel()
			for _, stage := range crashStages(t, c.strategy, c.opts()) {
				t.Run(stage, func(t *testing.T) {
					t.Parallel()
					s := newScenario(t, c.opts())
					before := s.manifest()
					flag := "--strategy=" + c.strategy

					r := s.certguard(failpointBin, []string{"CERTGUARD_FAILPOINT=" + stage}, flag)
					if !r.Killed {
						t.Fatalf("the failpoint build was not killed at %s (exit %d): the stage never ran\n%s", stage, r.Code, r.Stderr)
					}
					// The invariant holds at the kill itself, not only after the rerun.
					if lost, n, err := before.Lost(s.node.PKIDir(), s.backupDir(), s.secretData()); err != nil || len(lost) > 0 {
						t.Fatalf("killed at %s: %d bytes are neither in place nor in the backup (%v): %v", stage, n, err, lost)
					}

					r = s.repair(0, flag)
					if lost, n, err := before.Lost(s.node.PKIDir(), s.backupDir(), s.secretData()); err != nil || len(lost) > 0 {
						t.Fatalf("after the rerun: %d bytes lost (%v): %v", n, err, lost)
					}
					// Converged: a third run finds nothing to do.
					if r = s.repair(0, flag); decision(r) != pki.DecideNothing || len(r.Outcome.Resumed) > 0 {
						t.Fatalf("a third run still acts (decision %q, resumed %v): the rerun did not converge\n%s",
							decision(r), r.Outcome.Resumed, r.Stderr)
					}
					s.boot()
					t.Logf("killed at %s → converged, 0 bytes lost (strategy %s)", stage, c.strategy)
				})
			}
		})
	}
}

// TestFullDisk_DuringBackup runs certguard with the data volume full (a small tmpfs mounted as
// /data, filled up to the last few KiB): the backup write fails, certguard says so in one line
// and changes nothing; once space is freed, a rerun converges and the control plane serves.
func TestFullDisk_DuringBackup(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	for _, c := range crashCases {
		t.Run(c.strategy, func(t *testing.T) {
			t.Parallel()
			mnt := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			// etcd preallocates 64 MiB WAL segments: the volume must hold a boot once freed.
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=384m,mode=0755", "tmpfs", mnt).CombinedOutput(); err != nil {
				t.Fatalf("mount tmpfs: %v: %s", err, out)
			}
			t.Cleanup(func() {
				if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v: %s", mnt, err, out)
					_ = exec.Command("umount", "-l", mnt).Run()
				}
			})
			s := newScenario(t, c.opts(), withDataDir(filepath.Join(mnt, "k0s")))
			before := s.manifest()
			flag := "--strategy=" + c.strategy

			filler := fill(t, mnt, 8<<10)
			r := s.certguard(certguardBin, nil, flag)
			if r.Code != 1 {
				t.Fatalf("on a full volume certguard exited %d, want 1 (error)\n%s", r.Code, r.Stderr)
			}
			msg := strings.TrimSpace(r.Stderr[strings.LastIndex(r.Stderr, "certguard: "):])
			if !strings.Contains(msg, "no space left on device") || !strings.Contains(msg, "backup") {
				t.Errorf("the error line does not say that the backup could not be written for lack of space: %q", msg)
			}
			t.Logf("full volume: %s", msg)
			if !before.Equal(s.manifest()) {
				t.Fatal("certguard changed the disk or the Secret although its backup failed")
			}

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			r = s.repair(0, flag)
			if d := decision(r); d != pki.Decision(c.strategy) {
				t.Fatalf("after freeing space certguard decided %q, want %q\n%s", d, c.strategy, r.Stderr)
			}
			if lost, n, err := before.Lost(s.node.PKIDir(), s.backupDir(), s.secretData()); err != nil || len(lost) > 0 {
				t.Fatalf("%d bytes lost (%v): %v", n, err, lost)
			}
			s.boot()
			t.Logf("full volume during the backup → error, nothing changed; space freed → converged, 0 bytes lost")
		})
	}
}

// fill allocates a file on the filesystem of dir so that only about leave bytes stay free.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	size := (free - leave) &^ 4095
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		t.Fatalf("fallocate %d bytes: %v", size, err)
	}
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if left := int64(st.Bavail) * int64(st.Bsize); left > 2*leave {
		t.Fatalf("%d bytes still free after filling", left)
	}
	return p
}
