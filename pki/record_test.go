package pki_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
)

// TestRepairRecordCodec: the last-repair annotation as kube writes it reads back as written, in
// the annotation and in JSON, and a value that is no record reads as none.
func TestRepairRecordCodec(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := pki.RepairRecord{At: at.In(time.FixedZone("CET", 3600)), Decision: pki.DecideLeaves}
	if got := rec.Format(); got != "2026-01-02T03:04:05Z leaves" {
		t.Fatalf("Format = %q", got)
	}
	back, ok := pki.ParseRepairRecord(rec.Format())
	if !ok || !back.At.Equal(at) || back.Decision != pki.DecideLeaves {
		t.Fatalf("ParseRepairRecord = %+v, %v", back, ok)
	}
	for _, bad := range []string{"", "leaves", "2026-01-02 leaves", "yesterday"} {
		if r, ok := pki.ParseRepairRecord(bad); ok || !r.IsZero() || r.Format() != "" {
			t.Errorf("ParseRepairRecord(%q) = %+v, %v; want none", bad, r, ok)
		}
	}
	type row struct {
		LastRepair pki.RepairRecord `json:"lastRepair,omitzero"`
	}
	b, _ := json.Marshal(row{rec})
	if string(b) != `{"lastRepair":"2026-01-02T03:04:05Z leaves"}` {
		t.Fatalf("JSON %s", b)
	}
	if b, _ := json.Marshal(row{}); string(b) != `{}` {
		t.Fatalf("JSON of no record: %s", b)
	}
	var r row
	if err := json.Unmarshal([]byte(`{"lastRepair":"2026-01-02T03:04:05Z leaves"}`), &r); err != nil || r.LastRepair.Format() != rec.Format() {
		t.Fatalf("unmarshal: %+v, %v", r, err)
	}
}

// TestRenewNowRequested: a request counts while it is newer than the last leaf repair.
func TestRenewNowRequested(t *testing.T) {
	repaired := pki.RepairRecord{At: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), Decision: pki.DecideLeaves}.Format()
	cases := []struct {
		name string
		ann  map[string]string
		want bool
	}{
		{"none", nil, false},
		{"never repaired", map[string]string{pki.RenewNowAnnotation: "2026-04-01T00:00:00Z"}, true},
		{"served", map[string]string{pki.RenewNowAnnotation: "2026-04-01T00:00:00Z", pki.LastRepairAnnotation: repaired}, false},
		{"newer", map[string]string{pki.RenewNowAnnotation: " 2026-06-01T00:00:00Z ", pki.LastRepairAnnotation: repaired}, true},
		{"not a time", map[string]string{pki.RenewNowAnnotation: "now"}, false},
	}
	for _, c := range cases {
		if got := pki.RenewNowRequested(c.ann); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
