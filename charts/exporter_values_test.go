package charts_test

import (
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"sigs.k8s.io/yaml"
)

// The x509-certificate-exporter release whose chart renders x509-exporter-values-k0s.yaml: its
// Go module (the chart is chart/ at the tag, in the module's zip) and its tag.
const (
	exporterModule = "github.com/enix/x509-certificate-exporter/v4"
	exporterTag    = "v4.2.0"
)

// exporterChart is the exporter's chart at exporterTag: from CERTGUARD_X509_EXPORTER_GIT, a git
// clone of enix/x509-certificate-exporter, when it is set; else from the Go module proxy. The
// chart is another project's template code and is not kept in this repository. A proxy that
// refuses the module (403 or 404: a sandbox's allow-list) skips the test, saying how to run it.
func exporterChart(t *testing.T) string {
	t.Helper()
	if src := os.Getenv("CERTGUARD_X509_EXPORTER_GIT"); src != "" {
		return extractChart(t, src, exporterTag, "chart")
	}
	dir, err := moduleDir(exporterModule, exporterTag)
	if err != nil {
		if msg := err.Error(); strings.Contains(msg, "403 Forbidden") || strings.Contains(msg, "404 Not Found") {
			t.Skipf("the module proxy does not serve %s@%s here; set CERTGUARD_X509_EXPORTER_GIT to a clone: %v", exporterModule, exporterTag, err)
		}
		t.Fatal(err)
	}
	return copyChart(t, dir, "chart")
}

// TestExporterValuesForK0s renders x509-exporter-values-k0s.yaml through x509-certificate-
// exporter's own chart and checks what the rendered exporter config watches: each path is a
// certificate file of certguard's layout (pki/layout.go) under a vcluster pod's pki dir, every
// certificate file of the layout is watched on each kind of volume (server.crt among them, which
// the exporter's k0s example misses), and each glob matches where the pki dir really is.
func TestExporterValuesForK0s(t *testing.T) {
	chart := exporterChart(t)
	r := mustRun(t, nil, helmBin, "template", "x509", chart, "-n", "monitoring", "-f", "x509-exporter-values-k0s.yaml")
	var config struct {
		Sources []struct {
			Kind         string
			Paths        []string
			PathMappings []struct{ From, To string } `json:"pathMappings"`
		}
	}
	var daemonSets int
	for _, o := range parseDocs(t, r.stdout) {
		switch str(o, "kind") {
		case "ConfigMap":
			if err := yaml.Unmarshal([]byte(str(o, "data", "config.yaml")), &config); err != nil {
				t.Fatal(err)
			}
		case "DaemonSet":
			daemonSets++
		case "Deployment":
			t.Errorf("a Deployment rendered (%s): the Secrets exporter should be off", str(o, "metadata", "name"))
		}
	}
	if daemonSets != 1 || len(config.Sources) != 1 || config.Sources[0].Kind != "file" {
		t.Fatalf("%d DaemonSets, sources %+v: want one DaemonSet with one file source", daemonSets, config.Sources)
	}

	// The layout's files, as vcluster and k0s write them (pkigen), each with its role and format.
	p, err := pkigen.Generate(pkigen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	layout := map[string]pki.File{}
	var certFiles []string
	for _, f := range pki.Inspect(pki.Store{Present: true, Files: p.Files}, pki.Store{}, time.Now(), 0).Files {
		layout[f.Path] = f
		if f.Format() == pki.FormatCert && f.Role != pki.RoleUnknown {
			certFiles = append(certFiles, f.Path)
		}
	}

	src := config.Sources[0]
	watched := map[string][]string{} // host volume glob (up to k0s/pki/) -> files under it
	for _, in := range src.Paths {
		host := in
		for _, m := range src.PathMappings {
			if rest, ok := strings.CutPrefix(in, m.To+"/"); ok {
				host = m.From + "/" + rest
			}
		}
		vol, rel, ok := strings.Cut(host, "/k0s/pki/")
		if !ok || host == in {
			t.Errorf("%s: not under a mapped host path's k0s/pki/", in)
			continue
		}
		f, known := layout[rel]
		if !known || f.Role == pki.RoleUnknown || f.Format() != pki.FormatCert {
			t.Errorf("%s: %s is not a certificate file of the layout (role %q)", host, rel, f.Role)
		}
		watched[vol] = append(watched[vol], rel)
	}
	slices.Sort(certFiles)
	for vol, files := range watched {
		slices.Sort(files)
		if !slices.Equal(files, certFiles) {
			t.Errorf("%s: watches %v, want the layout's certificate files %v", vol, files, certFiles)
		}
	}
	// Where a vcluster pod's pki dir is on a node, for each kind of volume the values name.
	for _, real := range []string{
		"/var/lib/kubelet/pods/0d6a5c1e-2f4b-4c8e-9a7d-3b1f2e4d5c6a/volumes/kubernetes.io~empty-dir/data",
		"/opt/local-path-provisioner/pvc-0d6a5c1e-2f4b-4c8e-9a7d-3b1f2e4d5c6a_team-a_data-my-vcluster-0",
	} {
		n := 0
		for vol := range watched {
			if ok, err := path.Match(vol, real); err != nil {
				t.Fatal(err)
			} else if ok {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: matched by %d of the globs %v, want 1", real, n, slices.Collect(func(yield func(string) bool) {
				for v := range watched {
					if !yield(v) {
						return
					}
				}
			}))
		}
	}
	if len(watched) != 2 {
		t.Errorf("volume globs %d, want 2 (emptyDir, local-path)", len(watched))
	}
	t.Logf("%s@%s: %d paths watched, %d certificate files of the layout on each of %d kinds of volume", exporterModule, exporterTag, len(src.Paths), len(certFiles), len(watched))
}
