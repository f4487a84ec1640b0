package charts_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestVersionAgrees: the committed VERSION file is the one place the released version is named
// (.ci/set-version.sh writes it and everything below, .ci/release.sh refuses to release another
// version). Every certguard image named in the values files, the README and docs/, the add-on chart's
// version and appVersion, and the krew manifest's version and archive URLs must say the same.
func TestVersionAgrees(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(b))
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(version) {
		t.Fatalf("VERSION %q: want vMAJOR.MINOR.PATCH[-PRE]", version)
	}
	const repo = "ghcr.io/certguard/certguard"
	imageRef := regexp.MustCompile(regexp.QuoteMeta(repo) + `(:[^\s"'` + "`" + `)]*|@)?`)

	files, err := filepath.Glob(filepath.Join("vcluster-values", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files: %v", err)
	}
	files = append(files, filepath.Join("..", "README.md"))
	// docs/ pages may name no image at all; those that do must name this one.
	docs, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs pages: %v", err)
	}
	for _, f := range append(files, docs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		refs := imageRef.FindAllString(string(b), -1)
		if len(refs) == 0 && !slices.Contains(docs, f) {
			t.Errorf("%s names no %s image", f, repo)
		}
		for _, ref := range refs {
			if ref == repo+"@" { // by digest (the README's crane digest): no tag to go stale
				continue
			}
			if ref != repo+":"+version {
				t.Errorf("%s names %s, VERSION says %s:%s (run bash .ci/set-version.sh %s)", f, ref, repo, version, version)
			}
		}
	}

	// The verification commands' v=vX.Y.Z, from which the chart and download URLs follow: in the
	// README's five lines and in docs/release.md's whole set.
	for _, f := range []string{"README.md", filepath.Join("docs", "release.md")} {
		b, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		vs := regexp.MustCompile(`(?m)^v=(\S*)`).FindAllSubmatch(b, -1)
		if len(vs) == 0 {
			t.Errorf("%s: no v=<version> line in the verification commands", f)
		}
		for _, m := range vs {
			if string(m[1]) != version {
				t.Errorf("%s: v=%s, VERSION says %s", f, m[1], version)
			}
		}
	}

	var chart struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	readYAML(t, filepath.Join("certguard", "Chart.yaml"), &chart)
	if chart.Version != strings.TrimPrefix(version, "v") || chart.AppVersion != version {
		t.Errorf("charts/certguard/Chart.yaml: version %q, appVersion %q; VERSION says %s", chart.Version, chart.AppVersion, version)
	}

	var plugin struct {
		Spec struct {
			Version   string `json:"version"`
			Platforms []struct {
				URI    string `json:"uri"`
				SHA256 string `json:"sha256"`
			} `json:"platforms"`
		} `json:"spec"`
	}
	readYAML(t, filepath.Join("..", "plugins", "certguard.yaml"), &plugin)
	if plugin.Spec.Version != version {
		t.Errorf("plugins/certguard.yaml: version %q, VERSION says %s", plugin.Spec.Version, version)
	}
	if len(plugin.Spec.Platforms) != 4 {
		t.Errorf("plugins/certguard.yaml: %d platforms, want linux and darwin × amd64 and arm64", len(plugin.Spec.Platforms))
	}
	for _, p := range plugin.Spec.Platforms {
		if !strings.Contains(p.URI, "/releases/download/"+version+"/kubectl-certguard_"+version+"_") {
			t.Errorf("plugins/certguard.yaml: uri %s is not the %s archive", p.URI, version)
		}
		// The template's placeholder, which .ci/release.sh replaces with the archive's sum.
		if !regexp.MustCompile(`^@SHA256:(linux|darwin)_(amd64|arm64)@$`).MatchString(p.SHA256) {
			t.Errorf("plugins/certguard.yaml: sha256 %q is not the placeholder release.sh fills", p.SHA256)
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
