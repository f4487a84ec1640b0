package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/certguard/certguard/pki"
)

// The writers of check's, repair's and the demo's results: for people (k3s's table, the plan)
// and for programs (indented JSON). pki decides; this only prints.

// dateLayout is k3s's `certificate check` layout.
const dateLayout = "Jan 02, 2006 15:04 MST"

// tableStatus maps a Status to the k3s column value.
func tableStatus(s pki.Status) string {
	switch s {
	case pki.StatusOK:
		return "OK"
	case pki.StatusDue:
		return "WARNING"
	case pki.StatusNotYetValid:
		return "NOT YET VALID"
	}
	return strings.ToUpper(strings.ReplaceAll(string(s), "-", " "))
}

// writeTable prints the certificates of a report in k3s's layout, plus where disk and Secret
// disagree. Keys and public keys appear only when something is wrong with them.
func writeTable(w io.Writer, r *pki.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILENAME\tSUBJECT\tUSAGES\tEXPIRES\tRESIDUAL TIME\tSTATUS\tDISK/SECRET")
	for _, f := range r.Files {
		if f.Cert == nil && f.Status == pki.StatusOK {
			if f.Drift == pki.DriftSame || f.Drift == pki.DriftNone {
				continue
			}
		}
		subject, usage, expires, residual := "-", "-", "-", "-"
		if f.Cert != nil {
			subject = f.Cert.Subject
			usage = strings.Join(f.Cert.Usages, ",")
			expires = f.Cert.NotAfter.UTC().Format(dateLayout)
			residual = pki.Residual(f.Cert.NotAfter.Sub(r.Now))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Path, subject, orDash(usage), expires, residual, status(r, f), driftText(f))
	}
	return tw.Flush()
}

func driftText(f pki.File) string {
	switch f.Drift {
	case pki.DriftNone:
		return "-"
	case pki.DriftStale:
		return "stale in Secret (k0s re-signs)"
	case pki.DriftDiffers:
		if f.Newer != "" {
			return "differs (" + string(f.Newer) + " newer)"
		}
		return "differs"
	}
	return string(f.Drift)
}

// status is a row's STATUS: a row k0s writes anew at the next start says so, so that an
// EXPIRED admin.conf after a repair does not read as a repair that failed.
func status(r *pki.Report, f pki.File) string {
	s := tableStatus(f.Status)
	if f.Status != pki.StatusOK && r.RewrittenAtBoot(f) {
		s += " (k0s rewrites at boot)"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeJSON writes v indented.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writePlan prints a plan for people.
func writePlan(w io.Writer, p pki.Plan) {
	fmt.Fprintf(w, "decision: %s (strategy %s)\n", p.Decision, p.Strategy)
	for _, s := range p.Why {
		fmt.Fprintf(w, "  why: %s\n", s)
	}
	for _, s := range p.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", s)
	}
	if p.Breaks != "" {
		fmt.Fprintf(w, "  breaks: %s\n", p.Breaks)
	}
	if p.Refusal != nil {
		fmt.Fprintf(w, "  refused: %s\n", p.Refusal)
	}
	for i, s := range p.Steps {
		target := s.Path
		switch {
		case len(s.Keys) > 0:
			target = p.Secret.Ref() + " keys " + strings.Join(s.Keys, ",")
		case s.Action == pki.ActionDeleteSecret:
			target = p.Secret.Ref()
		case s.Action == pki.ActionMovePKI:
			target = p.PKIDir
		}
		fmt.Fprintf(w, "  %2d. %-18s %s\n", i+1, s.Action, target)
	}
}
