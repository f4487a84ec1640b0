package kube

import "testing"

// The page buffers are reused from one page to the next (at most two kept) and all let go once
// a listing's last page is read.
func TestPageBuffers(t *testing.T) {
	var p pageBuffers
	a, b, c := p.get(), p.get(), p.get()
	a.WriteString("page")
	p.put(a, false)
	p.put(b, false)
	p.put(c, false)
	if len(p.free) != 2 {
		t.Fatalf("%d buffers kept, want 2", len(p.free))
	}
	if got := p.get(); got != b || p.get() != a || a.Len() != 0 {
		t.Fatal("a kept buffer is not handed out again, emptied")
	}
	p.put(a, false)
	p.put(b, true)
	if p.free != nil {
		t.Fatal("buffers kept after a listing's last page")
	}
}
