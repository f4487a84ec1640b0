package watch

import (
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/fsnotify/fsnotify"
)

// Dir keeps a pki.Store of the pki dir current from fsnotify events: no polling. It watches the
// dir, its subdirectories and the nearest existing ancestor, so it sees the dir appear (first
// start), vanish (a full reset moves it away) and come back (k0s recreates it). Bursts are
// debounced, but never for longer than MaxWait; only the files named by events are read again,
// and the whole dir only when a directory itself appeared or went.
//
// A directory is watched by inode, not by name: after `mv pki pki.prev && mv pki.new pki` (a full
// reset or a restore, seen from the side) the name is the same and the inode is not, so every
// watch is checked against the inode now at its path and re-added where it differs.
type Dir struct {
	Path     string
	Debounce time.Duration
	// MaxWait bounds the debounce: a file rewritten every 100 ms must not hold back a change
	// elsewhere for ever.
	MaxWait time.Duration
	Log     *slog.Logger

	w       *fsnotify.Watcher
	watched map[string]fileID // the directories watched, and the inode each was watched as
	mu      sync.Mutex        // guards store: Run updates it while the sidecar reads it
	store   pki.Store
	dirty   map[string]bool
	rescan  bool
}

// NewDir starts watching and reads the dir once.
func NewDir(path string, debounce time.Duration, log *slog.Logger) (*Dir, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	d := &Dir{Path: filepath.Clean(path), Debounce: debounce, MaxWait: 5 * debounce, Log: log, w: w,
		watched: map[string]fileID{}, dirty: map[string]bool{}, rescan: true}
	d.flush()
	return d, nil
}

// Close stops watching.
func (d *Dir) Close() error { return d.w.Close() }

// Store is a copy of the current content of the dir.
func (d *Dir) Store() pki.Store {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.store
	st.Files, st.Errors = maps.Clone(st.Files), maps.Clone(st.Errors)
	return st
}

// Run forwards a signal on changed after each debounced burst of events, until done closes. A
// burst ends after Debounce without events, or MaxWait after its first event, whichever is first.
func (d *Dir) Run(done <-chan struct{}, changed chan<- struct{}, onErr func(error)) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var first time.Time // the first event not flushed yet; zero: none pending
	arm := func() {
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		timer.Reset(max(0, min(d.Debounce, first.Add(d.MaxWait).Sub(now))))
	}
	for {
		select {
		case <-done:
			return
		case ev, ok := <-d.w.Events:
			if !ok {
				return
			}
			d.note(ev)
			arm()
		case err, ok := <-d.w.Errors:
			if !ok {
				return
			}
			// An overflowed queue loses events: read everything again.
			d.rescan = true
			onErr(err)
			arm()
		case <-timer.C:
			first = time.Time{}
			d.flush()
			select {
			case changed <- struct{}{}:
			case <-done:
				return
			}
		}
	}
}

// note records what an event makes stale.
func (d *Dir) note(ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	rel, err := filepath.Rel(d.Path, name)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		// An event on an ancestor or the dir itself: it may have appeared, gone or been renamed.
		if _, watched := d.watched[d.Path]; name == d.Path || strings.HasPrefix(d.Path, name+string(filepath.Separator)) || !watched {
			d.rescan = true
		}
		return
	}
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(name); err == nil && fi.IsDir() {
			d.rescan = true // a new subdirectory needs a watch and a full read
			return
		}
	}
	if _, watched := d.watched[name]; watched && (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) {
		d.rescan = true
		return
	}
	d.dirty[filepath.ToSlash(rel)] = true
}

// flush reads what is stale and brings the set of watches up to date.
func (d *Dir) flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rescan {
		// Watches first, then the read: a file created in between is seen by one or the other.
		d.syncWatches()
		st, err := pki.ReadDir(d.Path)
		if err != nil {
			st = pki.Store{Source: pki.SourceDisk, Files: map[string][]byte{}, Errors: map[string]error{".": err}}
		}
		d.store, d.rescan, d.dirty = st, false, map[string]bool{}
		return
	}
	for rel := range d.dirty {
		data, err := pki.ReadFile(d.Path, filepath.FromSlash(rel))
		delete(d.store.Files, rel)
		delete(d.store.Errors, rel)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			d.store.Errors[rel] = err
		default:
			d.store.Files[rel] = data
		}
	}
	d.dirty = map[string]bool{}
}

// syncWatches watches the pki dir and every directory below it, or, while it does not exist, its
// nearest existing ancestor; and always its parent, to see it renamed away and its name come
// back. A watch stays only while fsnotify still has it (it drops the watch of a directory moved
// away) and the inode at its path is the one it was added for.
func (d *Dir) syncWatches() {
	want := map[string]fileID{}
	anc := filepath.Dir(d.Path)
	for {
		if id, ok := dirID(anc); ok {
			want[anc] = id
			break
		}
		next := filepath.Dir(anc)
		if next == anc {
			break
		}
		anc = next
	}
	if _, ok := dirID(d.Path); ok {
		filepath.WalkDir(d.Path, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				if id, ok := dirID(p); ok {
					want[p] = id
				}
			}
			return nil
		})
	}
	live := map[string]bool{}
	for _, p := range d.w.WatchList() {
		live[p] = true
	}
	for p, id := range d.watched {
		if wid, ok := want[p]; !ok || wid != id || !live[p] {
			_ = d.w.Remove(p) // fails harmlessly for a watch fsnotify already dropped
			delete(d.watched, p)
		}
	}
	for p, id := range want {
		if _, ok := d.watched[p]; !ok {
			if err := d.w.Add(p); err != nil {
				d.Log.Warn("cannot watch directory", "path", p, "err", err)
				continue
			}
			d.watched[p] = id
		}
	}
}

// fileID is a directory's identity: the same path may name another directory after a rename.
type fileID struct{ dev, ino uint64 }

func dirID(p string) (fileID, bool) {
	fi, err := os.Stat(p)
	if err != nil || !fi.IsDir() {
		return fileID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, true
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, true
}
