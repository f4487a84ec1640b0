package pki

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// maxFileSize bounds what is read per file: PKI files are a few KiB, and a huge file in the pki
// dir is a mistake to report, not a reason to fill the init container's memory.
const maxFileSize = 1 << 20

// ErrNotDir means the pki path exists but is not a directory.
var ErrNotDir = errors.New("not a directory")

// ReadDir reads every regular file under dir (etcd/ included) into a Store. It reads through
// os.Root, so a symlink that leads out of dir is an error for that file, never a read of
// something else. A missing dir is a Store that is not Present: a first start.
func ReadDir(dir string) (Store, error) {
	st := Store{Source: SourceDisk, Files: map[string][]byte{}, Errors: map[string]error{}}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("stat pki dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return st, fmt.Errorf("pki dir %s: %w", dir, ErrNotDir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, fmt.Errorf("open pki dir %s: %w", dir, err)
	}
	defer root.Close()
	st.Present = true
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			st.Errors[p] = err
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		data, err := readRegular(root, p, d)
		if err != nil {
			st.Errors[p] = err
			return nil
		}
		st.Files[p] = data
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("read pki dir %s: %w", dir, err)
	}
	return st, nil
}

// readRegular reads a file only when it (or the in-root file a symlink names) is regular: a FIFO
// would block the init container forever.
func readRegular(root *os.Root, p string, d fs.DirEntry) ([]byte, error) {
	if d.Type()&fs.ModeSymlink != 0 {
		fi, err := root.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("symlink %s: %w", p, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("symlink %s does not lead to a regular file", p)
		}
	} else if !d.Type().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", p, d.Type())
	}
	f, err := root.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path.Base(p), maxFileSize)
	}
	return data, nil
}

// ReadFile reads one file under dir with ReadDir's rules (through os.Root, regular files only,
// size-limited). A missing file returns an error wrapping fs.ErrNotExist.
func ReadFile(dir, rel string) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fi, err := root.Lstat(rel)
	if err != nil {
		return nil, err
	}
	return readRegular(root, rel, fs.FileInfoToDirEntry(fi))
}
