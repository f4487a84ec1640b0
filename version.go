package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"

	"github.com/certguard/certguard/exporter"
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

// exporterBuild is the build x509_exporter_build_info shows, the same as `certguard version`'s.
func exporterBuild() exporter.Build {
	v := buildVersionInfo()
	return exporter.Build{Version: v.Version, Commit: v.Commit, Date: v.Date}
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
// `certguard <version>`, as it always was.
type versionCmd struct{ OutputFormat }

func (c *versionCmd) flags(fs *flag.FlagSet) { c.OutputFormat.flags(fs) }
func (c *versionCmd) validate() error        { return c.OutputFormat.validate() }

func (c *versionCmd) run(_ context.Context, o streams) int {
	stdout, stderr := o.stdout, o.stderr
	v := buildVersionInfo()
	switch c.Output {
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
	}
	return exitOK
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
