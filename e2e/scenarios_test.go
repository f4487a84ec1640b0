package e2e

import (
	"testing"
	"time"

	"github.com/certguard/certguard/pki/pkigen"
)

func TestSmokeBoot(t *testing.T) {
	s := newScenario(t, pkigen.Options{})
	cp := s.boot()
	t.Log(cp.Ports, cp.Attempts)
	_ = time.Now
}
