package pki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

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
		return x.removeSecretKeys(ctx, st, s, saved, allow, notCalledFor)
	case ActionDeleteSecret:
		return x.deleteSecret(ctx, s, saved, allow, notCalledFor)
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
