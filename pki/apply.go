package pki

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SecretAPI is what the executor needs of the Kubernetes API; package kube implements it.
type SecretAPI interface {
	// Get returns the Secret, or nil and no error when it does not exist.
	Get(ctx context.Context) (*Secret, error)
	// RemoveKeys removes keys in one write, on condition that s is still the Secret's current
	// version; otherwise it returns an error wrapping ErrSecretChanged. With dryRun the server
	// checks the write (RBAC, admission, immutability) and stores nothing.
	RemoveKeys(ctx context.Context, s *Secret, keys []string, dryRun bool) error
	// Delete deletes the Secret on the same condition and returns once it is gone (an error
	// wrapping ErrSecretNotGone when finalizers keep it). An already deleted Secret is no
	// error. With dryRun the server checks the delete and nothing is deleted.
	Delete(ctx context.Context, s *Secret, dryRun bool) error
	// SetKeys sets keys to the given values in one write, on the same condition as RemoveKeys.
	// With dryRun the server checks the write and stores nothing.
	SetKeys(ctx context.Context, s *Secret, set map[string][]byte, dryRun bool) error
	// ServerTime is the API server's clock at its last answer (zero when unknown).
	ServerTime() time.Time
}

// ErrSecretChanged means the Secret changed since it was read: read again, plan again.
var ErrSecretChanged = errors.New("the Secret changed since it was read")

// ErrSecretNotGone means a deleted Secret is still there (finalizers): vcluster would write the
// old PKI from it back to the volume, so a full reset does not go on.
var ErrSecretNotGone = errors.New("the Secret is not gone")

// errSuperseded means a journaled repair no longer matches what is on disk or in the Secret:
// somebody changed things since, so it is abandoned and the current state planned afresh.
var errSuperseded = errors.New("superseded")

// Executor runs plans. It is the only code in certguard that changes the disk or the Secret, and
// it does exactly what the plan's steps say, with the bytes they carry.
type Executor struct {
	Paths Paths
	// Secret is the Secret this run is for: a journal naming another is not run.
	Secret  SecretRef
	Keep    int
	Secrets SecretAPI
	Log     *slog.Logger
	// Failpoint, when set, is called after each stage with its name; an error stops the
	// executor on the spot, as a crash would. Tests arm it; the failpoint build tag arms it
	// from the environment to SIGKILL the process.
	Failpoint func(name string) error
}

// Journal is an unfinished repair found in the backup dir, validated.
type Journal struct {
	Dir  string
	Plan Plan
}

func (x *Executor) fail(name string) error {
	if x.Failpoint == nil {
		return nil
	}
	return x.Failpoint(name)
}

// Unfinished returns the validated unfinished repairs, oldest first. It never fails on what the
// backup dir holds. Unless dryRun, it also tidies certguard's own leftovers: partial backups
// (written before any change, so every original is still in place), half-pruned ones, and
// journals that do not validate (renamed <ts>.invalid: set aside, never run).
func (x *Executor) Unfinished(dryRun bool) []Journal {
	entries, leftovers, notes := scanBackups(x.Paths.BackupDir)
	for _, n := range notes {
		x.Log.Warn(n)
	}
	if !dryRun {
		for _, name := range leftovers {
			if err := removeBackup(x.Paths.BackupDir, name, nil); err != nil {
				x.Log.Warn("could not remove a leftover of an interrupted run", "dir", filepath.Join(x.Paths.BackupDir, name), "err", err)
			}
		}
	}
	var out []Journal
	for _, e := range entries {
		if e.state != stateUnfinished {
			continue
		}
		if err := e.validate(x.Paths, x.Secret); err != nil {
			x.Log.Warn("an unfinished repair's journal does not validate: set aside, not run", "dir", e.dir, "err", err, "dry_run", dryRun)
			if !dryRun {
				if err := os.Rename(e.dir, e.dir+invalidSuffix); err != nil {
					x.Log.Warn("could not set the journal aside", "dir", e.dir, "err", err)
				}
			}
			continue
		}
		out = append(out, Journal{Dir: e.dir, Plan: e.plan})
	}
	return out
}

// Apply checks the Secret step with the API server (a dry run), backs up what the plan's steps
// carry, then runs them. It returns the backup directory. When the Secret changed before
// anything was changed, the error wraps ErrSecretChanged and no backup is left: plan again.
func (x *Executor) Apply(ctx context.Context, p Plan, s *Secret) (string, error) {
	if p = x.dropRefusedConfSteps(ctx, p, s); !p.HasDestructive() {
		return "", nil
	}
	if onlyConfSteps(p) {
		return x.applyConfSteps(ctx, p, s)
	}
	if err := x.dryRun(ctx, p, s); err != nil {
		return "", err
	}
	dir, err := x.backup(p, s)
	if err != nil {
		return "", fmt.Errorf("write backup: %w%s; nothing was changed", err, diskHint(err))
	}
	x.Log.Info("backup written", "dir", dir)
	if err := x.fail("after-backup"); err != nil {
		return dir, err
	}
	err = x.run(ctx, dir, p, s, true)
	if errors.Is(err, ErrSecretChanged) || errors.Is(err, errBackupUnreadable) {
		// The Secret step comes first, and the backup is read back before any step: nothing has
		// changed, and the backup holds nothing that is not still in place. Remove it, so that a
		// Secret rewritten again and again, or a backup that cannot be read back, leaves no pile
		// of backups each holding every private key, one more at every start.
		return "", errors.Join(err, removeBackup(x.Paths.BackupDir, filepath.Base(dir), nil))
	}
	return dir, err
}

// dryRun asks the API server to check the Secret step before the first write to the volume: a
// 403, an immutable Secret or an admission webhook's refusal then ends the run with nothing
// written anywhere.
func (x *Executor) dryRun(ctx context.Context, p Plan, s *Secret) error {
	if s == nil {
		return nil
	}
	for _, st := range p.Steps {
		var err error
		switch st.Action {
		case ActionRemoveSecretKeys:
			err = x.Secrets.RemoveKeys(ctx, s, st.Keys, true)
		case ActionDeleteSecret:
			err = x.Secrets.Delete(ctx, s, true)
		default:
			continue
		}
		if errors.Is(err, ErrSecretChanged) {
			return err
		}
		if err != nil {
			return fmt.Errorf("the API server refuses the Secret change (checked as a dry run): %w; nothing was changed", err)
		}
	}
	return nil
}

// Resume finishes an unfinished repair. It redoes each step only where what is there still
// equals what the backup recorded; when it does not, the journal is abandoned (a fresh plan
// decides) and Resume returns nil.
//
// s is the Secret as just read. Unless allow, no step may change anything but put sa.* back:
// a step that would is taken as a sign that the journal does not fit the state (edited, or
// stale), and it is abandoned.
func (x *Executor) Resume(ctx context.Context, j Journal, s *Secret, allow bool) error {
	err := x.run(ctx, j.Dir, j.Plan, s, allow)
	if errors.Is(err, errSuperseded) || errors.Is(err, ErrSecretChanged) {
		x.Log.Warn("unfinished repair no longer matches; planning afresh", "dir", j.Dir, "err", err)
		return x.mark(j.Dir, abandonedFile, err.Error())
	}
	return err
}

// errBackupUnreadable means a backup's secret.json could not be read back before the first step.
var errBackupUnreadable = errors.New("the backup cannot be read back")

// run carries out the steps, each guarded by the backup, then marks the backup done and prunes.
func (x *Executor) run(ctx context.Context, dir string, p Plan, s *Secret, allow bool) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", errBackupUnreadable, err)
	}
	saved, err := loadSecret(root)
	root.Close()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errBackupUnreadable, filepath.Join(dir, secretFile), err)
	}
	var restored []string
	for _, st := range p.Steps {
		if st.Action == ActionRestoreFile {
			restored = append(restored, st.Path)
		}
	}
	for i, st := range p.Steps {
		did, err := x.step(ctx, dir, st, s, saved, restored, allow, p.Steps)
		if err != nil {
			return err
		}
		if did {
			x.Log.Info("step applied", "action", st.Action, "path", st.Path, "keys", len(st.Keys))
		} else {
			x.Log.Info("step already done", "action", st.Action, "path", st.Path)
		}
		if err := x.fail(fmt.Sprintf("after-step-%d", i)); err != nil {
			return err
		}
	}
	if err := x.mark(dir, doneFile, time.Now().UTC().Format(time.RFC3339)); err != nil {
		return err
	}
	return x.prune(filepath.Base(dir))
}

// step runs one step; did is false when it found the step already done.
// restored are the files the plan puts back into the new pki dir; all is the plan's steps.
func (x *Executor) step(ctx context.Context, dir string, st Step, s, saved *Secret, restored []string, allow bool, all []Step) (did bool, err error) {
	notCalledFor := fmt.Errorf("%w: %s %s would change what the current state does not call for", errSuperseded, st.Action, st.Path)
	switch st.Action {
	case ActionRemoveSecretKeys:
		if s == nil {
			return false, nil
		}
		var rm []string
		for _, k := range st.Keys {
			cur, ok := s.Data[k]
			if !ok {
				continue
			}
			if saved == nil || !bytes.Equal(cur, saved.Data[k]) {
				return false, fmt.Errorf("%w: Secret key %s differs from the backup", errSuperseded, k)
			}
			rm = append(rm, k)
		}
		if len(rm) == 0 {
			return false, nil
		}
		if !allow {
			return false, notCalledFor
		}
		if err := x.Secrets.RemoveKeys(ctx, s, rm, false); err != nil {
			return false, fmt.Errorf("remove %d keys from Secret %s: %w", len(rm), x.Secret.Ref(), err)
		}
		return true, nil
	case ActionDeleteSecret:
		if s == nil {
			return false, nil
		}
		if saved == nil || !maps.EqualFunc(s.Data, saved.Data, bytes.Equal) {
			return false, fmt.Errorf("%w: Secret %s differs from the backup", errSuperseded, x.Secret.Ref())
		}
		if !allow {
			return false, notCalledFor
		}
		if err := x.Secrets.Delete(ctx, s, false); err != nil {
			return false, fmt.Errorf("delete Secret %s: %w", x.Secret.Ref(), err)
		}
		return true, nil
	case ActionRemoveFile:
		return x.removeFile(st, allow, notCalledFor)
	case ActionSetAside:
		return x.setAside(dir, st, allow, notCalledFor)
	case ActionMovePKI:
		return x.movePKI(filepath.Join(dir, filesDir), restored, allow, notCalledFor)
	case ActionRestoreFile:
		return x.restoreFile(st)
	case ActionSetConfServer:
		return x.setConfServers(ctx, st, all, saved, allow, notCalledFor)
	}
	return false, fmt.Errorf("unknown step %q", st.Action)
}

// removeFile removes a k0s leaf whose bytes the step carries, only while the file still holds
// exactly them (read again through the root, bounded, never blocking).
func (x *Executor) removeFile(st Step, allow bool, notCalledFor error) (bool, error) {
	root, err := os.OpenRoot(x.Paths.PKIDir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer root.Close()
	if _, err := root.Lstat(st.Path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	cur, err := readRegular(root, st.Path, maxFileSize)
	if err != nil || !bytes.Equal(cur, st.Data) {
		return false, fmt.Errorf("%w: %s differs from its backup", errSuperseded, st.Path)
	}
	if !allow {
		return false, notCalledFor
	}
	if err := root.Remove(st.Path); err != nil {
		return false, fmt.Errorf("remove %s: %w", filepath.Join(x.Paths.PKIDir, st.Path), err)
	}
	return true, syncDir(x.Paths.PKIDir)
}

// setAside moves a leaf entry that is not a readable regular file into the backup without
// opening it: one rename on the data volume. When the backup dir is on another filesystem, an
// entry without bytes of its own (symlink, FIFO, socket, device) is removed instead; its kind
// and link text are in the journal.
func (x *Executor) setAside(dir string, st Step, allow bool, notCalledFor error) (bool, error) {
	src := filepath.Join(x.Paths.PKIDir, st.Path) // st.Path is one of the 14 top-level leaf names
	fi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if kindOf(fi) != st.Kind {
		return false, fmt.Errorf("%w: %s is a %s now, not a %s", errSuperseded, st.Path, kindOf(fi), st.Kind)
	}
	if !allow {
		return false, notCalledFor
	}
	dst := filepath.Join(dir, asideDir, st.Path)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return false, err
	}
	err = os.Rename(src, dst)
	if errors.Is(err, syscall.EXDEV) && st.Kind != KindRegular && st.Kind != KindDir {
		err = os.Remove(src)
	}
	if err != nil {
		return false, fmt.Errorf("set aside %s: %w", src, err)
	}
	return true, errors.Join(syncDir(x.Paths.PKIDir), syncDir(filepath.Dir(dst)))
}

func kindOf(fi fs.FileInfo) Kind {
	switch {
	case fi.Mode().IsRegular():
		return KindRegular
	case fi.IsDir():
		return KindDir
	case fi.Mode()&fs.ModeSymlink != 0:
		return KindSymlink
	}
	return KindOther
}

// movePKI moves the resolved pki dir into the backup with one rename. When the configured pki
// dir is a symlink, an empty directory is left where it points, so that the link still leads to
// a directory that vcluster and k0s can fill.
func (x *Executor) movePKI(dest string, restored []string, allow bool, notCalledFor error) (bool, error) {
	src := x.Paths.PKIDir
	srcFI, errSrc := os.Lstat(src)
	_, errDst := os.Lstat(dest)
	switch srcOK, dstOK := errSrc == nil, errDst == nil; {
	case srcOK && !dstOK:
		if !allow {
			return false, notCalledFor
		}
		if err := os.Rename(src, dest); err != nil {
			return false, fmt.Errorf("move %s to %s: %w", src, dest, err)
		}
		if x.Paths.PKILink != "" {
			if err := os.Mkdir(src, srcFI.Mode().Perm()); err != nil {
				return true, fmt.Errorf("recreate %s for the symlink %s: %w", src, x.Paths.PKILink, err)
			}
		}
		return true, errors.Join(syncDir(filepath.Dir(src)), syncDir(filepath.Dir(dest)))
	case !srcOK && dstOK:
		return false, nil // moved by the run that was killed
	case srcOK && dstOK:
		if onlyHolds(src, restored) {
			return false, nil // the new dir the killed run made and began to fill: moved already
		}
		return false, fmt.Errorf("%w: %s was recreated after it was moved", errSuperseded, src)
	}
	return false, fmt.Errorf("%w: neither %s nor its backup exists", errSuperseded, src)
}

// onlyHolds reports whether dir holds nothing but (some of) names, and the temporary files a
// killed write of one of them leaves (which it removes: vcluster would copy them into the
// Secret, hidden names included).
func onlyHolds(dir string, names []string) bool {
	d, err := os.Open(dir)
	if err != nil {
		return false
	}
	got, err := d.Readdirnames(2*len(names) + 2)
	d.Close()
	if err != nil && len(got) > 0 {
		return false
	}
	var stray []string
	for _, n := range got {
		switch {
		case slices.Contains(names, n):
		case slices.ContainsFunc(names, func(name string) bool { return isTempOf(n, name) }):
			stray = append(stray, n)
		default:
			return false
		}
	}
	for _, n := range stray {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return false
		}
	}
	return true
}

// isTempOf reports whether n is a temporary file writeFileSync makes for name.
func isTempOf(n, name string) bool {
	rest, ok := strings.CutPrefix(n, "."+name+".")
	return ok && strings.HasSuffix(rest, ".tmp")
}

// restoreFile writes a file the step carries into the (new) pki dir, unless it is there already.
func (x *Executor) restoreFile(st Step) (bool, error) {
	if err := os.MkdirAll(x.Paths.PKIDir, 0o755); err != nil {
		return false, err
	}
	root, err := os.OpenRoot(x.Paths.PKIDir)
	if err != nil {
		return false, err
	}
	defer root.Close()
	if _, err := root.Lstat(st.Path); err == nil {
		cur, err := readRegular(root, st.Path, maxFileSize)
		if err == nil && bytes.Equal(cur, st.Data) {
			return false, nil
		}
		return false, fmt.Errorf("%w: %s exists in the new pki dir with other content", errSuperseded, st.Path)
	}
	return true, writeFileSync(filepath.Join(x.Paths.PKIDir, st.Path), st.Data, 0o600)
}

// backup writes <ts>.partial with the Secret, the bytes each step carries and the plan, makes it
// durable, and renames it to <ts>: a backup dir without .partial is complete.
func (x *Executor) backup(p Plan, s *Secret) (string, error) {
	if x.Paths.BackupErr != nil {
		return "", x.Paths.BackupErr
	}
	if err := x.ensureBackupDir(p.Now); err != nil {
		return "", err
	}
	if slices.ContainsFunc(p.Steps, func(s Step) bool { return s.Action == ActionMovePKI }) {
		if err := sameFilesystem(x.Paths.PKIDir, x.Paths.BackupDir); err != nil {
			return "", err
		}
	}
	name := p.Now.UTC().Format(stampLayout)
	for i := 2; ; i++ {
		_, err1 := os.Lstat(filepath.Join(x.Paths.BackupDir, name))
		_, err2 := os.Lstat(filepath.Join(x.Paths.BackupDir, name+partialSuffix))
		_, err3 := os.Lstat(filepath.Join(x.Paths.BackupDir, name+invalidSuffix))
		if errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist) && errors.Is(err3, fs.ErrNotExist) {
			break
		}
		name = fmt.Sprintf("%s-%d", p.Now.UTC().Format(stampLayout), i)
	}
	tmp := filepath.Join(x.Paths.BackupDir, name+partialSuffix)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	dirs := []string{tmp}
	if s != nil && slices.ContainsFunc(p.Steps, func(s Step) bool {
		return s.Action == ActionRemoveSecretKeys || s.Action == ActionDeleteSecret || s.Action == ActionSetConfServer
	}) {
		data, err := json.Marshal(s)
		if err != nil {
			return "", err
		}
		if err := writeFileSync(filepath.Join(tmp, secretFile), data, 0o600); err != nil {
			return "", err
		}
	}
	if err := x.fail("during-backup"); err != nil {
		return "", err
	}
	for _, st := range p.Steps {
		sub := stepDataDir[st.Action]
		if sub == "" {
			continue
		}
		dst := filepath.Join(tmp, sub, st.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return "", err
		}
		if !slices.Contains(dirs, filepath.Dir(dst)) {
			dirs = append(dirs, filepath.Dir(dst))
		}
		if err := writeFileSync(dst, st.Data, 0o600); err != nil {
			return "", err
		}
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeFileSync(filepath.Join(tmp, planFile), data, 0o600); err != nil {
		return "", err
	}
	for _, d := range slices.Backward(dirs) {
		if err := syncDir(d); err != nil {
			return "", err
		}
	}
	final := filepath.Join(x.Paths.BackupDir, name)
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return final, syncDir(x.Paths.BackupDir)
}

// ensureBackupDir makes the backup dir. Something else in its place (a file, a dangling link) is
// renamed aside, never removed, so that a start is not blocked by it and nothing is lost.
func (x *Executor) ensureBackupDir(now time.Time) error {
	dir := x.Paths.BackupDir
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	if _, err := os.Lstat(dir); err == nil {
		aside := fmt.Sprintf("%s.aside-%s", dir, now.UTC().Format(stampLayout))
		x.Log.Warn("the backup dir path holds something that is not a directory: set aside", "path", dir, "moved_to", aside)
		if err := os.Rename(dir, aside); err != nil {
			return fmt.Errorf("set aside %s: %w", dir, err)
		}
	}
	return os.MkdirAll(dir, 0o700)
}

// sameFilesystem refuses a full reset whose backup dir is on another filesystem: the move of the
// pki dir must be one rename, never a copy that a crash could leave half done.
func sameFilesystem(a, b string) error {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return err
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return err
	}
	if sa.Dev != sb.Dev {
		return fmt.Errorf("backup dir %s is on another filesystem than %s: a full reset must move the pki dir with one rename; "+
			"put --backup-dir on the data volume", b, a)
	}
	return nil
}

func (x *Executor) mark(dir, name, text string) error {
	return writeFileSync(filepath.Join(dir, name), []byte(text+"\n"), 0o600)
}

// prune keeps the newest Keep ended (finished or abandoned) backups, counting current, the
// backup of this run, which it never removes: it may be the only copy of what the run removed,
// whatever the clock said when an older backup was named (a node whose clock ran ahead names
// its backups in the future). The others are ordered by the time their journal records, then
// by the number a backup of the same second carries (-2 before -10). Unfinished ones are never
// removed, nor anything certguard did not write. A failure is logged: pruning never fails a run
// (only the failpoint, which stands for a kill, stops it).
func (x *Executor) prune(current string) error {
	entries, _, _ := scanBackups(x.Paths.BackupDir)
	var ended []backupEntry
	keep := max(x.Keep, 1)
	for _, e := range entries {
		switch {
		case e.state == stateUnfinished:
		case e.name == current:
			keep--
		default:
			ended = append(ended, e)
		}
	}
	slices.SortStableFunc(ended, func(a, b backupEntry) int {
		return cmp.Or(a.plan.Now.Compare(b.plan.Now), cmp.Compare(backupSeq(a.name), backupSeq(b.name)), strings.Compare(a.name, b.name))
	})
	for len(ended) > keep {
		name := ended[0].name
		var killed error
		if err := removeBackup(x.Paths.BackupDir, name, func() error { killed = x.fail("during-prune"); return killed }); err != nil {
			if killed != nil {
				return killed
			}
			x.Log.Warn("could not prune an old backup", "dir", filepath.Join(x.Paths.BackupDir, name), "err", err)
			return nil
		}
		x.Log.Info("old backup pruned", "dir", filepath.Join(x.Paths.BackupDir, name))
		ended = ended[1:]
	}
	return nil
}

// backupSeq is the number backup() appends to a second's second backup (<ts>-2, …); 1 for none.
func backupSeq(name string) int {
	_, suffix, ok := strings.Cut(name, "-")
	if !ok {
		return 1
	}
	n, err := strconv.Atoi(suffix)
	if err != nil {
		return 1
	}
	return n
}
