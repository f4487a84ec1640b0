package pki

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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
