package kube

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPrefetch: each page is asked for once, the page after it is asked for before the caller
// wants it, a listing started over (410 Expired, then a first page again) never gets a page of
// the old one, and an error reaches the caller that wants that page.
func TestPrefetch(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	pages := map[string]string{"": "c1", "c1": "c2", "c2": ""} // continue token → the next one
	fail := map[string]bool{}
	fetch := func(o metav1.ListOptions) (*secretListJSON, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, o.Continue)
		if fail[o.Continue] {
			return nil, errors.New("expired")
		}
		l := &secretListJSON{}
		l.Metadata.Continue = pages[o.Continue]
		l.Metadata.ResourceVersion = "page:" + o.Continue
		return l, nil
	}
	got := func(p *prefetch, cont string) (string, error) {
		l, err := p.take(context.Background(), metav1.ListOptions{Continue: cont}, fetch)
		if err != nil {
			return "", err
		}
		return l.Metadata.ResourceVersion, nil
	}
	wantAsked := func(want ...string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		// The fetch ahead runs in the background: compare as sets, once it has run.
		a := slices.Clone(asked)
		slices.Sort(a)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(a, w) {
			t.Errorf("asked for %q, want %q", asked, want)
		}
	}

	p := &prefetch{}
	for _, c := range []string{"", "c1", "c2"} {
		if rv, err := got(p, c); err != nil || rv != "page:"+c {
			t.Fatalf("page %q: %q %v", c, rv, err)
		}
	}
	wantAsked("", "c1", "c2") // each once: c1 and c2 came from the fetch ahead

	// Started over after page 1: the page fetched ahead (c1) is not handed to the new listing.
	asked = nil
	p = &prefetch{}
	if _, err := got(p, ""); err != nil {
		t.Fatal(err)
	}
	if rv, err := got(p, ""); err != nil || rv != "page:" {
		t.Fatalf("first page again: %q %v", rv, err)
	}
	if rv, err := got(p, "c1"); err != nil || rv != "page:c1" {
		t.Fatalf("then c1: %q %v", rv, err)
	}
	if rv, err := got(p, "c2"); err != nil || rv != "page:c2" {
		t.Fatalf("then c2: %q %v", rv, err)
	}

	// The fetch ahead fails: the caller that wants that page gets the error.
	fail["c1"] = true
	p = &prefetch{}
	if _, err := got(p, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := got(p, "c1"); err == nil || err.Error() != "expired" {
		t.Fatalf("c1 fetched ahead failed: got %v", err)
	}
}
