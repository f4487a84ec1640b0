package charts_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// imageGoal is issue #6's limit for the image's uncompressed size: 20 MB (19.07 MiB). Measured
// 14.4 MiB once package kube stopped linking k8s.io/api and protobuf was bumped (it was 20.7 MiB).
const imageGoal = 20_000_000

// TestImage builds the image with .ci/image.sh (no container engine: crane appends the static
// binary to an empty base) and inspects the tarball as a runtime would load it.
func TestImage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "certguard.tar")
	r := mustRun(t, []string{"VERSION=v0.0.0-test"}, "bash", filepath.Join("..", ".ci", "image.sh"), out, "certguard:test")
	t.Logf(".ci/image.sh: %v", r.took.Round(time.Millisecond))

	files := readTar(t, out)
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 || !reflect.DeepEqual(manifest[0].RepoTags, []string{"certguard:test"}) {
		t.Fatalf("manifest.json: %+v, want one image tagged certguard:test", manifest)
	}
	var config struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			Entrypoint []string          `json:"Entrypoint"`
			Cmd        []string          `json:"Cmd"`
			User       string            `json:"User"`
			Env        []string          `json:"Env"`
			Labels     map[string]string `json:"Labels"`
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(files[manifest[0].Config], &config); err != nil {
		t.Fatalf("config: %v", err)
	}
	if !reflect.DeepEqual(config.Config.Entrypoint, []string{"/certguard"}) {
		t.Errorf("entrypoint %q, want [/certguard]", config.Config.Entrypoint)
	}
	if config.OS != "linux" || config.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", config.OS, config.Architecture, runtime.GOARCH)
	}
	if u := config.Config.User; u != "" && u != "0" && u != "0:0" && u != "root" {
		t.Errorf("user %q: the init container runs as root", u)
	}
	// The same runtime settings as the Dockerfile's final stage, the reference build.
	df := dockerfileFinalStage(t)
	if want := df["ENTRYPOINT"]; want != nil && !reflect.DeepEqual(config.Config.Entrypoint, want) {
		t.Errorf("entrypoint %q, the Dockerfile says %q", config.Config.Entrypoint, want)
	}
	if want := df["CMD"]; !reflect.DeepEqual(config.Config.Cmd, want) {
		t.Errorf("cmd %q, the Dockerfile says %q", config.Config.Cmd, want)
	}
	if want := df["USER"]; len(want) == 1 && config.Config.User != want[0] {
		t.Errorf("user %q, the Dockerfile says %q", config.Config.User, want[0])
	}
	if len(config.RootFS.DiffIDs) != len(manifest[0].Layers) {
		t.Errorf("%d diff_ids for %d layers", len(config.RootFS.DiffIDs), len(manifest[0].Layers))
	}

	// The filesystem: every layer, uncompressed.
	var size, compressed int64
	fsys := map[string]*tar.Header{}
	var binary []byte
	for _, l := range manifest[0].Layers {
		compressed += int64(len(files[l]))
		tr := tar.NewReader(gunzip(t, files[l]))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l, err)
			}
			name := path.Clean("/" + h.Name)
			fsys[name] = h
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			size += int64(len(b))
			if name == "/certguard" {
				binary = b
			}
		}
	}
	t.Logf("image: %d file(s), %.1f MiB uncompressed (limit 20 MB), %.1f MiB compressed",
		len(fsys), float64(size)/(1<<20), float64(compressed)/(1<<20))
	if size > imageGoal {
		t.Errorf("the image is %d bytes uncompressed, over 20 MB", size)
	}
	h := fsys["/certguard"]
	if h == nil || h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 || h.Uid != 0 {
		t.Fatalf("/certguard is %+v, want an executable regular file owned by root", h)
	}
	for name := range fsys {
		if base := path.Base(name); base == "sh" || base == "bash" || base == "busybox" || strings.HasPrefix(name, "/bin/") {
			t.Errorf("the image has %s: no shell is needed or wanted", name)
		}
	}
	if len(fsys) != 1 {
		t.Errorf("the image has %d files, want only /certguard: %v", len(fsys), fsys)
	}

	// Static: no program interpreter, no shared libraries, so it runs on an empty base.
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		t.Fatalf("/certguard is not ELF: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/certguard has a program interpreter: it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("/certguard needs %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("/certguard has a symbol table: not built with -s -w")
	}

	// And it runs (the entrypoint, as a runtime would call it).
	bin := filepath.Join(t.TempDir(), "certguard")
	if err := os.WriteFile(bin, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	v := mustRun(t, nil, bin, "version")
	if got, _, _ := strings.Cut(v.stdout, "\n"); got != "certguard v0.0.0-test" {
		t.Errorf("certguard version: first line %q, want the version image.sh stamped (certguard v0.0.0-test)", got)
	}
}

// readTar reads every file of a tar into memory.
func readTar(t *testing.T, p string) map[string][]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b
	}
}

func gunzip(t *testing.T, b []byte) io.Reader {
	t.Helper()
	z, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	return z
}

// dockerfileFinalStage reads USER, ENTRYPOINT and CMD (exec form) of the Dockerfile's last stage.
func dockerfileFinalStage(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if errors.Is(err, fs.ErrNotExist) {
		t.Log("no Dockerfile to compare with")
		return map[string][]string{}
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		instr, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			out = map[string][]string{}
		case "USER":
			out["USER"] = []string{strings.TrimSpace(arg)}
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(arg), &v); err != nil {
				t.Fatalf("Dockerfile %s %s: not the exec form: %v", instr, arg, err)
			}
			out[strings.ToUpper(instr)] = v
		}
	}
	return out
}
