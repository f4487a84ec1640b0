package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Paths are the directories a repair works on, resolved once, before anything is read: every
// later decision (the backup dir outside the pki dir, one rename for a full reset, what a
// journal may name) is made on these, never on the strings the user typed.
type Paths struct {
	// PKIDir is absolute with every symlink resolved: a full reset moves this directory.
	PKIDir string
	// PKILink is the configured pki dir when it is a symlink to PKIDir ("" otherwise): after a
	// full reset an empty directory is left at PKIDir so that the link does not dangle.
	PKILink string
	// BackupDir is absolute, resolved as far as it exists.
	BackupDir string
	// BackupErr says why no backup can be written there (the volume's symlinks nest the two
	// directories, or cannot be resolved): a repair then fails before changing anything.
	BackupErr error
}

// ResolvePaths resolves the pki dir and the backup dir ("" means <pki-dir>.old, beside it).
func ResolvePaths(pkiDir, backupDir string) (Paths, error) {
	abs, err := filepath.Abs(pkiDir)
	if err != nil {
		return Paths{}, fmt.Errorf("--pki-dir: %w", err)
	}
	if backupDir == "" {
		backupDir = abs + ".old"
	}
	babs, err := filepath.Abs(backupDir)
	if err != nil {
		return Paths{}, fmt.Errorf("--backup-dir: %w", err)
	}
	// The flags themselves must not nest the two directories: that is a usage error.
	if within(babs, abs) {
		return Paths{}, fmt.Errorf("--backup-dir must be outside --pki-dir: vcluster copies every file in the pki dir into the Secret")
	}
	var p Paths
	if p.PKIDir, err = resolveExisting(abs); err != nil {
		// A symlink loop or an unreadable parent on the volume: judged (and reported) by the
		// read, never a reason to stop here.
		p.PKIDir = abs
	}
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		p.PKILink = abs
	}
	if p.BackupDir, err = resolveExisting(babs); err != nil {
		p.BackupDir, p.BackupErr = babs, fmt.Errorf("backup dir %s: %w", babs, err)
	}
	// Symlinks on the volume that nest them are found only once resolved: no backup can be
	// written then, but a start that needs no repair goes on.
	switch {
	case within(p.BackupDir, p.PKIDir):
		p.BackupErr = fmt.Errorf("backup dir %s resolves to %s, inside the pki dir %s: vcluster would copy backups into the Secret; "+
			"remove the symlink that leads there or set --backup-dir", babs, p.BackupDir, p.PKIDir)
	case within(p.PKIDir, p.BackupDir):
		p.BackupErr = fmt.Errorf("pki dir %s resolves to %s, inside the backup dir %s: remove the symlink that leads there or set --backup-dir",
			abs, p.PKIDir, p.BackupDir)
	}
	return p, nil
}

// resolveExisting resolves the symlinks of the longest existing prefix of an absolute path and
// appends the rest, so that a directory that does not exist yet is judged where it will be made.
func resolveExisting(p string) (string, error) {
	rest := ""
	for cur := p; ; {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
