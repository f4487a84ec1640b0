package pki

import (
	"strings"
	"time"
)

// LastRepairAnnotation is written on the Secret by a leaf repair, in the same update that removes
// the keys: a RepairRecord, "<RFC3339 time> <decision>".
const LastRepairAnnotation = "certguard.dev/last-repair"

// RenewNowAnnotation is an operator's request for a renewal now, an RFC 3339 time (kubectl
// annotate secret <release>-certs certguard.dev/renew-now=$(date -u +%FT%TZ)): the fleet books
// the vcluster on the next opening, and the init container judges every k0s leaf due while the
// request is newer than the last leaf repair (RenewNowRequested), so it is void once served.
const RenewNowAnnotation = "certguard.dev/renew-now"

// RepairRecord is the value of LastRepairAnnotation: when a repair finished and what it decided.
// kube writes it (Format) and the fleet and the restart record read it (ParseRepairRecord): this
// is its one codec.
type RepairRecord struct {
	At       time.Time
	Decision Decision
}

// Format is the annotation's value: the time in UTC to the second, a space, the decision.
func (r RepairRecord) Format() string {
	if r.IsZero() {
		return ""
	}
	s := r.At.UTC().Format(time.RFC3339)
	if r.Decision != "" {
		s += " " + string(r.Decision)
	}
	return s
}

// ParseRepairRecord reads an annotation's value; false (and a zero record) when its time does not
// parse, which reads as no repair recorded.
func ParseRepairRecord(v string) (RepairRecord, bool) {
	at, decision, _ := strings.Cut(strings.TrimSpace(v), " ")
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return RepairRecord{}, false
	}
	return RepairRecord{At: t, Decision: Decision(strings.TrimSpace(decision))}, true
}

// IsZero reports whether no repair is recorded.
func (r RepairRecord) IsZero() bool { return r.At.IsZero() }

// MarshalText is Format, so that a record in JSON (`certguard fleet -o json`'s lastRepair) reads
// as the annotation does.
func (r RepairRecord) MarshalText() ([]byte, error) { return []byte(r.Format()), nil }

// UnmarshalText is ParseRepairRecord; a value that does not parse reads as no record.
func (r *RepairRecord) UnmarshalText(b []byte) error {
	*r, _ = ParseRepairRecord(string(b))
	return nil
}

// RenewNowRequested reports whether the Secret carries a renew-now request newer than its last
// leaf repair: the init container then judges every k0s leaf due.
func RenewNowRequested(ann map[string]string) bool {
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(ann[RenewNowAnnotation]))
	last, _ := ParseRepairRecord(ann[LastRepairAnnotation])
	return err == nil && t.After(last.At)
}
