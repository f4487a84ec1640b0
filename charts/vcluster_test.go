package charts_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestValuesWithVclusterCharts renders vcluster's own charts with the values files and checks
// the pod and the Role they produce, then validates the whole render against the test apiserver.
// vcluster's chart is not vendored into this repository (it is another project's template code):
// the test takes it, at each release's tag, from the module github.com/loft-sh/vcluster as the Go
// module proxy serves it (`go mod download`; the zip holds chart/ and charts/k0s, 11 MB a
// version, cached in the module cache like every other module). That proxy is what CI reaches,
// where charts.loft.sh and GitHub are not. CERTGUARD_VCLUSTER_GIT, a loft-sh/vcluster git clone
// (bare is fine), is read instead when it is set.
func TestValuesWithVclusterCharts(t *testing.T) {
	src := os.Getenv("CERTGUARD_VCLUSTER_GIT")
	for _, c := range []struct {
		tag, path string
		v019      bool
	}{
		{"v0.19.7", "charts/k0s", true},
		{"v0.20.0", "chart", false},
		{"v0.25.0", "chart", false},
	} {
		var chart string
		if src != "" {
			chart = extractChart(t, src, c.tag, c.path)
		} else {
			chart = moduleChart(t, "github.com/loft-sh/vcluster", c.tag, c.path)
		}
		for _, f := range valuesFiles {
			if f.v019 != c.v019 {
				continue
			}
			t.Run(c.tag+"/"+f.name, func(t *testing.T) {
				repair, watch, _, _ := loadValues(t, f)
				ns := namespace(t, "vcluster")
				r := mustRun(t, nil, helmBin, "template", "my-vcluster", chart, "-n", ns, "-f", filepath.Join("vcluster-values", f.name))
				objs := parseDocs(t, r.stdout)
				var sts, role obj
				for _, o := range objs {
					switch str(o, "kind") {
					case "StatefulSet":
						sts = o
					case "Role":
						role = o
					}
				}
				if sts == nil || role == nil {
					t.Fatalf("no StatefulSet or Role in the render")
				}
				spec := get(sts, "spec", "template", "spec")
				var inits []string
				for _, c := range get(spec, "initContainers").([]any) {
					inits = append(inits, str(c, "name"))
				}
				if i, j := slices.Index(inits, "certguard"), slices.Index(inits, "vcluster"); i < 0 || j < 0 || i > j {
					t.Errorf("init containers %v: certguard must run before vcluster's k0s copy", inits)
				}
				cg := container(spec, "initContainers", "certguard")
				for _, k := range []string{"image", "command", "args", "securityContext", "volumeMounts", "resources"} {
					if !reflect.DeepEqual(cg[k], repair[k]) {
						t.Errorf("rendered init container %s = %v, the values file says %v", k, cg[k], repair[k])
					}
				}
				if _, ok := cg["env"]; ok {
					t.Errorf("the init container has env %v", cg["env"])
				}
				vols := []string{}
				for _, v := range get(sts, "spec", "volumeClaimTemplates").([]any) {
					vols = append(vols, str(v, "metadata", "name"))
				}
				for _, v := range get(spec, "volumes").([]any) {
					vols = append(vols, str(v, "name"))
				}
				if !slices.Contains(vols, "data") {
					t.Errorf("no volume named data in %v", vols)
				}
				if f.watch {
					w := container(spec, "containers", "certguard-watch")
					if w == nil || !reflect.DeepEqual(w["args"], watch["args"]) || !reflect.DeepEqual(w["volumeMounts"], watch["volumeMounts"]) {
						t.Errorf("sidecar %v does not match the values file", w)
					}
				}
				if syncer := container(spec, "containers", "syncer"); syncer != nil {
					for _, a := range strs(syncer, "args") {
						if strings.HasPrefix(a, "--plugins") {
							t.Errorf("the syncer waits for a legacy plugin: %s", a)
						}
					}
				}
				found := false
				for _, rule := range get(role, "rules").([]any) {
					if reflect.DeepEqual(rule, obj{"apiGroups": []any{""}, "resources": []any{"events"}, "verbs": []any{"create"}}) {
						found = true
					}
				}
				if !found {
					t.Errorf("vcluster's Role has no events create rule: %v", get(role, "rules"))
				}
				serverDryRun(t, objs)
			})
		}
	}
}

func container(spec any, list, name string) obj {
	cs, _ := get(spec, list).([]any)
	for _, c := range cs {
		if str(c, "name") == name {
			return c.(obj)
		}
	}
	return nil
}

// moduleChart copies the chart at path of a module's release tag, from the Go module proxy's
// copy, into a temp dir (the module cache is read-only).
func moduleChart(t *testing.T, module, tag, path string) string {
	t.Helper()
	dir, err := moduleDir(module, tag)
	if err != nil {
		t.Fatal(err)
	}
	return copyChart(t, dir, path)
}

// moduleDir downloads a module at a version through the Go module proxy and returns its directory
// in the module cache.
func moduleDir(module, tag string) (string, error) {
	tmp, err := os.MkdirTemp("", "module")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "mod", "download", "-json", module+"@"+tag)
	cmd.Dir = tmp // no go.mod here: the project's own module is left alone
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	jsonErr := json.Unmarshal(out, &mod) // -json reports a failure in Error, with exit status 1
	if err != nil || jsonErr != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s %s", module, tag, err, mod.Error, stderr.String())
	}
	return mod.Dir, nil
}

// copyChart copies the chart at path of a module's directory into a temp dir.
func copyChart(t *testing.T, modDir, path string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(modDir, filepath.FromSlash(path)))); err != nil {
		t.Fatal(err)
	}
	return dir
}

// extractChart writes the chart at path of tag in the git repository src into a temp dir.
func extractChart(t *testing.T, src, tag, path string) string {
	t.Helper()
	cmd := exec.Command("git", "-C", src, "archive", "--format=tar", tag+":"+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git archive %s:%s: %v\n%s", tag, path, err, stderr.String())
	}
	dir := filepath.Join(t.TempDir(), filepath.Base(path))
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("archive entry %q leaves the chart dir", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
					err = os.WriteFile(p, b, 0o644)
				}
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
