package pki_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/certguard/certguard/pki"
)

func TestReadDirBadInput(t *testing.T) {
	p := genPKI(t, nil)
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		path  string
		want  string
	}{
		{"symlink out of the pki dir", func(t *testing.T, dir string) {
			outside := filepath.Join(filepath.Dir(dir), "outside.crt")
			os.WriteFile(outside, p.Files["ca.crt"], 0o644)
			os.Remove(filepath.Join(dir, "server.crt"))
			if err := os.Symlink(outside, filepath.Join(dir, "server.crt")); err != nil {
				t.Fatal(err)
			}
		}, "server.crt", "not followed"},
		{"absolute symlink to /etc", func(t *testing.T, dir string) {
			os.Symlink("/etc/hostname", filepath.Join(dir, "extra.crt"))
		}, "extra.crt", "not followed"},
		{"symlink to /dev/zero", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "server.key"))
			os.Symlink("/dev/zero", filepath.Join(dir, "server.key"))
		}, "server.key", "not followed"},
		{"symlink inside the dir", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "server.key"))
			os.Symlink("admin.key", filepath.Join(dir, "server.key"))
		}, "server.key", "not followed"},
		{"FIFO", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "pipe.crt"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "pipe.crt", "a special, not a regular file"},
		{"a directory where a file should be", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "admin.key"))
			os.Mkdir(filepath.Join(dir, "admin.key"), 0o700)
			os.WriteFile(filepath.Join(dir, "admin.key", "x"), nil, 0o600)
		}, "admin.key", "a dir, not a regular file"},
		{"file too large", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "huge.crt"), make([]byte, 2<<20), 0o600)
		}, "huge.crt", "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writePKI(t, p.Files)
			c.setup(t, dir)
			st, err := pki.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if c.want == "" {
				if _, ok := st.Files[c.path]; !ok {
					t.Fatalf("%s not read", c.path)
				}
				return
			}
			if err := st.Errors[c.path]; err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error for %s = %v, want %q", c.path, err, c.want)
			}
			if _, ok := st.Files[c.path]; ok {
				t.Fatalf("%s was read", c.path)
			}
		})
	}
}

func TestReadDirMissingIsAFirstStart(t *testing.T) {
	st, err := pki.ReadDir(filepath.Join(t.TempDir(), "pki"))
	if err != nil || st.Present {
		t.Fatalf("ReadDir(missing) = %+v, %v", st, err)
	}
}

func TestReadDirPathIsAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pki")
	os.WriteFile(f, nil, 0o600)
	if _, err := pki.ReadDir(f); !errors.Is(err, pki.ErrNotDir) {
		t.Fatalf("err = %v, want ErrNotDir", err)
	}
}

// An unreadable kept file is a corrupt row, and with expired leaves the leaf repair still goes
// ahead, with a warning: removing the expired k0s leaves does not make the kept file worse, and
// refusing (exit 3) would block every start of the cluster because of a file on the volume.
// Tests run as root, which reads any mode, so the unreadable file is a symlink loop: a symlink,
// never followed.
func TestUnreadableKeptFileDoesNotBlockARepair(t *testing.T) {
	p := genPKI(t, expiredLeaves)
	dir := writePKI(t, p.Files)
	os.Remove(filepath.Join(dir, "apiserver.key"))
	os.Symlink("apiserver.key", filepath.Join(dir, "apiserver.key"))
	secret := p.SecretData()
	delete(secret, "apiserver.key")
	r := inspect(t, dir, secret)
	if f, _ := r.File("apiserver.key"); f.Status != pki.StatusCorrupt || f.Reason != pki.ReasonNotRegular || f.Kind != pki.KindSymlink {
		t.Fatalf("apiserver.key = %+v", f)
	}
	plan := pki.BuildPlan(r, pki.Policy{Strategy: pki.StrategyAuto})
	if _, warned := plan.Has(pki.CodeKeptBroken); plan.Decision != pki.DecideLeaves || !warned {
		t.Fatalf("plan = %s, warnings %v; want a leaf repair and a kept-broken warning", plan.Decision, plan.Warnings)
	}
}
