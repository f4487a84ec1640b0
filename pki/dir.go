package pki

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
)

// maxFileSize bounds what is read per file: PKI files are a few KiB, and a huge file in the pki
// dir is a mistake to report, not a reason to fill the init container's memory.
const maxFileSize = 1 << 20

// maxUnknown bounds how many entries that are not PKI files one read looks at per directory, and
// maxTotal the bytes read in all: the pki dir holds about 45 small files, and a directory with
// millions of entries or gigabytes of files must neither stall a pod start nor fill its memory.
// The files of the layout are always read first, so no budget is spent before them.
const (
	maxUnknown = 1000
	maxTotal   = 32 << 20
)

// ErrNotDir means the pki path exists but is not a directory.
var ErrNotDir = errors.New("not a directory")

// Kind is what a directory entry is. Only regular files are ever opened.
type Kind string

const (
	KindRegular Kind = "file"
	KindSymlink Kind = "symlink"
	KindDir     Kind = "dir"
	KindOther   Kind = "special" // FIFO, socket, device: opening one could block or never end
)

// EntryError is a path in the pki dir that was not read because it is not a regular file, is too
// large, or could not be read. It is data (a row in the report), never a reason to stop.
type EntryError struct {
	Kind   Kind   // what the entry is
	Link   string // the symlink's target text, never followed
	Reason Reason // ReasonNotRegular, ReasonTooLarge or ReasonUnreadable
	Err    error  // the I/O error for ReasonUnreadable
	Limit  int    // the bound a ReasonTooLarge entry exceeded
}

func (e *EntryError) Error() string {
	switch e.Reason {
	case ReasonNotRegular:
		if e.Kind == KindSymlink {
			return fmt.Sprintf("a symlink (to %q), not a regular file: not followed", e.Link)
		}
		return fmt.Sprintf("a %s, not a regular file: not opened", e.Kind)
	case ReasonTooLarge:
		return fmt.Sprintf("larger than %d bytes (or the %d bytes read per run are spent): not read", cmp.Or(e.Limit, maxFileSize), maxTotal)
	}
	return "unreadable: " + e.Err.Error()
}

func (e *EntryError) Unwrap() error { return e.Err }

// ReadDir reads the pki dir into a Store: every regular file at its top level and in etcd/ (the
// only places vcluster and k0s keep PKI files), each once, through os.Root, at most maxFileSize
// bytes. Nothing that is not a regular file is opened or followed: a symlink, FIFO, socket,
// device or directory where a file is expected becomes an EntryError for that path. A missing
// dir is a Store that is not Present.
func ReadDir(dir string) (Store, error) {
	st := Store{Source: SourceDisk, Files: map[string][]byte{}, Errors: map[string]error{}, Dir: dir}
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
	budget := maxTotal
	if err := readLevel(root, ".", &st, &budget); err != nil {
		return st, fmt.Errorf("read pki dir %s: %w", dir, err)
	}
	if fi, err := root.Lstat("etcd"); err == nil && fi.IsDir() {
		if err := readLevel(root, "etcd", &st, &budget); err != nil {
			st.Errors["etcd"] = &EntryError{Kind: KindDir, Reason: ReasonUnreadable, Err: err}
		}
	}
	return st, nil
}

// readLevel reads the entries of one directory (not recursively) into st: every entry the
// layout names, then at most maxUnknown others, in name order, within the byte budget.
func readLevel(root *os.Root, dir string, st *Store, budget *int) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	var known, unknown []fs.DirEntry
	skipped := 0
	for {
		batch, err := d.ReadDir(1024)
		for _, e := range batch {
			if _, ok := roleOf(path.Join(dir, e.Name())); ok {
				known = append(known, e)
			} else if len(unknown) < maxUnknown {
				unknown = append(unknown, e)
			} else {
				skipped++
			}
		}
		if errors.Is(err, io.EOF) || len(batch) == 0 {
			break
		}
		if err != nil {
			return err
		}
	}
	st.Skipped += skipped
	byName := func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) }
	slices.SortFunc(known, byName)
	slices.SortFunc(unknown, byName)
	for _, e := range append(known, unknown...) {
		p := path.Join(dir, e.Name())
		switch {
		case e.Type().IsRegular():
			data, err := readRegular(root, p, min(*budget, maxFileSize))
			if err != nil {
				st.Errors[p] = err
				continue
			}
			*budget -= len(data)
			st.Files[p] = data
		case e.IsDir():
			// etcd/ is read by ReadDir; another directory is reported only where a file is
			// expected (a directory named like a PKI file).
			if _, known := roleOf(p); known {
				st.Errors[p] = &EntryError{Kind: KindDir, Reason: ReasonNotRegular}
			}
		case e.Type()&fs.ModeSymlink != 0:
			link, _ := root.Readlink(p)
			st.Errors[p] = &EntryError{Kind: KindSymlink, Link: link, Reason: ReasonNotRegular}
		default:
			st.Errors[p] = &EntryError{Kind: KindOther, Reason: ReasonNotRegular}
		}
	}
	return nil
}

// readRegular opens p through the root without blocking (O_NONBLOCK: an entry swapped for a FIFO
// after the directory was listed opens at once instead of waiting for a writer), checks on the
// open file that it is still a regular file, and reads at most limit bytes. The bound is the
// caller's, chosen per kind of file: a PKI file is a few KiB (maxFileSize, and what is left of the
// run's budget), a backup's secret.json as large as a Secret can be (maxSecretJSON).
func readRegular(root *os.Root, p string, limit int) ([]byte, error) {
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, &EntryError{Kind: KindSymlink, Reason: ReasonNotRegular}
		}
		return nil, &EntryError{Kind: KindRegular, Reason: ReasonUnreadable, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &EntryError{Kind: KindRegular, Reason: ReasonUnreadable, Err: err}
	}
	if !fi.Mode().IsRegular() {
		k := KindOther
		if fi.IsDir() {
			k = KindDir
		}
		return nil, &EntryError{Kind: k, Reason: ReasonNotRegular}
	}
	if fi.Size() > int64(limit) {
		return nil, &EntryError{Kind: KindRegular, Reason: ReasonTooLarge, Limit: limit}
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, &EntryError{Kind: KindRegular, Reason: ReasonUnreadable, Err: err}
	}
	if len(data) > limit {
		return nil, &EntryError{Kind: KindRegular, Reason: ReasonTooLarge, Limit: limit}
	}
	return data, nil
}

// ReadFile reads one file under dir with ReadDir's rules (through os.Root, regular files only,
// never blocking, size-limited). A missing file returns an error wrapping fs.ErrNotExist.
func ReadFile(dir, rel string) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if _, err := root.Lstat(rel); err != nil {
		return nil, err
	}
	return readRegular(root, rel, maxFileSize)
}
