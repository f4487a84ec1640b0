package pki_test

// Inputs a hostile or unlucky user leaves on the volume: key encodings Kubernetes reads fine,
// entries that are not regular files, a cluttered backup dir, an edited journal. Each was
// reproduced on main before the redesign (issue 10); each must now neither block a start, nor
// reset a good PKI, nor lose a byte.

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
	"k8s.io/client-go/util/keyutil"
)

// keyForms re-encodes a private key in every form that keyutil.ParsePrivateKeyPEM or
// crypto/tls accepts, built here with crypto/x509 and encoding/pem (never with the code under
// test). certPEM is the matching certificate, for the forms that put it first.
func keyForms(t testing.TB, keyPEM, certPEM []byte) map[string][]byte {
	t.Helper()
	b, _ := pem.Decode(keyPEM)
	var signer crypto.Signer
	switch b.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		signer = k
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		signer = k
	default:
		t.Fatalf("unexpected key block %s", b.Type)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	forms := map[string][]byte{
		"as written":                    keyPEM,
		"PKCS#8":                        enc("PRIVATE KEY", pkcs8),
		"certificate block first":       append(append([]byte{}, certPEM...), keyPEM...),
		"openssl bag attributes first":  append([]byte("Bag Attributes\n    localKeyID: 01 02 03\nKey Attributes: <No Attributes>\n"), keyPEM...),
		"PKCS#8 under the native label": enc(b.Type, pkcs8), // crypto/tls ignores the label
		"CRLF line endings":             []byte(strings.ReplaceAll(string(keyPEM), "\n", "\r\n")),
	}
	if b.Type == "EC PRIVATE KEY" {
		// `openssl ecparam -genkey` writes the curve parameters before the key.
		forms["EC PARAMETERS block first"] = append(enc("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), keyPEM...)
	}
	return forms
}

// kubernetesReads is the oracle: does keyutil (kube-apiserver, vcluster) or crypto/tls read it?
func kubernetesReads(certPEM, keyPEM []byte) bool {
	if _, err := keyutil.ParsePrivateKeyPEM(keyPEM); err == nil {
		return true
	}
	_, err := tls.X509KeyPair(certPEM, keyPEM)
	return err == nil
}

func TestKeyFormsKubernetesReadsAreNeverCorrupt(t *testing.T) {
	for _, rsa := range []bool{false, true} {
		p := genPKI(t, func(o *pkigen.Options) { o.Key = pkigentest.KeyFunc(rsa); expiredLeaves(o) })
		for name, form := range keyForms(t, p.Files["ca.key"], p.Files["ca.crt"]) {
			t.Run(fmt.Sprintf("rsa=%v/%s", rsa, name), func(t *testing.T) {
				// keyForms lists forms Kubernetes accepts; a form it refuses belongs in a test of
				// what certguard refuses, not here (it used to skip itself, and so proved nothing).
				if !kubernetesReads(p.Files["ca.crt"], form) {
					t.Fatalf("neither keyutil nor crypto/tls reads this form: keyForms must hold only forms to accept")
				}
				want, _ := tls.X509KeyPair(p.Files["ca.crt"], p.Files["ca.key"])
				got, err := pki.ParseKeyPEM(form)
				if err != nil || !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(want.PrivateKey.(crypto.Signer).Public()) {
					t.Fatalf("ParseKeyPEM = %v, %v; want the CA's public key", got, err)
				}
				// The same form as ca.key and sa.key, disk and Secret: the CA is good, so a leaf
				// repair (never a reset), and sa.key is not reported broken.
				files, secret := clone(p.Files), p.SecretData()
				saForms := keyForms(t, p.Files["sa.key"], p.Files["ca.crt"])
				for _, k := range []string{"ca.key", "sa.key"} {
					v := form
					if k == "sa.key" {
						v = saForms[name]
					}
					files[k], secret[k] = v, v
				}
				plan := pki.BuildPlan(inspect(t, writePKI(t, files), secret), pki.Policy{Strategy: pki.StrategyAuto, ClockKnown: true, MaxClockSkew: time.Minute})
				if plan.Decision != pki.DecideLeaves {
					t.Fatalf("decision %s, want leaves; why %v", plan.Decision, plan.Why)
				}
				if w, bad := plan.Has(pki.CodeKeptBroken); bad {
					t.Fatalf("kept file reported broken: %s", w)
				}
			})
		}
	}
}

// runWithin runs a repair and fails the test if it does not return within d: a FIFO opened for
// reading would block for ever.
func runWithin(t *testing.T, d time.Duration, r *pki.Repair) (*pki.Outcome, error) {
	t.Helper()
	type res struct {
		out *pki.Outcome
		err error
	}
	ch := make(chan res, 1)
	go func() {
		out, err := r.Run(context.Background())
		ch <- res{out, err}
	}()
	select {
	case x := <-ch:
		return x.out, x.err
	case <-time.After(d):
		t.Fatalf("repair still running after %s: it blocked on something on the volume", d)
		return nil, nil
	}
}

func TestOddLeafEntriesNeverBlock(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	// Only the disk has the leaves: vcluster would write the Secret's over them otherwise.
	for _, k := range pki.K0sLeafFiles {
		delete(f.data, k)
	}
	f.secret = pkigen.NewMemorySecret("ns", "vc-certs", f.data)
	f.secret.Clock = func() time.Time { return now }
	huge := make([]byte, 3<<20)
	copy(huge, "not a certificate")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"server.key", "server.crt", "admin.key", "ccm.conf", "k0s-api.crt"} {
		must(os.Remove(filepath.Join(f.dir, p)))
	}
	must(syscall.Mkfifo(filepath.Join(f.dir, "server.key"), 0o600))
	must(os.Symlink("/dev/zero", filepath.Join(f.dir, "server.crt")))
	must(os.MkdirAll(filepath.Join(f.dir, "admin.key", "inner"), 0o700))
	must(os.WriteFile(filepath.Join(f.dir, "admin.key", "inner", "note"), []byte("keep me"), 0o600))
	must(os.WriteFile(filepath.Join(f.dir, "ccm.conf"), huge, 0o600))
	must(os.Symlink("ca.key", filepath.Join(f.dir, "k0s-api.crt")))
	f.before = manifest(t, f.dir)
	r := f.repair(pki.StrategyAuto, nil)
	out, err := runWithin(t, 20*time.Second, r)
	if err != nil || out.Plan.Decision != pki.DecideLeaves {
		t.Fatalf("Run = %v, %v", out.Plan.Decision, err)
	}
	for _, p := range pki.K0sLeafFiles {
		if _, err := os.Lstat(filepath.Join(f.dir, p)); err == nil {
			t.Errorf("%s still in the pki dir", p)
		}
	}
	aside := filepath.Join(out.Backup, "aside")
	if b, err := os.ReadFile(filepath.Join(aside, "admin.key", "inner", "note")); err != nil || string(b) != "keep me" {
		t.Errorf("the directory at admin.key was not set aside whole: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(aside, "ccm.conf")); err != nil || sha256.Sum256(b) != sha256.Sum256(huge) {
		t.Errorf("the oversized ccm.conf was not set aside intact: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(aside, "k0s-api.crt")); err != nil || l != "ca.key" {
		t.Errorf("the symlink was not set aside as a symlink: %q %v", l, err)
	}
	if fi, err := os.Lstat(filepath.Join(aside, "server.key")); err != nil || fi.Mode().Type() != fs.ModeNamedPipe {
		t.Errorf("the FIFO was not set aside: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(f.dir, "ca.key")); len(b) == 0 {
		t.Error("ca.key, the symlink's target, was touched")
	}
	f.assertNothingLost(t)
}

// clutter is something a user, a hand copy or an interrupted run may leave in the backup dir.
var clutter = map[string]func(t *testing.T, backup string){
	"a file where the backup dir belongs": func(t *testing.T, backup string) {
		os.WriteFile(backup, []byte("not a dir"), 0o600)
	},
	"a timestamp dir without plan.json": func(t *testing.T, backup string) {
		os.MkdirAll(filepath.Join(backup, "20250101T000000Z", "pki"), 0o700)
		os.WriteFile(filepath.Join(backup, "20250101T000000Z", "pki", "ca.key"), []byte("hand copy"), 0o600)
	},
	"a timestamp dir with a garbage plan.json": func(t *testing.T, backup string) {
		os.MkdirAll(filepath.Join(backup, "20250102T000000Z"), 0o700)
		os.WriteFile(filepath.Join(backup, "20250102T000000Z", "plan.json"), []byte("{not json"), 0o600)
	},
	"a plan.json that is a FIFO": func(t *testing.T, backup string) {
		os.MkdirAll(filepath.Join(backup, "20250103T000000Z"), 0o700)
		syscall.Mkfifo(filepath.Join(backup, "20250103T000000Z", "plan.json"), 0o600)
	},
	"a timestamp name that is a file": func(t *testing.T, backup string) {
		os.MkdirAll(backup, 0o700)
		os.WriteFile(filepath.Join(backup, "20250104T000000Z"), []byte("x"), 0o600)
	},
	"a symlink named like a backup": func(t *testing.T, backup string) {
		os.MkdirAll(backup, 0o700)
		os.Symlink("/etc", filepath.Join(backup, "20250105T000000Z"))
	},
	"a half-pruned backup (killed during prune)": func(t *testing.T, backup string) {
		os.MkdirAll(filepath.Join(backup, "20250106T000000Z.prune", "pki"), 0o700)
	},
	"an unreadable backup dir": func(t *testing.T, backup string) {
		os.MkdirAll(backup, 0o700)
		os.WriteFile(filepath.Join(backup, "ca.crt"), []byte("user file"), 0o600)
	},
}

func TestBackupDirClutterNeverBlocks(t *testing.T) {
	for name, setup := range clutter {
		for _, gen := range []struct {
			name string
			opts func(*pkigen.Options)
			want pki.Decision
		}{{"healthy", nil, pki.DecideNothing}, {"expired leaves", expiredLeaves, pki.DecideLeaves}} {
			t.Run(name+"/"+gen.name, func(t *testing.T) {
				f := newFixture(t, gen.opts)
				setup(t, f.backup)
				userFiles := userManifest(t, f.backup)
				out, err := runWithin(t, 20*time.Second, f.repair(pki.StrategyAuto, nil))
				if err != nil || out.Plan.Decision != gen.want {
					t.Fatalf("Run = %s, %v; want %s and no error", out.Plan.Decision, err, gen.want)
				}
				if gen.want == pki.DecideNothing && !slices.Equal(slices.Sorted(keysOf(manifest(t, f.dir))), slices.Sorted(keysOf(f.before))) {
					t.Error("a healthy start changed the pki dir")
				}
				// Whatever the user put there is still there, or set aside next to it.
				for p, sum := range userFiles {
					if !holds(t, filepath.Dir(f.backup), sum) {
						t.Errorf("%s (a user's file) is gone", p)
					}
				}
				f.assertNothingLost(t)
			})
		}
	}
}

// userManifest is the digest of every regular file under dir (or of dir itself when a file).
func userManifest(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			sum := sha256.Sum256(b)
			out[p] = hex.EncodeToString(sum[:])
		}
		return nil
	})
	return out
}

// holds reports whether a regular file with this digest exists under dir.
func holds(t *testing.T, dir, sum string) bool {
	for _, s := range userManifest(t, dir) {
		if s == sum {
			return true
		}
	}
	return false
}

func keysOf[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestEditedJournalIsSetAsideNotRun: a run killed after its backup leaves a journal; an edited
// one must never be executed. Each edit names something outside the 14 k0s leaves.
func TestEditedJournalIsSetAsideNotRun(t *testing.T) {
	edits := map[string]func(p map[string]any, outside string){
		"remove-file of etcd's database": func(p map[string]any, outside string) {
			steps := p["steps"].([]any)
			steps[1].(map[string]any)["path"] = "../etcd/member/snap/db"
		},
		"remove-file of an absolute path": func(p map[string]any, outside string) {
			steps := p["steps"].([]any)
			steps[1].(map[string]any)["path"] = outside
		},
		"Secret keys ca.key and sa.key": func(p map[string]any, outside string) {
			steps := p["steps"].([]any)
			steps[0].(map[string]any)["keys"] = []string{"ca.key", "sa.key"}
		},
		"a move of the pki dir in a leaf repair": func(p map[string]any, outside string) {
			p["steps"] = append(p["steps"].([]any), map[string]any{"action": "move-pki"})
		},
		"another pki dir": func(p map[string]any, outside string) {
			p["pkiDir"] = filepath.Dir(outside)
		},
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, expiredLeaves)
			etcdDB := filepath.Join(filepath.Dir(f.dir), "etcd", "member", "snap", "db")
			os.MkdirAll(filepath.Dir(etcdDB), 0o700)
			os.WriteFile(etcdDB, []byte("etcd data"), 0o600)
			journal := crashedJournal(t, f, func(plan map[string]any) { edit(plan, etcdDB) })

			out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
			if err != nil || len(out.Resumed) != 0 {
				t.Fatalf("Run = resumed %v, %v; want the journal set aside, not run", out.Resumed, err)
			}
			if _, err := os.Stat(journal + ".invalid"); err != nil {
				t.Errorf("the edited journal was not set aside: %v", err)
			}
			if b, err := os.ReadFile(etcdDB); err != nil || string(b) != "etcd data" {
				t.Fatalf("etcd's database was touched: %v", err)
			}
			data := f.secretData(t)
			for _, k := range []string{"ca.key", "sa.key", "ca.crt"} {
				if string(data[k]) != string(f.data[k]) {
					t.Errorf("Secret key %s was touched", k)
				}
			}
			// A fresh plan still made the repair the cluster needs.
			if out.Plan.Decision != pki.DecideLeaves || !out.Applied {
				t.Errorf("fresh plan %s applied %v", out.Plan.Decision, out.Applied)
			}
			f.assertNothingLost(t)
		})
	}
}

// TestRepairPromises is the property: for random PKIs (healthy, leaves due, expired or from the
// future, CA expired; keys in the forms Kubernetes reads; on a persistent or an empty volume;
// with or without the Secret), random clutter in the backup dir, a node clock off the API
// server's or not, and a finished backup named in the future (written while the clock ran
// ahead) under a --keep-backups of 1 or 2, a repair keeps three promises:
//   - it never blocks a start for what it finds: no error, and a refusal only where the start
//     fails anyway (something expired by both clocks, the clock too far off to act);
//   - it never resets a PKI whose CA is good;
//   - it never misses a needed repair when the clock allows it, and never loses a byte: every
//     original byte is in place or in a backup, this run's backup included.
func TestRepairPromises(t *testing.T) {
	iterations := 40
	if testing.Short() {
		iterations = 8
	}
	states := []struct {
		name    string
		opts    func(*pkigen.Options)
		caGood  bool
		expired bool // the start fails without a repair
	}{
		{"healthy", nil, true, false},
		{"leaves due", func(o *pkigen.Options) { o.K0sIssued = now.Add(-300 * day) }, true, false},
		{"leaves expired", expiredLeaves, true, true},
		{"leaves from the future", func(o *pkigen.Options) { o.K0sIssued = now.Add(2 * time.Hour) }, true, false},
		{"CA expired", expiredCA, false, true},
	}
	// The API server's clock minus this node's; --max-clock-skew is 5m.
	skews := []time.Duration{0, 0, 2 * time.Minute, time.Hour, -time.Hour}
	clutterNames := slices.Sorted(keysOf(clutter))
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range iterations {
		st := states[rng.IntN(len(states))]
		rsa := rng.IntN(4) == 0
		emptyVolume := rng.IntN(4) == 0
		withSecret := emptyVolume || rng.IntN(3) > 0
		serverOffset := skews[rng.IntN(len(skews))]
		futureBackup := rng.IntN(3) == 0
		keep := 1 + rng.IntN(2)
		var cl []string
		for _, c := range clutterNames {
			if rng.IntN(3) == 0 {
				cl = append(cl, c)
			}
		}
		name := fmt.Sprintf("%d %s rsa=%v empty=%v secret=%v clutter=%d server=%s future-backup=%v keep=%d",
			i, st.name, rsa, emptyVolume, withSecret, len(cl), serverOffset, futureBackup, keep)
		t.Run(name, func(t *testing.T) {
			p := genPKI(t, func(o *pkigen.Options) {
				o.Key = pkigentest.KeyFunc(rsa)
				if st.opts != nil {
					st.opts(o)
				}
			})
			files := clone(p.Files)
			forms := keyForms(t, files["ca.key"], files["ca.crt"])
			formNames := slices.Sorted(keysOf(forms))
			files["ca.key"] = forms[formNames[rng.IntN(len(formNames))]]
			saForms := keyForms(t, files["sa.key"], files["ca.crt"])
			files["sa.key"] = saForms[formNames[rng.IntN(len(formNames))]]
			var data map[string][]byte
			if withSecret {
				data = pkigen.SecretData(files)
			}
			if emptyVolume {
				files = map[string][]byte{}
			}
			dir := writePKI(t, files)
			f := &fixture{dir: dir, backup: dir + ".old", data: data, before: manifest(t, dir)}
			f.secret = pkigen.NewMemorySecret("ns", "vc-certs", data)
			f.secret.Clock = func() time.Time { return now.Add(serverOffset) }
			if futureBackup {
				writeDoneBackup(t, f.backup, "20300101T000000Z", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
			}
			for _, c := range cl {
				clutter[c](t, f.backup)
			}
			r := f.repair(pki.StrategyAuto, nil)
			r.Exec.Keep = keep
			out, err := runWithin(t, 30*time.Second, r)
			if err != nil {
				t.Fatalf("repair failed: %v", err)
			}
			d := out.Plan.Decision
			clockOK := serverOffset.Abs() <= 5*time.Minute
			switch {
			case d == pki.DecideRefuse && (!st.expired || clockOK):
				t.Fatalf("a start that would not fail was refused: %v", out.Plan.Refusal)
			case st.name == "healthy" && d != pki.DecideNothing:
				t.Fatalf("healthy PKI: decision %s", d)
			case st.caGood && d == pki.DecideFull:
				t.Fatalf("a PKI whose CA is good was reset: %v", out.Plan.Why)
			case !st.caGood && clockOK && d != pki.DecideFull:
				t.Fatalf("an expired CA was not reset: %s %v", d, out.Plan.Why)
			case (st.name == "leaves due" || st.name == "leaves expired") && clockOK && d != pki.DecideLeaves:
				t.Fatalf("a needed leaf repair was missed: %s %v", d, out.Plan.Why)
			case st.expired && !clockOK && d != pki.DecideRefuse:
				t.Fatalf("a repair on a clock %s off, with the start failing anyway: %s, want refused", serverOffset, d)
			}
			if _, held := out.Plan.Has(pki.CodeRepairHeld); held != (d == pki.DecideNothing && st.name != "healthy") {
				t.Errorf("repair-held %v with decision %s in state %s", held, d, st.name)
			}
			if out.Applied {
				if _, err := os.Stat(filepath.Join(out.Backup, "plan.json")); err != nil {
					t.Errorf("this run's backup is gone: %v", err)
				}
			}
			f.assertNothingLost(t)
		})
	}
}

// TestVolumeSymlinksNeverBlockAHealthyStart: the data volume's own symlinks nest the backup dir
// inside the pki dir (pki.old → pki/old). No backup can be written there, so a needed repair
// fails before changing anything; a start that needs none goes on.
func TestVolumeSymlinksNeverBlockAHealthyStart(t *testing.T) {
	for _, gen := range []struct {
		name    string
		opts    func(*pkigen.Options)
		wantErr bool
	}{{"healthy", nil, false}, {"expired leaves", expiredLeaves, true}} {
		t.Run(gen.name, func(t *testing.T) {
			f := newFixture(t, gen.opts)
			os.Mkdir(filepath.Join(f.dir, "old"), 0o700)
			if err := os.Symlink(filepath.Join(f.dir, "old"), f.backup); err != nil {
				t.Fatal(err)
			}
			f.before = manifest(t, f.dir)
			out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
			if gen.wantErr != (err != nil) || (err != nil && !strings.Contains(err.Error(), "inside the pki dir")) {
				t.Fatalf("Run = %v, %v", out.Plan.Decision, err)
			}
			if !slices.Equal(slices.Sorted(keysOf(manifest(t, f.dir))), slices.Sorted(keysOf(f.before))) {
				t.Error("the pki dir changed")
			}
		})
	}
}

// TestPKIPathNotADirectoryNeverBlocks: a file where the pki dir belongs cannot be judged; the
// start goes on (exit 0) with the reason, nothing changed.
func TestPKIPathNotADirectoryNeverBlocks(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	os.RemoveAll(f.dir)
	os.WriteFile(f.dir, []byte("not a dir"), 0o600)
	out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil || out.Plan.Decision != pki.DecideNothing {
		t.Fatalf("Run = %s, %v", out.Plan.Decision, err)
	}
	if _, ok := out.Plan.Has(pki.CodeDiskUnreadable); !ok {
		t.Errorf("the plan does not say the pki dir could not be judged: %v", out.Plan.Why)
	}
	if len(f.secretData(t)) != len(f.data) {
		t.Error("the Secret changed")
	}
}

// TestJournalTurnedIntoAResetNeverRuns: a journal edited into a well-formed full reset (decision
// "full", one move-pki step) passes the layout check, but may change things only where a fresh
// plan calls for the same repair: here the CA is good, so it is abandoned, the pki dir stays,
// and the leaf repair the state needs is made.
func TestJournalTurnedIntoAResetNeverRuns(t *testing.T) {
	f := newFixture(t, expiredLeaves)
	journal := crashedJournal(t, f, func(plan map[string]any) {
		plan["decision"] = "full"
		plan["steps"] = []any{map[string]any{"action": "move-pki"}}
	})

	out, err := f.repair(pki.StrategyAuto, nil).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(journal, "abandoned")); err != nil {
		t.Errorf("the edited journal was not abandoned: %v", err)
	}
	if got := manifest(t, f.dir); got["ca.key"] != f.before["ca.key"] || got["ca.crt"] != f.before["ca.crt"] {
		t.Fatal("the pki dir was moved or its CA touched by an edited journal")
	}
	if out.Plan.Decision != pki.DecideLeaves || !out.Applied {
		t.Errorf("fresh plan %s applied %v, want the leaf repair", out.Plan.Decision, out.Applied)
	}
	f.assertNothingLost(t)
}

// crashedJournal kills a repair of f right after its backup, so that its journal is left
// unfinished, applies edit to that journal's plan.json, and returns the journal's directory.
func crashedJournal(t *testing.T, f *fixture, edit func(plan map[string]any)) string {
	t.Helper()
	errCrash := fmt.Errorf("crash")
	if _, err := f.repair(pki.StrategyAuto, func(s string) error {
		if s == "after-backup" {
			return errCrash
		}
		return nil
	}).Run(context.Background()); err != errCrash {
		t.Fatalf("crash run: %v", err)
	}
	journals, _ := filepath.Glob(filepath.Join(f.backup, "2*Z"))
	if len(journals) != 1 {
		t.Fatalf("journals %v", journals)
	}
	planPath := filepath.Join(journals[0], "plan.json")
	var plan map[string]any
	b, _ := os.ReadFile(planPath)
	json.Unmarshal(b, &plan)
	edit(plan)
	b, _ = json.Marshal(plan)
	os.WriteFile(planPath, b, 0o600)
	return journals[0]
}
