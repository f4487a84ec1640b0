package watch_test

import (
	"os"
	"path/filepath"
	"slices"
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
// not hold back a change elsewhere: the store shows it within the max wait of its write while the
// rewriting goes on. The debounce (3 s) is set far above the bound asserted (the max wait plus
// 1 s for a loaded 2-core machine): the write of late.crt is itself an event, so the debounce
// alone could not show it before 3 s after that write, however the rewriter is scheduled, and a
// broken max wait cannot pass.
func TestDirDebounceHasAMaximumWait(t *testing.T) {
	const debounce, maxWait, allowance = 3 * time.Second, 500 * time.Millisecond, time.Second
	p, _ := pkigen.Generate(pkigen.Options{})
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pkigen.WriteDir(dir, p.Files); err != nil {
		t.Fatal(err)
	}
	d := runDir(t, dir, debounce, maxWait)
	rewriteContinuously(t, filepath.Join(dir, "noise.crt"), 20*time.Millisecond, p.Files["ca.crt"], p.Files["server.crt"])
	// The noise has reached the store (through the max wait too): it is running.
	eventually(t, "noise.crt in the store", func() bool { _, ok := d.Store().Files["noise.crt"]; return ok })
	start := time.Now()
	if err := os.WriteFile(filepath.Join(dir, "late.crt"), p.Files["ca.crt"], 0o644); err != nil {
		t.Fatal(err)
	}
	seen := seenWithin(t, debounce, func() bool { _, ok := d.Store().Files["late.crt"]; return ok })
	if seen > maxWait+allowance {
		t.Fatalf("late.crt seen %s after its write while noise.crt is rewritten every 20 ms; want within the max wait %s (+%s allowance)",
			seen.Round(time.Millisecond), maxWait, allowance)
	}
	t.Logf("late.crt seen %s after its write (max wait %s, debounce %s)", time.Since(start).Round(time.Millisecond), maxWait, debounce)
}

// seenWithin polls cond every millisecond and returns how long it took to hold; it fails the
// test when cond does not hold within limit.
func seenWithin(t *testing.T, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("not seen within %s", limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// noise is a file rewritten continuously, with the time of every write.
type noise struct {
	mu sync.Mutex
	at []time.Time
}

// longestQuiet is the longest time within [from, to] without a write: a debounce that long could
// have ended a burst in it.
func (n *noise) longestQuiet(from, to time.Time) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	longest, last := time.Duration(0), from
	for _, at := range append(slices.Clone(n.at), to) {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			at = to
		}
		longest, last = max(longest, at.Sub(last)), at
	}
	return longest
}

// rewriteContinuously writes path every interval, cycling through contents, until the test ends.
func rewriteContinuously(t *testing.T, path string, every time.Duration, contents ...[]byte) *noise {
	n := &noise{}
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
			n.mu.Lock()
			n.at = append(n.at, time.Now())
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
	return n
}
