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

// exporterValues is x509-exporter-values-k0s.yaml as the exporter's chart reads it: the host paths
// each hostPath DaemonSet watches (watchDirectories and watchFiles, which the chart's templates
// join into the one file source of its config).
type exporterValues struct {
	SecretsExporter   struct{ Enabled bool } `json:"secretsExporter"`
	HostPathsExporter struct {
		DaemonSets map[string]struct {
			WatchDirectories []string `json:"watchDirectories"`
			WatchFiles       []string `json:"watchFiles"`
		} `json:"daemonSets"`
	} `json:"hostPathsExporter"`
}

func readExporterValues(t *testing.T) (v exporterValues, paths []string) {
	t.Helper()
	b, err := os.ReadFile("x509-exporter-values-k0s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for _, ds := range v.HostPathsExporter.DaemonSets {
		paths = append(paths, ds.WatchDirectories...)
		paths = append(paths, ds.WatchFiles...)
	}
	slices.Sort(paths)
	return v, paths
}

// TestExporterValuesForK0s checks what x509-exporter-values-k0s.yaml makes the exporter watch,
// on every run: each host path is a certificate file of certguard's layout (pki/layout.go) under a
// vcluster pod's pki dir, every certificate file of the layout is watched on each kind of volume
// (server.crt among them, which the exporter's k0s example misses), and each glob matches where
// the pki dir really is. TestExporterValuesRenderThroughChart holds the exporter's own chart to
// turning these values into exactly these paths.
func TestExporterValuesForK0s(t *testing.T) {
	v, paths := readExporterValues(t)
	if v.SecretsExporter.Enabled {
		t.Error("secretsExporter is enabled: the values are for the hostPath DaemonSet alone")
	}
	if n := len(v.HostPathsExporter.DaemonSets); n != 1 {
		t.Fatalf("%d hostPath DaemonSets, want 1", n)
	}
	checkWatchedAgainstLayout(t, paths)
}

// TestExporterValuesRenderThroughChart renders x509-exporter-values-k0s.yaml through x509-
// certificate-exporter's own chart (exporterTag) and checks that its config's one file source
// watches the values' host paths, no more and no fewer (mapped back through the chart's
// pathMappings), from one DaemonSet and no Secrets Deployment.
func TestExporterValuesRenderThroughChart(t *testing.T) {
	_, want := readExporterValues(t)
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
	src := config.Sources[0]
	var got []string
	for _, in := range src.Paths {
		host := in
		for _, m := range src.PathMappings {
			if rest, ok := strings.CutPrefix(in, m.To+"/"); ok {
				host = m.From + "/" + rest
			}
		}
		if host == in {
			t.Errorf("%s: under no pathMapping of the rendered config", in)
		}
		got = append(got, host)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the rendered config watches (host paths)\n%v\nwant the values'\n%v", got, want)
	}
	t.Logf("%s@%s: %d paths rendered", exporterModule, exporterTag, len(got))
}

// checkWatchedAgainstLayout holds host paths to the layout: see TestExporterValuesForK0s.
func checkWatchedAgainstLayout(t *testing.T, paths []string) {
	t.Helper()
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

	watched := map[string][]string{} // host volume glob (up to k0s/pki/) -> files under it
	for _, host := range paths {
		vol, rel, ok := strings.Cut(host, "/k0s/pki/")
		if !ok {
			t.Errorf("%s: not under a k0s/pki/ dir", host)
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
	t.Logf("%d paths watched, %d certificate files of the layout on each of %d kinds of volume", len(paths), len(certFiles), len(watched))
}
