package pki_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
)

// fixture is a pki dir and its Secret, ready for a repair.
type fixture struct {
	dir    string
	backup string
	secret *pkigen.MemorySecret
	before map[string]string // manifest of the pki dir before
	data   map[string][]byte // Secret data before
}

func newFixture(t *testing.T, gen func(*pkigen.Options)) *fixture {
	t.Helper()
	p := genPKI(t, gen)
	dir := writePKI(t, p.Files)
	f := &fixture{dir: dir, backup: dir + ".old", data: p.SecretData()}
	f.secret = pkigen.NewMemorySecret("ns", "vc-certs", f.data)
	f.secret.Clock = func() time.Time { return now }
	f.before = manifest(t, dir)
	return f
}

func (f *fixture) repair(strategy pki.Strategy, fp func(string) error) *pki.Repair {
	paths, err := pki.ResolvePaths(f.dir, f.backup)
	if err != nil {
		panic(err)
	}
	ref := pki.SecretRef{Namespace: "ns", Name: "vc-certs"}
	return &pki.Repair{
		RenewBefore: 120 * day, Log: quietLog(), Now: func() time.Time { return now },
		Policy: pki.Policy{Strategy: strategy, Secret: ref, MaxClockSkew: 5 * time.Minute},
		Exec:   &pki.Executor{Paths: paths, Secret: ref, Keep: 5, Secrets: f.secret, Log: quietLog(), Failpoint: fp},
	}
}

func (f *fixture) secretData(t *testing.T) map[string][]byte {
	s, err := f.secret.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		return nil
	}
	return s.Data
}

// assertNothingLost checks that every original byte is in the pki dir or in a backup, and that
// the Secret's original data is in place or in a backup's secret.json.
func (f *fixture) assertNothingLost(t *testing.T) {
	t.Helper()
	now := manifest(t, f.dir)
	backups, _ := filepath.Glob(filepath.Join(f.backup, "*", "pki"))
	aside, _ := filepath.Glob(filepath.Join(f.backup, "*", "aside"))
	backups = append(backups, aside...)
	for path, sum := range f.before {
		found := now[path] == sum
		for _, b := range backups {
			found = found || manifest(t, b)[path] == sum
		}
		if !found {
			t.Errorf("%s: original bytes neither in place nor in a backup", path)
		}
	}
	saved, _ := filepath.Glob(filepath.Join(f.backup, "*", "secret.json"))
	cur := f.secretData(t)
	for k, v := range f.data {
		found := cur != nil && string(cur[k]) == string(v)
		for _, sj := range saved {
			var s pki.Secret
			b, _ := os.ReadFile(sj)
			if json.Unmarshal(b, &s) == nil && string(s.Data[k]) == string(v) {
				found = true
			}
		}
		if !found {
			t.Errorf("Secret key %s: original bytes neither in place nor in a backup", k)
		}
	}
}

func TestRepairLeaves(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || !out.Applied || out.Plan.Decision != pki.DecideLeaves {
		t.Fatalf("Run = %+v, %v", out, err)
	}
	after := manifest(t, f.dir)
	for path, sum := range f.before {
		gone := slices.Contains(pki.K0sLeafFiles, path)
		if _, ok := after[path]; ok == gone {
			t.Errorf("%s: present %v after a leaf repair", path, ok)
		}
		if !gone && after[path] != sum {
			t.Errorf("%s changed", path)
		}
	}
	data := f.secretData(t)
	if len(data) != len(f.data)-14 {
		t.Errorf("Secret has %d keys, want %d", len(data), len(f.data)-14)
	}
	for k := range data {
		want := f.data[k]
		if strings.HasSuffix(k, ".conf") {
			// The kubeconfigs the repair keeps get the server vcluster's syncer expects.
			want = bytes.ReplaceAll(want, []byte("server: https://localhost:6443\n"), []byte("server: https://127.0.0.1:6443\n"))
		}
		if slices.Contains(pki.K0sLeafFiles, k) || !bytes.Equal(data[k], want) {
			t.Errorf("Secret key %s kept or changed wrongly", k)
		}
	}
	// The backup holds every removed byte, with restrictive modes, and is marked done.
	saved := manifest(t, filepath.Join(out.Backup, "pki"))
	for _, p := range pki.K0sLeafFiles {
		if saved[p] != f.before[p] {
			t.Errorf("backup of %s missing or wrong", p)
		}
	}
	for _, name := range []string{"plan.json", "secret.json", "done", "pki/server.key"} {
		fi, err := os.Stat(filepath.Join(out.Backup, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v", name, err, fi)
		}
	}
	if fi, _ := os.Stat(out.Backup); fi.Mode().Perm() != 0o700 {
		t.Errorf("backup dir mode %v", fi.Mode().Perm())
	}
	f.assertNothingLost(t)

	// A second run is a no-op: nothing due, nothing written.
	snap := manifest(t, filepath.Dir(f.dir))
	out, err = f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || out.Applied || out.Plan.Decision != pki.DecideNothing {
		t.Fatalf("second run = %+v, %v", out.Plan, err)
	}
	if !maps.Equal(snap, manifest(t, filepath.Dir(f.dir))) {
		t.Error("the second run wrote something")
	}
}

func TestRepairFull(t *testing.T) {
	f := newFixture(t, expiredCA)
	out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || !out.Applied || out.Plan.Decision != pki.DecideFull {
		t.Fatalf("Run = %+v, %v", out.Plan, err)
	}
	assertOnlySA(t, f)
	if !maps.Equal(manifest(t, filepath.Join(out.Backup, "pki")), f.before) {
		t.Error("the moved pki dir differs from the original")
	}
	if f.secretData(t) != nil {
		t.Error("the Secret was not deleted")
	}
	f.assertNothingLost(t)
	// Next start: only sa.* on disk, no Secret, no CA: vcluster generates a PKI, nothing to do.
	out, err = f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || out.Plan.Decision != pki.DecideNothing {
		t.Fatalf("run after reset = %+v, %v", out.Plan, err)
	}
}

func TestRepairDryRunChangesNothing(t *testing.T) {
	for _, gen := range []func(*pkigen.Options){expiredLeaves, expiredCA} {
		f := newFixture(t, gen)
		// A partial backup of a killed run: a real run would remove it, a dry run must not.
		partial := filepath.Join(f.backup, "20261125T000000Z.partial")
		if err := os.MkdirAll(partial, 0o700); err != nil {
			t.Fatal(err)
		}
		r := f.repair(pki.StrategyAuto, nil)
		r.DryRun = true
		out, err := r.Run(context.Background())
		if err != nil || out.Applied || !out.Plan.HasDestructive() {
			t.Fatalf("dry run = %+v, %v", out.Plan, err)
		}
		if !maps.Equal(manifest(t, f.dir), f.before) || !maps.EqualFunc(f.secretData(t), f.data, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Error("dry run changed something")
		}
		if entries, _ := os.ReadDir(f.backup); len(entries) != 1 {
			t.Errorf("dry run changed the backup dir: %v", entries)
		}
	}
}

var errCrash = errors.New("simulated crash")

// stages lists every failpoint a repair of this fixture passes.
func stages(t *testing.T, gen func(*pkigen.Options)) []string {
	f := newFixture(t, gen)
	var seen []string
	_, err := f.repair(pki.StrategyAuto, func(name string) error { seen = append(seen, name); return nil }).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

func TestRepairConvergesAfterACrashAtEveryStage(t *testing.T) {
	for name, gen := range map[string]func(*pkigen.Options){"leaves": expiredLeaves, "full": expiredCA} {
		all := stages(t, gen)
		if len(all) < 3 {
			t.Fatalf("%s: only %d stages: %v", name, len(all), all)
		}
		for _, stage := range all {
			t.Run(name+"/"+stage, func(t *testing.T) {
				f := newFixture(t, gen)
				_, err := f.repair(pki.StrategyAuto, func(n string) error {
					if n == stage {
						return errCrash
					}
					return nil
				}).Run(context.Background())
				if !errors.Is(err, errCrash) {
					t.Fatalf("crash run: %v", err)
				}
				f.assertNothingLost(t)
				out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
				if err != nil {
					t.Fatalf("run after the crash: %v", err)
				}
				f.assertNothingLost(t)
				// Converged: the state equals what an uninterrupted repair leaves.
				if name == "leaves" {
					for _, p := range pki.K0sLeafFiles {
						if _, err := os.Stat(filepath.Join(f.dir, p)); !os.IsNotExist(err) {
							t.Errorf("%s still on disk", p)
						}
						if _, ok := f.secretData(t)[p]; ok {
							t.Errorf("%s still in the Secret", p)
						}
					}
				} else {
					assertOnlySA(t, f)
					if f.secretData(t) != nil {
						t.Error("full reset not finished: the Secret is still there")
					}
				}
				if stage != "during-backup" && stage != "after-backup" && len(out.Resumed) != 1 {
					t.Errorf("resumed %v, want the journal finished", out.Resumed)
				}
				if partial, _ := filepath.Glob(filepath.Join(f.backup, "*.partial")); len(partial) > 0 {
					t.Errorf("partial backups left: %v", partial)
				}
			})
		}
	}
}

// A journal whose world changed since (here: the Secret got new k0s keys after the crash) is
// abandoned, not replayed over the new bytes.
func TestResumeAbandonsAStaleJournal(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	_, err := f.repair(pki.StrategyAuto, func(n string) error {
		if n == "after-backup" {
			return errCrash
		}
		return nil
	}).Run(context.Background())
	if !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	// k0s booted meanwhile (without certguard) and vcluster stored fresh leaves under the same CA.
	ca, err := pkigentest.LoadCA(f.data["ca.crt"], f.data["ca.key"])
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := pkigen.New(pkigen.Options{Now: now, K0sIssued: now}).IssueK0sLeaves(ca, f.data["ca.crt"])
	if err != nil {
		t.Fatal(err)
	}
	// One update of the Secret, as vcluster writes it: a new resourceVersion.
	cur, err := f.secret.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.secret.SetKeys(context.Background(), cur, fresh, false); err != nil {
		t.Fatal(err)
	}
	out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	abandoned, _ := filepath.Glob(filepath.Join(f.backup, "*", "abandoned"))
	if len(abandoned) != 1 || len(out.Resumed) != 1 {
		t.Fatalf("abandoned %v, resumed %v", abandoned, out.Resumed)
	}
	// The fresh Secret keys decide now (they are healthy): nothing to do, nothing removed.
	if out.Plan.Decision != pki.DecideNothing || string(f.secretData(t)["server.crt"]) != string(fresh["server.crt"]) {
		t.Fatalf("decision %s; the new Secret keys must stay", out.Plan.Decision)
	}
}

// conflicting makes the first n real (not dry-run) RemoveKeys fail as if another writer updated
// the Secret between the read and the write: the dry run passed, the backup was written.
type conflicting struct {
	*pkigen.MemorySecret
	n int
}

func (c *conflicting) RemoveKeys(ctx context.Context, s *pki.Secret, keys []string, dryRun bool) error {
	if !dryRun && c.n > 0 {
		c.n--
		return fmt.Errorf("test: %w", pki.ErrSecretChanged)
	}
	return c.MemorySecret.RemoveKeys(ctx, s, keys, dryRun)
}

func TestRepairReplansOnConflict(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	r := f.repair(pki.StrategyAuto, nil)
	r.Exec.Secrets = &conflicting{MemorySecret: f.secret, n: 1}
	out, err := r.Run(context.Background())
	if err != nil || !out.Applied || out.Attempts != 2 {
		t.Fatalf("Run = attempts %d applied %v, %v", out.Attempts, out.Applied, err)
	}
	// The attempt that met the conflict changed nothing, so its backup is gone: only the
	// finished repair's remains.
	entries, _ := os.ReadDir(f.backup)
	done, _ := filepath.Glob(filepath.Join(f.backup, "*", "done"))
	if len(entries) != 1 || len(done) != 1 {
		t.Fatalf("backup dir holds %d entries, %d done; want exactly the finished repair", len(entries), len(done))
	}
	f.assertNothingLost(t)
}

// TestEndlessConflictsLeaveNoPile: a Secret rewritten between every read and write ends the run
// after the bounded attempts with an error, and leaves no backup behind.
func TestEndlessConflictsLeaveNoPile(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	r := f.repair(pki.StrategyAuto, nil)
	r.Exec.Secrets = &conflicting{MemorySecret: f.secret, n: 1000}
	out, err := r.Run(context.Background())
	if !errors.Is(err, pki.ErrSecretChanged) || out.Attempts != 3 {
		t.Fatalf("Run = attempts %d, %v; want 3 attempts and ErrSecretChanged", out.Attempts, err)
	}
	entries, _ := os.ReadDir(f.backup)
	if len(entries) != 0 {
		t.Fatalf("backup dir holds %d entries after conflicts that changed nothing, want 0", len(entries))
	}
	if !maps.Equal(f.before, manifest(t, f.dir)) {
		t.Fatal("the pki dir changed")
	}
}

func TestPruneKeepsNewest(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	for i := range 7 {
		dir := filepath.Join(f.backup, fmt.Sprintf("2020010%dT000000Z", i+1))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "plan.json"), []byte(`{"version":2,"decision":"leaves","steps":[]}`), 0o600)
		os.WriteFile(filepath.Join(dir, "done"), nil, 0o600)
	}
	handCopy := filepath.Join(f.backup, "20180101T000000Z") // timestamp-named, but no plan.json
	os.MkdirAll(handCopy, 0o700)
	foreign := filepath.Join(f.backup, "ca.crt") // a user's own `mv pki pki.old` leftovers
	os.WriteFile(foreign, []byte("x"), 0o600)
	unfinishedOld := filepath.Join(f.backup, "20190101T000000Z")
	os.MkdirAll(unfinishedOld, 0o700)
	os.WriteFile(filepath.Join(unfinishedOld, "plan.json"), []byte(`{"steps":[]}`), 0o600)
	if _, err := f.repair(pki.StrategyAuto, nil).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(f.backup)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// 5 newest finished ones (4 old + this run), the foreign file and the hand copy left alone,
	// and the old journal, which does not validate (no version, no pki dir), set aside unrun.
	if len(names) != 8 || !slices.Contains(names, "ca.crt") || !slices.Contains(names, "20180101T000000Z") ||
		!slices.Contains(names, "20190101T000000Z.invalid") || slices.Contains(names, "20200103T000000Z") {
		t.Fatalf("backup dir after prune: %v", names)
	}
}

func TestRepairOnReadOnlyVolumeChangesNothing(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	mnt := filepath.Dir(f.dir)
	// A real read-only filesystem: bind-mount the fixture read-only over itself. Mounting needs
	// root. Without it the test skips and says so, as the e2e's tmpfs tests do
	// (e2e/crash_test.go), so that `go test ./pki/` runs for anyone; as root, a mount that fails
	// (no CAP_SYS_ADMIN) fails the test, so a root CI never passes it unrun.
	if os.Geteuid() != 0 {
		t.Skip("bind-mounting a read-only filesystem needs root")
	}
	if err := syscall.Mount(mnt, mnt, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount as root: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	if err := syscall.Mount("", mnt, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	_, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "read-only file system") {
		t.Fatalf("err = %v, want a read-only error", err)
	}
	if !maps.Equal(manifest(t, f.dir), f.before) || len(f.secretData(t)) != len(f.data) {
		t.Fatal("something changed on a read-only volume")
	}
}

// assertOnlySA checks the state a full reset leaves: the pki dir holds sa.key and sa.pub with
// their original bytes and nothing else, so that service-account tokens stay valid.
func assertOnlySA(t *testing.T, f *fixture) {
	t.Helper()
	got := manifest(t, f.dir)
	want := map[string]string{"sa.key": f.before["sa.key"], "sa.pub": f.before["sa.pub"]}
	if !maps.Equal(got, want) {
		t.Errorf("pki dir after a full reset holds %v, want exactly sa.key and sa.pub as before", slices.Sorted(maps.Keys(got)))
	}
}

// TestKillDuringPruneNeverBlocks: a kill while an old backup is being removed (reproduced on
// main with SIGKILL on tmpfs) left a timestamp dir without plan.json that made every later start
// exit 1. Now the backup is renamed <ts>.prune first: the next start removes the leftover and goes on.
func TestKillDuringPruneNeverBlocks(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	for i := range 5 {
		dir := filepath.Join(f.backup, fmt.Sprintf("2020010%dT000000Z", i+1))
		os.MkdirAll(filepath.Join(dir, "pki"), 0o700)
		os.WriteFile(filepath.Join(dir, "pki", "server.key"), []byte("old"), 0o600)
		os.WriteFile(filepath.Join(dir, "plan.json"), []byte(`{"version":2,"decision":"leaves","steps":[]}`), 0o600)
		os.WriteFile(filepath.Join(dir, "done"), nil, 0o600)
	}
	errCrash := errors.New("killed")
	_, err := f.repair(pki.StrategyAuto, func(stage string) error {
		if stage == "during-prune" {
			return errCrash
		}
		return nil
	}).Run(context.Background())
	if !errors.Is(err, errCrash) {
		t.Fatalf("the kill during prune did not happen: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.backup, "20200101T000000Z")); !os.IsNotExist(err) {
		t.Fatalf("the backup being pruned still has a backup's name: %v", err)
	}
	out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || out.Plan.Decision != pki.DecideNothing {
		t.Fatalf("the start after the kill: %s, %v", out.Plan.Decision, err)
	}
	if left, _ := filepath.Glob(filepath.Join(f.backup, "*.prune")); len(left) != 0 {
		t.Errorf("leftovers of the killed prune: %v", left)
	}
}

// TestKillDuringRestoreConverges: a kill inside the write of sa.pub into the new pki dir leaves
// its temporary file there; the next start still finishes the reset (vcluster would otherwise
// copy the stray file into the Secret, and a missing sa.pub next to sa.key fails every start:
// vcluster keeps an existing sa.key and never writes sa.pub then).
func TestKillDuringRestoreConverges(t *testing.T) {
	f := newFixture(t, expiredCA)
	errCrash := errors.New("killed")
	out, err := f.repair(pki.StrategyAuto, func(stage string) error {
		if stage == "after-step-2" { // delete-secret, move-pki, restore sa.key done
			return errCrash
		}
		return nil
	}).Run(context.Background())
	if !errors.Is(err, errCrash) || out.Plan.Decision != pki.DecideFull {
		t.Fatalf("crash run: %s, %v", out.Plan.Decision, err)
	}
	// What a kill inside writeFileSync of sa.pub leaves.
	if err := os.WriteFile(filepath.Join(f.dir, ".sa.pub.123456.tmp"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || len(out.Resumed) != 1 {
		t.Fatalf("the next run: resumed %v, %v", out.Resumed, err)
	}
	assertOnlySA(t, f)
	f.assertNothingLost(t)
}

// TestFullResetOfASymlinkedPKIDir: /data/k0s/pki is a symlink to the real directory. The reset
// moves the real directory (resolved once, before anything), not the link, and leaves the link
// leading to a directory holding only sa.*, so vcluster and k0s can fill it.
func TestFullResetOfASymlinkedPKIDir(t *testing.T) {
	f := newFixture(t, expiredCA)
	real := filepath.Join(filepath.Dir(f.dir), "real-pki")
	if err := os.Rename(f.dir, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, f.dir); err != nil {
		t.Fatal(err)
	}
	out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || out.Plan.Decision != pki.DecideFull {
		t.Fatalf("Run = %s, %v", out.Plan.Decision, err)
	}
	if fi, err := os.Lstat(f.dir); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink itself was moved or replaced: %v", err)
	}
	if !maps.Equal(manifest(t, filepath.Join(out.Backup, "pki")), f.before) {
		t.Error("the backup does not hold the real pki dir's files")
	}
	got := manifest(t, real)
	if want := map[string]string{"sa.key": f.before["sa.key"], "sa.pub": f.before["sa.pub"]}; !maps.Equal(got, want) {
		t.Errorf("the directory the link leads to holds %v, want only sa.key and sa.pub as they were", slices.Sorted(maps.Keys(got)))
	}
}

// writeDoneBackup lays out a finished backup as a run of certguard leaves it, by hand: the
// plan.json journal recording when it was planned, and the done mark.
func writeDoneBackup(t *testing.T, backupDir, name string, planned time.Time) string {
	t.Helper()
	dir := filepath.Join(backupDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	plan := fmt.Sprintf(`{"version":2,"now":%q,"decision":"leaves","steps":[]}`, planned.UTC().Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(dir, "plan.json"), []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPruneNeverRemovesThisRunsBackup (issue 18): a backup written while the node's clock was
// ahead has a name from the future. With --keep-backups 1, prune ordered by name removed the
// backup the run had just written: the only copy of the leaves and Secret values it removed.
func TestPruneNeverRemovesThisRunsBackup(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	future := writeDoneBackup(t, f.backup, "20300101T000000Z", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	r := f.repair(pki.StrategyAuto, nil)
	r.Exec.Keep = 1
	out, err := r.Run(context.Background())
	if err != nil || !out.Applied {
		t.Fatalf("Run = applied %v, %v", out.Applied, err)
	}
	if _, err := os.Stat(filepath.Join(out.Backup, "plan.json")); err != nil {
		t.Fatalf("this run's backup is gone: %v", err)
	}
	if _, err := os.Stat(future); !os.IsNotExist(err) {
		t.Errorf("the older backup (named in the future) was kept over --keep-backups 1: %v", err)
	}
	f.assertNothingLost(t)
}

// TestPruneOrdersByJournal: two backups of one second are named <ts>-2 and <ts>-10; by name,
// -10 (the newer) sorts first and was pruned. The journal's time, then the suffix as a number,
// order them.
func TestPruneOrdersByJournal(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	at := now.Add(-day)
	older := writeDoneBackup(t, f.backup, at.Format("20060102T150405Z")+"-2", at)
	newer := writeDoneBackup(t, f.backup, at.Format("20060102T150405Z")+"-10", at)
	r := f.repair(pki.StrategyAuto, nil)
	r.Exec.Keep = 2
	out, err := r.Run(context.Background())
	if err != nil || !out.Applied {
		t.Fatalf("Run = applied %v, %v", out.Applied, err)
	}
	for dir, want := range map[string]bool{out.Backup: true, newer: true, older: false} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s kept %v, want %v", filepath.Base(dir), err == nil, want)
		}
	}
}

// bigSecretFixture is an expired-leaves fixture whose Secret also holds another key of n bytes.
func bigSecretFixture(t *testing.T, n int) *fixture {
	t.Helper()
	f := newFixture(t, expiredLeaves)
	big := make([]byte, n)
	for i := range big {
		big[i] = byte(i*7919 + i/251) // not compressible, not all one byte
	}
	f.data["extra.bin"] = big
	f.secret = pkigen.NewMemorySecret("ns", "vc-certs", f.data)
	f.secret.Clock = func() time.Time { return now }
	return f
}

// TestRepairOfASecretNearTheLimit (issue 18): a Secret of 0.9 MiB (Kubernetes stores up to 1 MiB
// of data) is 1.2 MB as secret.json. The backup was written, then read back under the 1 MiB bound
// of a PKI file: exit 1 at every start, each leaving another backup with every private key.
func TestRepairOfASecretNearTheLimit(t *testing.T) {
	f := bigSecretFixture(t, 900<<10)
	out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || !out.Applied {
		t.Fatalf("Run = applied %v, %v", out.Applied, err)
	}
	fi, err := os.Stat(filepath.Join(out.Backup, "secret.json"))
	if err != nil || fi.Size() <= 1<<20 {
		t.Fatalf("secret.json: %v, %v; want it larger than 1 MiB for this test to mean anything", fi, err)
	}
	size := 0
	for _, v := range f.data {
		size += len(v)
	}
	t.Logf("Secret data %d bytes: secret.json %d bytes", size, fi.Size())
	if got := f.secretData(t); got["server.crt"] != nil || !bytes.Equal(got["extra.bin"], f.data["extra.bin"]) {
		t.Error("want the leaves gone from the Secret and its other key kept")
	}
	f.assertNothingLost(t)
}

// TestUnfinishableRepairLeavesNoKeys: a repair that cannot read its own backup back (here a Secret
// larger than any Kubernetes stores, 5 MiB) fails before changing anything, and must not leave
// that backup, a copy of every private key, behind at every start.
func TestUnfinishableRepairLeavesNoKeys(t *testing.T) {
	f := bigSecretFixture(t, 5<<20)
	for range 2 {
		if _, err := f.repair(pki.StrategyAuto, nil).Run(context.Background()); err == nil {
			t.Fatal("Run succeeded, want the error")
		}
	}
	entries, _ := os.ReadDir(f.backup)
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("backup dir after two failed starts holds %v, want nothing", names)
	}
	if !maps.Equal(manifest(t, f.dir), f.before) || !maps.EqualFunc(f.secretData(t), f.data, bytes.Equal) {
		t.Error("a repair that could not read its backup changed something")
	}
}
