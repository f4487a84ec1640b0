package watch_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/watch"
)

// runDir watches dir (which need not exist yet) until the test ends.
func runDir(t *testing.T, dir string, debounce, maxWait time.Duration) *watch.Dir {
	t.Helper()
	d, err := watch.NewDir(dir, debounce, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if maxWait > 0 {
		d.MaxWait = maxWait
	}
	done := make(chan struct{})
	changed := make(chan struct{}, 100)
	go d.Run(done, changed, func(error) {})
	t.Cleanup(func() { close(done); d.Close() })
	return d
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// TestDirFollowsDirectorySwaps: a directory replaced under the same name (a full reset or a
// restore seen from the side: `mv pki pki.prev && mv pki.new pki`), moved away and back, or the
// same done to etcd/ or to the pki dir's parent, leaves the watch on the directory now at that
// name: a file written there afterwards shows.
func TestDirFollowsDirectorySwaps(t *testing.T) {
	p, _ := pkigen.Generate(pkigen.Options{})
	fresh, _ := pkigen.Generate(pkigen.Options{})
	cert := fresh.Files["apiserver.crt"]
	root := t.TempDir()
	k0s := filepath.Join(root, "data", "k0s")
	dir := filepath.Join(k0s, "pki")
	if err := pkigen.WriteDir(dir, p.Files); err != nil {
		t.Fatal(err)
	}
	d := runDir(t, dir, 20*time.Millisecond, 0)
	has := func(rel string, want []byte) func() bool {
		return func() bool { got, ok := d.Store().Files[rel]; return ok && string(got) == string(want) }
	}
	// Each step swaps, then writes a new file into what is now at the name: only a watch on the
	// new directory sees the write (the swap itself is seen through the parent either way).
	steps := []struct {
		name string
		swap func()
		file string
	}{
		{"pki swapped for pki.new", func() {
			if err := pkigen.WriteDir(dir+".new", fresh.Files); err != nil {
				t.Fatal(err)
			}
			mustRename(t, dir, dir+".prev")
			mustRename(t, dir+".new", dir)
		}, "late.crt"},
		{"pki moved away and back", func() {
			mustRename(t, dir, dir+".x")
			mustRename(t, dir+".x", dir)
		}, "back.crt"},
		{"etcd/ swapped for etcd.new", func() {
			if err := pkigen.WriteDir(filepath.Join(root, "etcd.new"), map[string][]byte{"ca.crt": fresh.Files["etcd/ca.crt"]}); err != nil {
				t.Fatal(err)
			}
			mustRename(t, filepath.Join(dir, "etcd"), filepath.Join(dir, "etcd.prev"))
			mustRename(t, filepath.Join(root, "etcd.new"), filepath.Join(dir, "etcd"))
		}, "etcd/late.crt"},
		{"the parent swapped", func() {
			if err := pkigen.WriteDir(filepath.Join(root, "k0s.new", "pki"), fresh.Files); err != nil {
				t.Fatal(err)
			}
			mustRename(t, k0s, k0s+".prev")
			mustRename(t, filepath.Join(root, "k0s.new"), k0s)
		}, "parent.crt"},
	}
	for _, s := range steps {
		s.swap()
		if err := os.WriteFile(filepath.Join(dir, s.file), cert, 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, s.name+": "+s.file+" written after it", has(s.file, cert))
		// And a rewrite of a file that was there: the watch is live, not a one-off rescan.
		if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte(s.name), 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, s.name+": ca.crt rewritten", has("ca.crt", []byte(s.name)))
	}
}

// TestDirDebounceHasAMaximumWait: a file rewritten every 20 ms, faster than the debounce, must
// not hold back a change elsewhere: the store shows it while the rewriting goes on.
func TestDirDebounceHasAMaximumWait(t *testing.T) {
	p, _ := pkigen.Generate(pkigen.Options{})
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pkigen.WriteDir(dir, p.Files); err != nil {
		t.Fatal(err)
	}
	d := runDir(t, dir, 200*time.Millisecond, 500*time.Millisecond)
	rewriteContinuously(t, filepath.Join(dir, "noise.crt"), 20*time.Millisecond, p.Files["ca.crt"], p.Files["server.crt"])
	time.Sleep(100 * time.Millisecond) // the noise has started
	start := time.Now()
	if err := os.WriteFile(filepath.Join(dir, "late.crt"), p.Files["ca.crt"], 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "late.crt while noise.crt is rewritten every 20 ms", func() bool { _, ok := d.Store().Files["late.crt"]; return ok })
	t.Logf("late.crt seen after %s (max wait 500ms, debounce 200ms)", time.Since(start).Round(time.Millisecond))
}

// rewriteContinuously writes path every interval, cycling through contents, until the test ends.
func rewriteContinuously(t *testing.T, path string, every time.Duration, contents ...[]byte) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			os.WriteFile(path, contents[i%len(contents)], 0o644)
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}
