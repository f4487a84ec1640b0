package watch

import (
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

const day = 24 * time.Hour

// Sat 2026-11-28 is a Saturday.
var sat = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)

func report(t *testing.T, k0sIssued time.Time, now time.Time) *pki.Report {
	t.Helper()
	p, err := pkigen.Generate(pkigen.Options{Now: now, K0sIssued: k0sIssued})
	if err != nil {
		t.Fatal(err)
	}
	disk := pki.Store{Source: pki.SourceDisk, Present: true, Files: p.Files}
	return pki.Inspect(disk, pki.FromSecret(&pki.Secret{Data: p.SecretData()}), now, 120*day)
}

func TestEventerDeduplicates(t *testing.T) {
	now := sat
	var e Eventer
	e.Reminder = 6 * time.Hour
	ok := report(t, now.Add(-30*day), now)
	evs := e.Next(ok)
	if len(evs) != 1 || evs[0].Reason != kube.ReasonExpirationOK {
		t.Fatalf("first healthy report: %+v", evs)
	}
	if evs := e.Next(ok); len(evs) != 0 {
		t.Fatalf("same report again: %+v", evs)
	}
	due := report(t, now.Add(-300*day), now)
	evs = e.Next(due)
	if len(evs) != 6 || evs[0].Reason != kube.ReasonExpiryWarning || !strings.Contains(evs[0].Message, "will expire within 64 days at") {
		t.Fatalf("leaves turned due: %d events %+v", len(evs), evs)
	}
	due.Now = now.Add(time.Hour)
	if evs := e.Next(due); len(evs) != 0 {
		t.Fatalf("an hour later: %+v", evs)
	}
	due.Now = now.Add(7 * time.Hour)
	if evs := e.Next(due); len(evs) != 6 {
		t.Fatalf("reminder after 7 h: %d", len(evs))
	}
	ok.Now = now.Add(8 * time.Hour)
	if evs := e.Next(ok); len(evs) != 6 || evs[0].Reason != kube.ReasonExpirationOK {
		t.Fatalf("renewed: %+v", evs)
	}
}
