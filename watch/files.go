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
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/fsnotify/fsnotify"
)

// Dir keeps a pki.Store of the pki dir current from fsnotify events: no polling. It watches the
// dir, its subdirectories and the nearest existing ancestor, so it sees the dir appear (first
// start), vanish (a full reset moves it away) and come back (k0s recreates it). Bursts are
// debounced; only the files named by events are read again, and the whole dir only when a
// directory itself appeared or went.
type Dir struct {
	Path     string
	Debounce time.Duration
	Log      *slog.Logger

	w       *fsnotify.Watcher
	watched map[string]bool
	mu      sync.Mutex // guards store: Run updates it while the sidecar reads it
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
	d := &Dir{Path: filepath.Clean(path), Debounce: debounce, Log: log, w: w, watched: map[string]bool{}, dirty: map[string]bool{}, rescan: true}
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

// Run forwards a signal on changed after each debounced burst of events, until done closes.
func (d *Dir) Run(done <-chan struct{}, changed chan<- struct{}, onErr func(error)) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-done:
			return
		case ev, ok := <-d.w.Events:
			if !ok {
				return
			}
			d.note(ev)
			timer.Reset(d.Debounce)
		case err, ok := <-d.w.Errors:
			if !ok {
				return
			}
			// An overflowed queue loses events: read everything again.
			d.rescan = true
			onErr(err)
			timer.Reset(d.Debounce)
		case <-timer.C:
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
		if name == d.Path || strings.HasPrefix(d.Path, name+string(filepath.Separator)) || !d.watched[d.Path] {
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
	if d.watched[name] && (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) {
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
// nearest existing ancestor; and always its parent, to see it renamed away.
func (d *Dir) syncWatches() {
	want := map[string]bool{}
	anc := filepath.Dir(d.Path)
	for {
		if fi, err := os.Stat(anc); err == nil && fi.IsDir() {
			want[anc] = true
			break
		}
		next := filepath.Dir(anc)
		if next == anc {
			break
		}
		anc = next
	}
	if fi, err := os.Stat(d.Path); err == nil && fi.IsDir() {
		filepath.WalkDir(d.Path, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				want[p] = true
			}
			return nil
		})
	}
	for p := range d.watched {
		if !want[p] {
			_ = d.w.Remove(p) // fails harmlessly for a dir that is gone
			delete(d.watched, p)
		}
	}
	for p := range want {
		if !d.watched[p] {
			if err := d.w.Add(p); err != nil {
				d.Log.Warn("cannot watch directory", "path", p, "err", err)
				continue
			}
			d.watched[p] = true
		}
	}
}
