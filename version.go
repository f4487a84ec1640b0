package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
)

// What the release build stamps (.ci/release.sh, the Dockerfile):
//
//	go build -trimpath -ldflags "-X main.version=v0.2.0 -X main.commit=<sha> -X main.date=<RFC 3339>"
//
// date is the commit's time, not the build's, so that two builds of one commit are identical.
// Unstamped builds fall back to what the Go toolchain recorded (vcs.revision, vcs.time).
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// versionInfo is what `certguard version` prints, as text or (-o json) as this struct.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
	// Deps are the main module's dependencies linked into the binary, module path -> version,
	// as the build info records them (a replaced module shows its replacement's version).
	Deps map[string]string `json:"deps"`
}

func buildVersionInfo() versionInfo {
	v := versionInfo{
		Version:   version,
		Commit:    commit,
		Date:      date,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
		Deps:      map[string]string{},
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && v.Commit == "":
			v.Commit = s.Value
		case s.Key == "vcs.time" && v.Date == "":
			v.Date = s.Value
		}
	}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		v.Deps[d.Path] = d.Version
	}
	return v
}

// versionCmd is `certguard version [-o text|json]`. The first line of the text form is
// `certguard <version>`, as it always was; output is the environment's CERTGUARD_OUTPUT.
func versionCmd(args []string, output string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&output, "o", output, "output: text or json")
	fs.StringVar(&output, "output", output, "output: text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "usage: certguard version [-o text|json]")
			return exitOK
		}
		return fail(stderr, usageError{"version: " + err.Error()})
	}
	if fs.NArg() > 0 {
		return fail(stderr, usageError{fmt.Sprintf("version: unexpected argument %q", fs.Arg(0))})
	}
	v := buildVersionInfo()
	switch output {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fail(stderr, fmt.Errorf("write version: %w", err))
		}
	case "text":
		fmt.Fprintln(stdout, "certguard", v.Version)
		fmt.Fprintln(stdout, "commit:  ", orUnknown(v.Commit))
		fmt.Fprintln(stdout, "date:    ", orUnknown(v.Date))
		fmt.Fprintln(stdout, "go:      ", v.GoVersion)
		fmt.Fprintln(stdout, "platform:", v.Platform)
		fmt.Fprintln(stdout, "deps:")
		for _, p := range slices.Sorted(maps.Keys(v.Deps)) {
			fmt.Fprintf(stdout, "  %s %s\n", p, v.Deps[p])
		}
	default:
		return fail(stderr, usageError{fmt.Sprintf("-o: must be text or json (got %q)", output)})
	}
	return exitOK
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
