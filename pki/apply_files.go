package pki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

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
