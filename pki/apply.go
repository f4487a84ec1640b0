package pki

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// SecretAPI is what the executor needs of the Kubernetes API; package kube implements it.
type SecretAPI interface {
	// Get returns the Secret, or nil and no error when it does not exist.
	Get(ctx context.Context) (*Secret, error)
	// RemoveKeys removes keys in one write, on condition that s is still the Secret's current
	// version; otherwise it returns an error wrapping ErrSecretChanged.
	RemoveKeys(ctx context.Context, s *Secret, keys []string) error
	// Delete deletes the Secret on the same condition. An already deleted Secret is no error.
	Delete(ctx context.Context, s *Secret) error
	// ServerTime is the API server's clock at its last answer (zero when unknown).
	ServerTime() time.Time
}

// ErrSecretChanged means the Secret changed since it was read: read again, plan again.
var ErrSecretChanged = errors.New("the Secret changed since it was read")

// errSuperseded means a journaled repair no longer matches what is on disk or in the Secret:
// somebody changed things since, so it is abandoned and the current state planned afresh.
var errSuperseded = errors.New("superseded")

// Backup layout: <backup dir>/<UTC timestamp>/{plan.json, secret.json, pki/<paths>, done}. The
// directory is written as <ts>.partial and renamed when complete, before the first destructive
// step; "done" marks a finished repair and "abandoned" one that was replaced by a new plan.
const (
	planFile      = "plan.json"
	secretFile    = "secret.json"
	filesDir      = "pki"
	doneFile      = "done"
	abandonedFile = "abandoned"
	partialSuffix = ".partial"
	stampLayout   = "20060102T150405Z"
)

var backupName = regexp.MustCompile(`^\d{8}T\d{6}Z(-\d+)?$`)

// Executor applies plans. It is the only code in certguard that changes the disk or the Secret.
type Executor struct {
	PKIDir    string
	BackupDir string
	Keep      int
	Secrets   SecretAPI
	Log       *slog.Logger
	// Failpoint, when set, is called after each stage with its name; an error stops the
	// executor on the spot, as a crash would. Tests arm it; the failpoint build tag arms it
	// from the environment to SIGKILL the process.
	Failpoint func(name string) error
}

// Journal is an unfinished repair found in the backup dir.
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

// Apply backs up what the plan touches, then carries it out. It returns the backup directory.
// When the Secret changed before anything was changed, the error wraps ErrSecretChanged and the
// backup is marked abandoned: plan again.
func (x *Executor) Apply(ctx context.Context, p Plan, s *Secret) (string, error) {
	if !p.HasDestructive() {
		return "", nil
	}
	dir, err := x.backup(p, s)
	if err != nil {
		return "", fmt.Errorf("write backup: %w%s; nothing was changed", err, diskHint(err))
	}
	x.Log.Info("backup written", "dir", dir)
	if err := x.fail("after-backup"); err != nil {
		return dir, err
	}
	err = x.run(ctx, dir, p, s)
	if errors.Is(err, ErrSecretChanged) {
		// Only the first destructive step touches the Secret, so nothing has changed yet.
		return dir, errors.Join(err, x.mark(dir, abandonedFile, "the Secret changed before the first change; planned again"))
	}
	return dir, err
}

// Resume finishes an unfinished repair. It redoes each step only where what is there still
// equals what the backup recorded; when it does not, the journal is abandoned (a fresh plan
// decides) and Resume returns nil.
func (x *Executor) Resume(ctx context.Context, j Journal) error {
	s, err := x.Secrets.Get(ctx)
	if err != nil {
		return fmt.Errorf("get Secret: %w", err)
	}
	err = x.run(ctx, j.Dir, j.Plan, s)
	if errors.Is(err, errSuperseded) || errors.Is(err, ErrSecretChanged) {
		x.Log.Warn("unfinished repair no longer matches; planning afresh", "dir", j.Dir, "err", err)
		return x.mark(j.Dir, abandonedFile, err.Error())
	}
	return err
}

// run carries out the destructive steps, each guarded by the backup, then marks the backup done.
func (x *Executor) run(ctx context.Context, dir string, p Plan, s *Secret) error {
	saved, err := loadSecret(dir)
	if err != nil {
		return err
	}
	root := filepath.Join(dir, filesDir)
	for i, st := range p.Steps {
		switch st.Action {
		case ActionRemoveSecretKeys:
			if s == nil {
				break
			}
			var rm []string
			for _, k := range st.Keys {
				cur, ok := s.Data[k]
				if !ok {
					continue
				}
				if saved == nil || !bytes.Equal(cur, saved.Data[k]) {
					return fmt.Errorf("%w: Secret key %s differs from the backup", errSuperseded, k)
				}
				rm = append(rm, k)
			}
			if len(rm) > 0 {
				if err := x.Secrets.RemoveKeys(ctx, s, rm); err != nil {
					return fmt.Errorf("remove %d keys from Secret %s: %w", len(rm), st.Target, err)
				}
			}
		case ActionDeleteSecret:
			if s == nil {
				break
			}
			if saved == nil || !maps.EqualFunc(s.Data, saved.Data, bytes.Equal) {
				return fmt.Errorf("%w: Secret %s differs from the backup", errSuperseded, st.Target)
			}
			if err := x.Secrets.Delete(ctx, s); err != nil {
				return fmt.Errorf("delete Secret %s: %w", st.Target, err)
			}
		case ActionRemoveFile:
			if err := x.removeFile(st.Target, filepath.Join(root, filepath.FromSlash(st.Target))); err != nil {
				return err
			}
		case ActionMovePKI:
			if err := x.movePKI(root); err != nil {
				return err
			}
		default:
			continue
		}
		x.Log.Info("step applied", "action", st.Action, "target", st.Target, "keys", len(st.Keys))
		if err := x.fail(fmt.Sprintf("after-step-%d", i)); err != nil {
			return err
		}
	}
	if err := x.mark(dir, doneFile, time.Now().UTC().Format(time.RFC3339)); err != nil {
		return err
	}
	return x.prune()
}

func (x *Executor) removeFile(rel, saved string) error {
	path := filepath.Join(x.PKIDir, filepath.FromSlash(rel))
	cur, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	want, err := os.ReadFile(saved)
	if err != nil || !bytes.Equal(cur, want) {
		return fmt.Errorf("%w: %s differs from its backup", errSuperseded, rel)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func (x *Executor) movePKI(dest string) error {
	_, errSrc := os.Lstat(x.PKIDir)
	_, errDst := os.Lstat(dest)
	switch src, dst := errSrc == nil, errDst == nil; {
	case src && !dst:
		if err := os.Rename(x.PKIDir, dest); err != nil {
			return fmt.Errorf("move %s to %s: %w", x.PKIDir, dest, err)
		}
		return errors.Join(syncDir(filepath.Dir(x.PKIDir)), syncDir(filepath.Dir(dest)))
	case !src && dst:
		return nil // moved by the run that was killed
	case src && dst:
		return fmt.Errorf("%w: %s was recreated after it was moved", errSuperseded, x.PKIDir)
	}
	return fmt.Errorf("%w: neither %s nor its backup exists", errSuperseded, x.PKIDir)
}

// backup writes <ts>.partial with the Secret, copies of the files to remove, and the plan, makes
// it durable, and renames it to <ts>: a backup dir without .partial is complete.
func (x *Executor) backup(p Plan, s *Secret) (string, error) {
	if err := os.MkdirAll(x.BackupDir, 0o700); err != nil {
		return "", err
	}
	if slices.ContainsFunc(p.Steps, func(s Step) bool { return s.Action == ActionMovePKI }) {
		if err := sameFilesystem(x.PKIDir, x.BackupDir); err != nil {
			return "", err
		}
	}
	name := p.Now.UTC().Format(stampLayout)
	for i := 2; ; i++ {
		_, err1 := os.Lstat(filepath.Join(x.BackupDir, name))
		_, err2 := os.Lstat(filepath.Join(x.BackupDir, name+partialSuffix))
		if errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist) {
			break
		}
		name = fmt.Sprintf("%s-%d", p.Now.UTC().Format(stampLayout), i)
	}
	tmp := filepath.Join(x.BackupDir, name+partialSuffix)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	dirs := []string{tmp}
	if s != nil {
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
		if st.Action != ActionBackupFile {
			continue
		}
		data, err := os.ReadFile(filepath.Join(x.PKIDir, filepath.FromSlash(st.Target)))
		if err != nil {
			return "", err
		}
		dst := filepath.Join(tmp, filesDir, filepath.FromSlash(st.Target))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return "", err
		}
		if !slices.Contains(dirs, filepath.Dir(dst)) {
			dirs = append(dirs, filepath.Dir(dst))
		}
		if err := writeFileSync(dst, data, 0o600); err != nil {
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
	final := filepath.Join(x.BackupDir, name)
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return final, syncDir(x.BackupDir)
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

func loadSecret(dir string) (*Secret, error) {
	data, err := os.ReadFile(filepath.Join(dir, secretFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s Secret
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, secretFile), err)
	}
	return &s, nil
}

// Unfinished lists the repairs that were started and neither finished nor abandoned, oldest
// first. With clean, it also removes partial backups: those were written before any change, so
// the originals are all still in place.
func (x *Executor) Unfinished(clean bool) ([]Journal, error) {
	entries, err := os.ReadDir(x.BackupDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read backup dir: %w", err)
	}
	var out []Journal
	for _, e := range entries {
		dir := filepath.Join(x.BackupDir, e.Name())
		if base, ok := strings.CutSuffix(e.Name(), partialSuffix); ok && backupName.MatchString(base) {
			if !clean {
				continue
			}
			x.Log.Info("removing a partial backup of a run that was stopped before it changed anything", "dir", dir)
			if err := os.RemoveAll(dir); err != nil {
				return nil, err
			}
			continue
		}
		if !e.IsDir() || !backupName.MatchString(e.Name()) || exists(filepath.Join(dir, doneFile)) || exists(filepath.Join(dir, abandonedFile)) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, planFile))
		if err != nil {
			return nil, fmt.Errorf("read unfinished repair: %w", err)
		}
		var p Plan
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("read unfinished repair %s: %w", dir, err)
		}
		out = append(out, Journal{Dir: dir, Plan: p})
	}
	return out, nil
}

// prune keeps the newest Keep finished or abandoned backups; unfinished ones are never removed.
func (x *Executor) prune() error {
	entries, err := os.ReadDir(x.BackupDir)
	if err != nil {
		return err
	}
	var ended []string
	for _, e := range entries {
		dir := filepath.Join(x.BackupDir, e.Name())
		if e.IsDir() && backupName.MatchString(e.Name()) && (exists(filepath.Join(dir, doneFile)) || exists(filepath.Join(dir, abandonedFile))) {
			ended = append(ended, e.Name())
		}
	}
	slices.Sort(ended)
	for len(ended) > max(x.Keep, 1) {
		dir := filepath.Join(x.BackupDir, ended[0])
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("prune backup %s: %w", dir, err)
		}
		x.Log.Info("old backup pruned", "dir", dir)
		ended = ended[1:]
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// BackupState is what the backup dir says about past repairs, read without changing anything
// (the sidecar may mount the volume read-only).
type BackupState struct {
	LastDone   time.Time // when the newest completed repair started
	Unfinished string    // the newest repair that was started and neither finished nor abandoned
}

// ReadBackupState reads the backup dir; a missing dir is no repair yet.
func ReadBackupState(backupDir string) (BackupState, error) {
	var st BackupState
	entries, err := os.ReadDir(backupDir)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	for _, e := range entries {
		if !e.IsDir() || !backupName.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(backupDir, e.Name())
		t, err := time.Parse(stampLayout, strings.SplitN(e.Name(), "-", 2)[0])
		if err != nil {
			continue
		}
		switch {
		case exists(filepath.Join(dir, doneFile)):
			if t.After(st.LastDone) {
				st.LastDone = t
			}
		case !exists(filepath.Join(dir, abandonedFile)) && exists(filepath.Join(dir, planFile)):
			st.Unfinished = e.Name()
		}
	}
	return st, nil
}

// diskHint says what to do about the disk errors a user can fix.
func diskHint(err error) string {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return " (the data volume is full: free space on it or grow it, then restart the pod)"
	case errors.Is(err, syscall.EROFS):
		return " (the data volume is mounted read-only into this container: mount it read-write)"
	case errors.Is(err, fs.ErrPermission):
		return " (permission denied: the init container must run as root, securityContext.runAsUser: 0)"
	}
	return ""
}
