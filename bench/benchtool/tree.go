package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

// tree writes a pki dir holding exactly N certificate (.crt) files: whole copies of the PKI in
// -from, in subdirectories copy-0000/, copy-0001/, … (keys, kubeconfigs and sa.pub included, in
// the layout's proportions), the last copy cut short after its N-th .crt (each kept .crt with its
// .key). It prints "certs files" on stdout.
func tree(args []string) error {
	fs := flag.NewFlagSet("tree", flag.ContinueOnError)
	from := fs.String("from", "", "a pki dir to copy (required)")
	out := fs.String("out", "", "directory to create (required; must not exist)")
	certs := fs.Int("certs", 0, "number of .crt files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || *out == "" || *certs < 1 {
		return errors.New("-from, -out and -certs are required")
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s exists", *out)
	}
	st, err := pki.ReadDir(*from)
	if err != nil {
		return err
	}
	if len(st.Errors) > 0 || len(st.Files) == 0 {
		return fmt.Errorf("%s: %d unreadable files, %d readable", *from, len(st.Errors), len(st.Files))
	}
	var crts []string
	for p := range st.Files {
		if strings.HasSuffix(p, ".crt") {
			crts = append(crts, p)
		}
	}
	slices.Sort(crts)
	nCerts, nFiles := 0, 0
	for copyN := 0; nCerts < *certs; copyN++ {
		files := map[string][]byte{}
		sub := fmt.Sprintf("copy-%04d/", copyN)
		if left := *certs - nCerts; left >= len(crts) {
			for p, b := range st.Files {
				files[sub+p] = b
			}
			nCerts += len(crts)
		} else {
			for _, p := range crts[:left] {
				files[sub+p] = st.Files[p]
				key := strings.TrimSuffix(p, ".crt") + ".key"
				if b, ok := st.Files[key]; ok {
					files[sub+key] = b
				}
			}
			nCerts += left
		}
		if err := pkigen.WriteDir(filepath.Clean(*out), files); err != nil {
			return err
		}
		nFiles += len(files)
	}
	fmt.Println(nCerts, nFiles)
	return nil
}
