package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
)

// userRequests is one user's entry in the requests.json that benchtool serve writes from the
// apiserver's audit log.
type userRequests struct {
	Total int            `json:"total"`
	ByReq map[string]int `json:"byRequest"`
}

type summary struct {
	median, p90, cpu, rssMiB float64 // ms, ms, ms, MiB
}

// stats: median and p90 (nearest rank) of wall time, median CPU time, and the peak RSS over
// every measured run.
func stats(r row) summary {
	n := len(r.Runs)
	if n == 0 {
		return summary{}
	}
	wall := make([]float64, n)
	cpu := make([]float64, n)
	var rss int64
	for i, x := range r.Runs {
		wall[i] = float64(x.WallNS) / 1e6
		cpu[i] = float64(x.CPUNS) / 1e6
		rss = max(rss, x.MaxRSSKB)
	}
	slices.Sort(wall)
	slices.Sort(cpu)
	return summary{
		median: median(wall),
		p90:    wall[int(math.Ceil(0.9*float64(n)))-1],
		cpu:    median(cpu),
		rssMiB: float64(rss) / 1024,
	}
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// report prints the results file as two Markdown tables: the healthy-start comparison and the
// growth of `check` with the number of certificates.
func report(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	resultsPath := fs.String("results", "", "JSON lines written by benchtool time (required)")
	requestsPath := fs.String("requests", "", "requests.json written by benchtool serve")
	baseline := fs.String("baseline", "", "label of the row the others are compared with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *resultsPath == "" {
		return errors.New("-results is required")
	}
	rows, err := readRows(*resultsPath)
	if err != nil {
		return err
	}
	reqs := map[string]userRequests{}
	if *requestsPath != "" {
		b, err := os.ReadFile(*requestsPath)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &reqs); err != nil {
			return err
		}
	}
	var base *summary
	for _, r := range rows {
		if r.Label == *baseline {
			s := stats(r)
			base = &s
		}
	}

	fmt.Fprintln(w, "| what | runs | median wall | p90 wall | median CPU | peak RSS | API requests per run | speed-up vs shell: wall (CPU) | load |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	var scaling []row
	seen := map[string]bool{}
	for _, r := range rows {
		if r.Certs > 0 {
			scaling = append(scaling, r)
			continue
		}
		s := stats(r)
		req := "0 (no API)"
		if r.User != "" {
			if u, ok := reqs[r.User]; ok {
				req = fmt.Sprintf("%.2f", float64(u.Total)/float64(len(r.Runs)))
				if seen[r.User] {
					req += " (user shared: see breakdown)"
				}
				seen[r.User] = true
			} else {
				req = "?"
			}
		}
		ratio := "–"
		if base != nil && s.median > 0 && s.cpu > 0 {
			ratio = fmt.Sprintf("%.1f× (%.1f×)", base.median/s.median, base.cpu/s.cpu)
		}
		fmt.Fprintf(w, "| %s | %d | %.1f ms | %.1f ms | %.1f ms | %.1f MiB | %s | %s | %.1f→%.1f |\n",
			r.Label, len(r.Runs), s.median, s.p90, s.cpu, s.rssMiB, req, ratio, r.LoadBefore, r.LoadAfter)
	}
	if len(reqs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Requests the apiserver's audit log recorded per user (the warm-up runs ran as <user>-warmup):")
		for _, u := range slices.Sorted(maps.Keys(reqs)) {
			ur := reqs[u]
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(ur.ByReq)) {
				parts = append(parts, fmt.Sprintf("%d× %s", ur.ByReq[k], k))
			}
			fmt.Fprintf(w, "- %s: %d in all: %s\n", u, ur.Total, strings.Join(parts, ", "))
		}
	}
	if len(scaling) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| what | certificates | files | runs | median wall | p90 wall | median CPU | peak RSS | median wall per cert | marginal cost per extra cert | load |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	slices.SortStableFunc(scaling, func(a, b row) int { return a.Certs - b.Certs })
	var prev *row
	for i, r := range scaling {
		s := stats(r)
		marginal := "–"
		if prev != nil {
			ps := stats(*prev)
			marginal = fmt.Sprintf("%.0f µs", (s.median-ps.median)*1000/float64(r.Certs-prev.Certs))
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.1f ms | %.1f ms | %.1f ms | %.1f MiB | %.0f µs | %s | %.1f→%.1f |\n",
			r.Label, r.Certs, r.Files, len(r.Runs), s.median, s.p90, s.cpu, s.rssMiB,
			s.median*1000/float64(r.Certs), marginal, r.LoadBefore, r.LoadAfter)
		prev = &scaling[i]
	}
	return nil
}

func readRows(path string) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, sc.Err()
}
