// Package charts_test checks what charts/ ships: the vcluster values files that add certguard to
// a vcluster (charts/vcluster-values/), and the add-on chart (charts/certguard/). Everything runs
// for real: the certguard binary, helm (built from the Go module proxy by .ci/tools.sh), kubectl,
// and a kube-apiserver + etcd with RBAC (kube/kubetest).
package charts_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/kube/kubetest"
	"github.com/certguard/certguard/pki/pkigen"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Shared by every test of the package, set up once in TestMain.
var (
	env             *kubetest.Env
	certguardBin    string
	helmBin         string
	kubectlBin      string
	adminKubeconfig string
	workDir         string
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	var err error
	if workDir, err = os.MkdirTemp("", "certguard-charts-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(workDir)
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "charts tests: %s: %v\n", what, err)
		return 1
	}
	if helmBin, err = tool("helm"); err != nil {
		return fail("helm", err)
	}
	if kubectlBin, err = findKubectl(); err != nil {
		return fail("kubectl", err)
	}
	if certguardBin, err = kubetest.BuildCertguard(workDir); err != nil {
		return fail("build certguard", err)
	}
	if env, err = kubetest.Start(); err != nil {
		return fail("kube-apiserver", err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop kube-apiserver:", err)
		}
	}()
	if adminKubeconfig, err = env.Kubeconfig(workDir, "admin", "system:masters"); err != nil {
		return fail("admin kubeconfig", err)
	}
	return m.Run()
}

// tool returns the path of a pinned Go tool, built and cached by .ci/tools.sh ($HELM wins for
// helm, as .ci/run exports it).
func tool(name string) (string, error) {
	if p := os.Getenv(strings.ToUpper(name)); p != "" && name == "helm" {
		return p, nil
	}
	cmd := exec.Command("bash", filepath.Join("..", ".ci", "tools.sh"), name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("bash .ci/tools.sh %s: %w\n%s", name, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// findKubectl prefers a kubectl within version skew of the 1.34 test apiserver.
func findKubectl() (string, error) {
	for _, p := range []string{"/usr/lib/google-cloud-sdk/bin/kubectl.1.33"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("kubectl")
}

// result is what a finished command did.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
	maxRSS         int64 // bytes
}

// run runs a command with this process's environment minus KUBECONFIG and CERTGUARD_*, so that
// only its arguments (and env) decide which cluster and settings it uses.
func run(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return r
}

// cleanEnv is this process's environment minus KUBECONFIG and CERTGUARD_*.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBECONFIG=") && !strings.HasPrefix(e, "CERTGUARD_") {
			env = append(env, e)
		}
	}
	return env
}

// startCertguard starts the certguard binary with args in cleanEnv; done gets its Wait error
// once it has exited.
func startCertguard(t *testing.T, args []string) (cmd *exec.Cmd, stderr *bytes.Buffer, done <-chan error) {
	t.Helper()
	cmd = exec.Command(certguardBin, args...)
	cmd.Env = cleanEnv()
	stderr = new(bytes.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	return cmd, stderr, ch
}

// runMeasured is run plus the command's peak RSS, through GNU time: Go starts children with
// vfork, so their own rusage carries this (large) test process's peak and is no measure. It is 0
// when /usr/bin/time is missing.
func runMeasured(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		t.Log("no /usr/bin/time: peak RSS not measured")
		return run(t, env, name, args...)
	}
	out := filepath.Join(t.TempDir(), "rss")
	r := run(t, env, "/usr/bin/time", append([]string{"-f", "%M", "-o", out, name}, args...)...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	kib, err := strconv.ParseInt(lastLine(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("GNU time wrote %q: %v", b, err)
	}
	r.maxRSS = kib << 10
	return r
}

// mustRun runs a command and fails the test unless it exits 0.
func mustRun(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	r := run(t, env, name, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout:\n%s\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// obj is one Kubernetes object as parsed YAML.
type obj = map[string]any

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// parseDocs splits a multi-document YAML stream into objects, skipping empty documents.
func parseDocs(t *testing.T, stream string) []obj {
	t.Helper()
	var out []obj
	for _, doc := range docSep.Split(stream, -1) {
		var o obj
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("parse YAML: %v\n%s", err, doc)
		}
		if len(o) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// get walks a parsed YAML tree: get(o, "spec", "groups", 0, "rules").
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func strs(v any, path ...any) []string {
	l, _ := get(v, path...).([]any)
	var out []string
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func keys(v any) []string {
	m, _ := v.(map[string]any)
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// manifest is a SHA-256 (plus mode) of every file under dir, to prove a directory unchanged.
func manifest(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			m[rel+"/"] = info.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		m[rel] = info.Mode().String() + " " + hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// k0sLeafFiles are the 14 files a leaf repair removes (issue #3; vcluster's K0sFiles).
var k0sLeafFiles = []string{
	"admin.crt", "admin.key", "ccm.conf", "ccm.crt", "ccm.key", "konnectivity.conf", "konnectivity.crt",
	"konnectivity.key", "k0s-api.crt", "k0s-api.key", "scheduler.crt", "scheduler.key", "server.crt", "server.key",
}

// expiredPKI lays out a vcluster v0.25-style PKI whose k0s leaves expired 35 days ago under
// root/data/k0s/pki, and creates its Secret <release>-certs in ns. It returns the pki dir and
// the Secret's data.
func expiredPKI(t *testing.T, ns, release string) (string, map[string][]byte) {
	t.Helper()
	now := time.Now()
	p, err := pkigen.Generate(pkigen.Options{Now: now, K0sIssued: now.Add(-400 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data", "k0s", "pki")
	if err := pkigen.WriteDir(dir, p.Files); err != nil {
		t.Fatal(err)
	}
	data := p.SecretData()
	for _, k := range k0sLeafFiles {
		if _, ok := data[k]; !ok {
			t.Fatalf("pkigen's Secret has no %s: the test's premise is wrong", k)
		}
	}
	_, err = env.Client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: release + "-certs", Namespace: ns},
		Data:       data,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return dir, data
}

func namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns, err := env.Namespace(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// ---------------------------------------------------------------------------------------------
// charts/vcluster-values/

// valuesFile is one of the files in charts/vcluster-values/.
type valuesFile struct {
	name  string
	v019  bool // legacy chart vcluster-k0s v0.19 (else vcluster v0.20–v0.25)
	watch bool // has the certguard watch sidecar
}

var valuesFiles = []valuesFile{
	{"vcluster-v0.20-v0.25.yaml", false, false},
	{"vcluster-v0.20-v0.25-watch.yaml", false, true},
	{"values-v0.19.yaml", true, false},
	{"values-v0.19-watch.yaml", true, true},
}

// The keys vcluster's charts render for an entry; any other key is silently dropped (or, with
// v0.20+'s values.schema.json, rejected). From vcluster v0.25.0 chart/values.schema.json
// ($defs.Plugins, $defs.Plugin) and v0.19.7 charts/k0s/templates/_plugin.tpl.
var (
	pluginsKeys    = []string{"name", "image", "imagePullPolicy", "config", "rbac", "command", "args", "securityContext", "resources", "volumeMounts"}
	v2PluginKeys   = append(slices.Clone(pluginsKeys), "version")
	legacyFileKeys = append(slices.Clone(pluginsKeys), "version", "env", "envFrom", "lifecycle", "livenessProbe", "readinessProbe", "startupProbe", "workingDir", "optional")
)

// loadValues parses a values file and returns the init container entry, the sidecar entry (nil
// when there is none), the parsed file and its text.
func loadValues(t *testing.T, f valuesFile) (repair, watch obj, all obj, text string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("vcluster-values", f.name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &all); err != nil {
		t.Fatalf("%s: %v", f.name, err)
	}
	initKey := "plugins"
	if f.v019 {
		initKey = "plugin"
	}
	repair, _ = get(all, initKey, "certguard").(obj)
	if repair == nil {
		t.Fatalf("%s: no %s.certguard entry", f.name, initKey)
	}
	watch, _ = get(all, "plugin", "certguard-watch").(obj)
	return repair, watch, all, string(b)
}

func TestValuesFilesAreAllTested(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("vcluster-values", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range valuesFiles {
		want = append(want, filepath.Join("vcluster-values", f.name))
	}
	sort.Strings(files)
	sort.Strings(want)
	if !reflect.DeepEqual(files, want) {
		t.Errorf("charts/vcluster-values has %v, the tests know %v: add new files to valuesFiles", files, want)
	}
}

// TestValuesFilesKeys checks everything about the values files that can be checked without
// vcluster's chart: the keys vcluster renders, the container settings, and the comments.
func TestValuesFilesKeys(t *testing.T) {
	for _, f := range valuesFiles {
		t.Run(f.name, func(t *testing.T) {
			repair, watch, all, text := loadValues(t, f)

			// Which vcluster keys exist at all.
			if f.v019 {
				if got := keys(all); !reflect.DeepEqual(got, []string{"plugin"}) {
					t.Errorf("top-level keys %v, want only plugin (v0.19 has no plugins: key)", got)
				}
				if v := str(repair, "version"); v != "v2" {
					t.Errorf("plugin.certguard.version = %q, want v2 (v2 + image = init container in v0.19)", v)
				}
				checkKeys(t, "plugin.certguard", repair, v2PluginKeys)
			} else {
				want := []string{"controlPlane", "plugins"}
				if f.watch {
					want = []string{"controlPlane", "plugin", "plugins"}
				}
				if got := keys(all); !reflect.DeepEqual(got, want) {
					t.Errorf("top-level keys %v, want %v", got, want)
				}
				if get(all, "controlPlane", "distro", "k0s", "enabled") != true {
					t.Error("controlPlane.distro.k0s.enabled is not true")
				}
				for name, e := range get(all, "plugins").(obj) {
					if _, ok := e.(obj)["env"]; ok {
						t.Errorf("plugins.%s has env: vcluster's plugins schema has no env (init containers get flags only)", name)
					}
					checkKeys(t, "plugins."+name, e.(obj), pluginsKeys)
				}
			}
			if _, ok := repair["env"]; ok {
				t.Error("the init container entry has env: vcluster does not render it; use flags")
			}

			// The init container.
			checkContainer(t, "repair", repair)
			args := strs(repair, "args")
			if len(args) == 0 || args[0] != "repair" {
				t.Errorf("init container args %q do not start with repair", args)
			}
			for _, a := range []string{"--vcluster-name=my-vcluster", "--pki-dir=/data/k0s/pki"} {
				if !slices.Contains(args, a) {
					t.Errorf("init container args %q lack %s", args, a)
				}
			}
			if m := findMount(repair, "data"); m != nil && m["readOnly"] == true {
				t.Error("the init container's data mount is read-only: repair removes files")
			}
			wantRule := []any{obj{"apiGroups": []any{""}, "resources": []any{"events"}, "verbs": []any{"create"}}}
			if got := get(repair, "rbac", "role", "extraRules"); !reflect.DeepEqual(got, wantRule) {
				t.Errorf("rbac.role.extraRules = %v, want exactly %v (what vcluster's Role lacks, nothing more)", got, wantRule)
			}

			// The sidecar.
			switch {
			case !f.watch && watch != nil:
				t.Error("a file without -watch has the watch sidecar")
			case !f.watch:
				if f.v019 && len(keys(get(all, "plugin"))) != 1 {
					t.Errorf("plugin: has %v, want only certguard", keys(get(all, "plugin")))
				}
			case watch == nil:
				t.Fatal("no plugin.certguard-watch entry")
			default:
				checkKeys(t, "plugin.certguard-watch", watch, legacyFileKeys)
				checkContainer(t, "watch", watch)
				if f.v019 {
					// v0.19: every legacy entry without optional is passed as --plugins=<name>
					// and waited for as a gRPC plugin.
					if v := str(watch, "version"); v == "v2" {
						t.Error("the v0.19 sidecar has version v2: that makes it an init container")
					}
					if watch["optional"] != true {
						t.Error("the v0.19 sidecar is not optional: the syncer would wait for it as a gRPC plugin")
					}
				} else {
					// v0.20–v0.25: LegacyOptions skips an entry only when version != "" and
					// not optional; the chart renders a sidecar for every version but v2.
					if v := str(watch, "version"); v != "v1" {
						t.Errorf("plugin.certguard-watch.version = %q, want v1", v)
					}
					if _, ok := watch["optional"]; ok {
						t.Error("plugin.certguard-watch has optional: with it, the syncer waits 10 min for a gRPC plugin")
					}
				}
				if str(watch, "image") != str(repair, "image") {
					t.Errorf("sidecar image %q != init container image %q", str(watch, "image"), str(repair, "image"))
				}
				wargs := strs(watch, "args")
				if len(wargs) == 0 || wargs[0] != "watch" {
					t.Errorf("sidecar args %q do not start with watch", wargs)
				}
				for _, a := range []string{"--vcluster-name=my-vcluster", "--listen=:9793"} {
					if !slices.Contains(wargs, a) {
						t.Errorf("sidecar args %q lack %s (the add-on chart's Service targets 9793)", wargs, a)
					}
				}
			}

			// The image is one thing to change: written once (a YAML anchor), used everywhere.
			image := str(repair, "image")
			if n := strings.Count(text, image); n != 1 {
				t.Errorf("the image %q is written %d times in the file, want once", image, n)
			}
			if !regexp.MustCompile(`^[a-z0-9.\-/:]+(:[\w.\-]+|@sha256:[0-9a-f]{64})$`).MatchString(image) {
				t.Errorf("image %q has no tag or digest", image)
			}

			// Every line says what it is for.
			for i, line := range strings.Split(text, "\n") {
				l := strings.TrimSpace(line)
				if l == "" || strings.HasPrefix(l, "#") {
					continue
				}
				if !strings.Contains(l, " #") {
					t.Errorf("line %d has no comment: %s", i+1, line)
				}
			}
		})
	}
}

func checkKeys(t *testing.T, what string, e obj, allowed []string) {
	t.Helper()
	for _, k := range keys(e) {
		if !slices.Contains(allowed, k) {
			t.Errorf("%s.%s: vcluster's chart does not render this key (it knows %v)", what, k, allowed)
		}
	}
}

func findMount(e obj, name string) obj {
	mounts, _ := e["volumeMounts"].([]any)
	for _, m := range mounts {
		if mm, _ := m.(obj); str(mm, "name") == name {
			return mm
		}
	}
	return nil
}

// checkContainer checks what both containers need: the entrypoint, root, the data volume, and
// small requests and limits.
func checkContainer(t *testing.T, what string, e obj) {
	t.Helper()
	if got := strs(e, "command"); !reflect.DeepEqual(got, []string{"/certguard"}) {
		t.Errorf("%s: command %q, want [/certguard] (without a command vcluster runs `sh -c cp ...`)", what, got)
	}
	if v, ok := get(e, "securityContext", "runAsUser").(float64); !ok || v != 0 {
		t.Errorf("%s: securityContext.runAsUser = %v, want 0 (the pki is root-owned, mode 0600)", what, get(e, "securityContext", "runAsUser"))
	}
	m := findMount(e, "data")
	if m == nil || str(m, "mountPath") != "/data" {
		t.Errorf("%s: no volumeMount of data at /data (got %v)", what, e["volumeMounts"])
	}
	for _, kind := range []string{"requests", "limits"} {
		for _, res := range []string{"cpu", "memory"} {
			s := str(e, "resources", kind, res)
			q, err := resource.ParseQuantity(s)
			if err != nil {
				t.Errorf("%s: resources.%s.%s = %q: %v", what, kind, res, s, err)
				continue
			}
			max := map[string]string{"cpu": "1", "memory": "256Mi"}[res]
			if q.Cmp(resource.MustParse(max)) > 0 {
				t.Errorf("%s: resources.%s.%s = %s is not small (> %s)", what, kind, res, s, max)
			}
		}
	}
	for _, res := range []string{"cpu", "memory"} {
		req, err1 := resource.ParseQuantity(str(e, "resources", "requests", res))
		lim, err2 := resource.ParseQuantity(str(e, "resources", "limits", res))
		if err1 == nil && err2 == nil && req.Cmp(lim) > 0 {
			t.Errorf("%s: %s request %s > limit %s", what, res, req.String(), lim.String())
		}
	}
}

// TestValuesFilesRepairArgs runs the real certguard binary with each file's init container args
// in --dry-run against the test apiserver: certguard accepts every flag, and --vcluster-name
// from the file names the Secret it plans to change.
func TestValuesFilesRepairArgs(t *testing.T) {
	for _, f := range valuesFiles {
		t.Run(f.name, func(t *testing.T) {
			repair, _, _, _ := loadValues(t, f)
			ns := namespace(t, "values")
			dir, data := expiredPKI(t, ns, "my-vcluster")
			before := manifest(t, filepath.Dir(dir))
			args := append(strs(repair, "args"), "--dry-run", "-o", "json",
				"--kubeconfig="+adminKubeconfig, "--namespace="+ns, "--pki-dir="+dir, "--pod-name=my-vcluster-0")
			r := run(t, nil, certguardBin, args...)
			if r.code != 0 {
				t.Fatalf("certguard %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
			var out struct {
				Plan struct {
					Decision string
					Secret   struct{ Namespace, Name string }
					Steps    []struct {
						Action string
						Keys   []string
					}
				}
				Applied bool
			}
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("-o json output: %v\n%s", err, r.stdout)
			}
			if out.Plan.Decision != "leaves" || out.Applied {
				t.Errorf("decision %q applied %v, want a leaves plan, not applied", out.Plan.Decision, out.Applied)
			}
			found := false
			for _, s := range out.Plan.Steps {
				if s.Action == "remove-secret-keys" {
					found = true
					if got := out.Plan.Secret.Namespace + "/" + out.Plan.Secret.Name; got != ns+"/my-vcluster-certs" {
						t.Errorf("the plan changes Secret %s, want %s/my-vcluster-certs (from --vcluster-name)", got, ns)
					}
					got := slices.Sorted(slices.Values(s.Keys))
					if want := slices.Sorted(slices.Values(k0sLeafFiles)); !reflect.DeepEqual(got, want) {
						t.Errorf("the plan removes keys %v, want the 14 k0s leaf keys %v", got, want)
					}
				}
			}
			if !found {
				t.Errorf("no remove-secret-keys step in the plan: %s", r.stdout)
			}
			if after := manifest(t, filepath.Dir(dir)); !reflect.DeepEqual(before, after) {
				t.Error("--dry-run changed the data dir")
			}
			sec, err := env.Client.CoreV1().Secrets(ns).Get(context.Background(), "my-vcluster-certs", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sec.Data, data) {
				t.Error("--dry-run changed the Secret")
			}
			t.Logf("certguard %s: exit 0 in %v", strings.Join(strs(repair, "args"), " "), r.took.Round(time.Millisecond))
		})
	}
}

// TestValuesFilesWatchArgs runs the real binary with each file's sidecar args, as the pod would,
// against an API server that cannot be reached (no cluster needed): the flags and their values
// are parsed and checked at start, so a value the binary refuses ("Caturday 02:00-04:00", a
// --restart-before above --renew-before) exits 2 at once, and a good set goes on to serve
// /healthz while its Secret watch retries. Appending --help, as this test once did, printed
// usage after parsing the flags but before checking their values.
func TestValuesFilesWatchArgs(t *testing.T) {
	for _, f := range valuesFiles {
		if !f.watch {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			_, watch, _, _ := loadValues(t, f)
			args := strs(watch, "args")
			if code, serving, stderr := startOffline(t, args); !serving {
				t.Errorf("certguard %s: exit %d before serving /healthz (2: a flag or value it refuses)\n%s", strings.Join(args, " "), code, stderr)
			}
		})
	}
	// The same start refuses what --help let through: the proof that the check above can fail.
	for _, bad := range [][]string{
		{"--restart-window=Caturday 02:00-04:00"},
		{"--restart-before=130d"}, // above --renew-before's 120d: the restart would renew nothing
	} {
		t.Run(bad[0], func(t *testing.T) {
			args := append([]string{"watch", "--vcluster-name=my-vcluster", "--restart-window=Sat 02:00-04:00"}, bad...)
			if code, serving, stderr := startOffline(t, args); serving || code != 2 {
				t.Errorf("certguard %s: exit %d (serving %v), want exit 2\n%s", strings.Join(args, " "), code, serving, stderr)
			}
		})
	}
}

// startOffline starts certguard with args plus a kubeconfig whose API server refuses every
// connection, an empty pki dir and a loopback listener (later flags win), and waits until it
// serves /healthz (then stops it: serving is true) or exits (code). Flags and values are
// checked before anything is served, so serving means the binary accepted them all.
func startOffline(t *testing.T, args []string) (code int, serving bool, stderr string) {
	t.Helper()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]
current-context: nowhere
users: [{name: nobody, user: {token: unused}}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(dir, "pki")
	if err := os.Mkdir(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	args = append(slices.Clone(args), "--kubeconfig="+kubeconfig, "--namespace=nowhere", "--pod-name=my-vcluster-0",
		"--pki-dir="+pki, "--listen="+addr, "--dry-run")
	cmd, errBuf, done := startCertguard(t, args)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		select {
		case <-done:
			return cmd.ProcessState.ExitCode(), false, errBuf.String()
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				serving = true
				break
			}
		}
	}
	_ = cmd.Process.Kill()
	<-done
	if !serving {
		t.Errorf("certguard %s: neither exited nor served /healthz within 20 s", strings.Join(args, " "))
	}
	return -1, serving, errBuf.String()
}

// yamlWriter returns a function that writes v as YAML to dir/name and returns the path: the
// rules and the promtool test files each rule test hands to promtool.
func yamlWriter(t *testing.T, dir string) func(name string, v any) string {
	return func(name string, v any) string {
		t.Helper()
		b, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}
