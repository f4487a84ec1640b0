package pki

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Backup layout: <backup dir>/<UTC timestamp>/ holds plan.json (the journal), secret.json (the
// Secret as read, when a step changes it), pki/<path> (the bytes of each removed file; for a full
// reset, the whole moved pki dir), restore/<path> (the files put back after a full reset), aside/
// (entries set aside unopened), and "done" when finished or "abandoned" when a fresh plan took
// over. It is written as <ts>.partial and renamed complete before the first change; a backup on
// its way out is renamed <ts>.prune first, so that a kill never leaves a half-removed backup
// under a name that counts as one.
//
// certguard reads only what it wrote and recognises as complete: a directory whose name is a
// timestamp, holding a plan.json that parses and validates. Anything else in the backup dir is
// left alone and logged; a journal that does not validate is renamed <ts>.invalid, never run.
const (
	planFile      = "plan.json"
	secretFile    = "secret.json"
	filesDir      = "pki"
	restoreDir    = "restore"
	asideDir      = "aside"
	doneFile      = "done"
	abandonedFile = "abandoned"
	partialSuffix = ".partial"
	pruneSuffix   = ".prune"
	invalidSuffix = ".invalid"
	stampLayout   = "20060102T150405Z"
)

// stepDataDir is where a backup keeps the bytes a step carries, by action.
var stepDataDir = map[Action]string{ActionRemoveFile: filesDir, ActionRestoreFile: restoreDir, ActionSetConfServer: confDir}

// maxBackupEntries bounds how many entries of the backup dir one run looks at: certguard keeps
// a handful there, and a dir with millions must not stall a start.
const maxBackupEntries = 10000

// maxSecretJSON bounds secret.json: a Secret holds at most 1 MiB of data (and 256 KiB of
// annotations), which base64 in JSON makes about 1.75 MB; 949,282 bytes of data (0.9 MiB) made
// a secret.json of 1,266,755 bytes (TestRepairOfASecretNearTheLimit).
// It must stay above what backup() can write for any Secret the API server stores, or a repair
// writes a backup it cannot read back.
const maxSecretJSON = 4 << 20

var backupName = regexp.MustCompile(`^\d{8}T\d{6}Z(-\d+)?$`)

// backupState is what a recognised backup says about its repair.
type backupState int

const (
	stateUnfinished backupState = iota
	stateDone
	stateAbandoned
)

// backupEntry is one backup certguard wrote.
type backupEntry struct {
	name  string
	dir   string
	state backupState
	plan  Plan
}

// scanBackups lists the backups in dir, oldest first. It never fails on what it finds: a backup
// dir that is missing, not a directory, or unreadable yields no entries and, for the last two,
// a note for the log. Leftovers of certguard's own (partial and pruned backups) come back in
// leftovers.
func scanBackups(dir string) (entries []backupEntry, leftovers []string, notes []string) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err == nil && !fi.IsDir() {
		return nil, nil, []string{fmt.Sprintf("backup dir %s is not a directory (%s): ignored until a repair needs it", dir, fi.Mode().Type())}
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, nil, []string{fmt.Sprintf("backup dir %s cannot be read: %v", dir, err)}
	}
	des, err := d.ReadDir(maxBackupEntries)
	d.Close()
	if err != nil && len(des) == 0 {
		return nil, nil, []string{fmt.Sprintf("backup dir %s cannot be read: %v", dir, err)}
	}
	slices.SortFunc(des, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	for _, de := range des {
		name := de.Name()
		if base, ok := strings.CutSuffix(name, partialSuffix); ok && backupName.MatchString(base) && de.IsDir() {
			leftovers = append(leftovers, name)
			continue
		}
		if base, ok := strings.CutSuffix(name, pruneSuffix); ok && backupName.MatchString(base) && de.IsDir() {
			leftovers = append(leftovers, name)
			continue
		}
		if !backupName.MatchString(name) {
			if base, ok := strings.CutSuffix(name, invalidSuffix); !ok || !backupName.MatchString(base) {
				notes = append(notes, fmt.Sprintf("%s is not a backup certguard wrote: left alone", filepath.Join(dir, name)))
			}
			continue
		}
		if !de.IsDir() {
			notes = append(notes, fmt.Sprintf("%s is not a directory: left alone", filepath.Join(dir, name)))
			continue
		}
		e, ok := readBackup(dir, name)
		if !ok {
			notes = append(notes, fmt.Sprintf("%s holds no readable plan.json, so certguard did not finish writing it: left alone", filepath.Join(dir, name)))
			continue
		}
		entries = append(entries, e)
	}
	return entries, leftovers, notes
}

// readBackup reads one timestamp-named directory through os.Root, every file bounded and
// regular; ok is false when it holds no plan.json that parses.
func readBackup(dir, name string) (backupEntry, bool) {
	e := backupEntry{name: name, dir: filepath.Join(dir, name)}
	root, err := os.OpenRoot(e.dir)
	if err != nil {
		return e, false
	}
	defer root.Close()
	data, err := readRegular(root, planFile, maxFileSize)
	if err != nil || json.Unmarshal(data, &e.plan) != nil {
		return e, false
	}
	switch {
	case isRegular(root, doneFile):
		e.state = stateDone
	case isRegular(root, abandonedFile):
		e.state = stateAbandoned
	}
	return e, true
}

func isRegular(root *os.Root, name string) bool {
	fi, err := root.Lstat(name)
	return err == nil && fi.Mode().IsRegular()
}

// validate checks a journal against the layout before anything in it is executed: only the 14
// k0s leaf files inside the pki dir and their Secret keys, only sa.key/sa.pub restored, the whole
// pki dir moved only as itself, and every byte a step carries present in the backup with its
// digest. On success the steps carry their bytes again.
func (e *backupEntry) validate(paths Paths, secret SecretRef) error {
	p := &e.plan
	if p.Version != journalVersion {
		return fmt.Errorf("journal version %d, want %d", p.Version, journalVersion)
	}
	if p.PKIDir != paths.PKIDir {
		return fmt.Errorf("journal is for pki dir %q, not %q", p.PKIDir, paths.PKIDir)
	}
	if p.Secret.Namespace != secret.Namespace || p.Secret.Name != secret.Name {
		return fmt.Errorf("journal is for Secret %s, not %s", p.Secret.Ref(), secret.Ref())
	}
	leafKeys := map[string]bool{}
	for _, f := range K0sLeafFiles {
		leafKeys[SecretKey(f)] = true
	}
	seen := map[string]bool{}
	once := func(what string) error {
		if seen[what] {
			return fmt.Errorf("step %s appears twice", what)
		}
		seen[what] = true
		return nil
	}
	root, err := os.OpenRoot(e.dir)
	if err != nil {
		return err
	}
	defer root.Close()
	secretSteps := false
	for i := range p.Steps {
		st := &p.Steps[i]
		allowed := map[Decision][]Action{
			DecideNothing: {ActionSetConfServer},
			DecideLeaves:  {ActionRemoveSecretKeys, ActionRemoveFile, ActionSetAside, ActionSetConfServer},
			DecideFull:    {ActionDeleteSecret, ActionMovePKI, ActionRestoreFile},
		}[p.Decision]
		if !slices.Contains(allowed, st.Action) {
			return fmt.Errorf("step %d: action %q is not part of a %q repair", i, st.Action, p.Decision)
		}
		if err := once(string(st.Action) + " " + st.Path); err != nil {
			return err
		}
		switch st.Action {
		case ActionRemoveSecretKeys:
			secretSteps = true
			if st.Path != "" || len(st.Keys) == 0 {
				return fmt.Errorf("step %d: malformed", i)
			}
			for _, k := range st.Keys {
				if !leafKeys[k] {
					return fmt.Errorf("step %d: Secret key %q is not a k0s leaf", i, k)
				}
			}
		case ActionDeleteSecret, ActionMovePKI:
			secretSteps = secretSteps || st.Action == ActionDeleteSecret
			if st.Path != "" || len(st.Keys) > 0 {
				return fmt.Errorf("step %d: malformed", i)
			}
		case ActionRemoveFile, ActionSetAside:
			if !slices.Contains(K0sLeafFiles, st.Path) {
				return fmt.Errorf("step %d: %q is not a k0s leaf file", i, st.Path)
			}
		case ActionRestoreFile:
			if st.Path != "sa.key" && st.Path != "sa.pub" {
				return fmt.Errorf("step %d: %q is not a file a full reset restores", i, st.Path)
			}
		case ActionSetConfServer:
			secretSteps = true
			if !validConfStep(*st) {
				return fmt.Errorf("step %d: malformed", i)
			}
		}
		if sub, ok := stepDataDir[st.Action]; ok {
			data, err := readRegular(root, path.Join(sub, st.Path), maxFileSize)
			if err != nil || digest(data) != st.SHA256 {
				return fmt.Errorf("step %d: the backup of %s is missing or does not match its digest", i, st.Path)
			}
			st.Data = data
		}
	}
	if secretSteps {
		s, err := loadSecret(root)
		if err != nil || s == nil || s.Namespace != secret.Namespace || s.Name != secret.Name {
			return fmt.Errorf("secret.json is missing or names another Secret")
		}
	}
	return nil
}

// loadSecret reads secret.json of a backup; nil when the backup has none.
func loadSecret(root *os.Root) (*Secret, error) {
	if _, err := root.Lstat(secretFile); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	data, err := readRegular(root, secretFile, maxSecretJSON)
	if err != nil {
		return nil, err
	}
	var s Secret
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", secretFile, err)
	}
	return &s, nil
}

// removeBackup removes a backup of certguard's crash-safely: renamed <name>.prune first (one
// atomic step after which it no longer counts as a backup), then removed; a kill in between
// leaves a .prune that the next run removes. between, when set, runs after the rename (a test's
// kill).
func removeBackup(dir, name string, between func() error) error {
	from := filepath.Join(dir, name)
	to := from
	if !strings.HasSuffix(name, pruneSuffix) && !strings.HasSuffix(name, partialSuffix) {
		to = from + pruneSuffix
		if err := os.Rename(from, to); err != nil {
			return err
		}
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	if between != nil {
		if err := between(); err != nil {
			return err
		}
	}
	return os.RemoveAll(to)
}

// BackupState is what the backup dir says about past repairs, read without changing anything
// (the sidecar may mount the volume read-only).
type BackupState struct {
	LastDone   time.Time // when the newest completed repair started
	Unfinished string    // the newest repair that was started and neither finished nor abandoned
}

// ReadBackupState reads the backup dir; a missing or unusable dir is no repair yet.
func ReadBackupState(backupDir string) (BackupState, error) {
	var st BackupState
	entries, _, _ := scanBackups(backupDir)
	for _, e := range entries {
		t, err := time.Parse(stampLayout, strings.SplitN(e.name, "-", 2)[0])
		if err != nil {
			continue
		}
		switch e.state {
		case stateDone:
			if t.After(st.LastDone) {
				st.LastDone = t
			}
		case stateUnfinished:
			st.Unfinished = e.name
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
