package main

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"120d": 120 * day, "90d12h": 90*day + 12*time.Hour, "720h": 720 * time.Hour, "0d": 0, "30s": 30 * time.Second,
		"106751d": 106751 * day} {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	// Issue 18: beyond what a time.Duration holds (about 106751.99 days), 106752d wrapped to a
	// negative duration: nothing was ever due.
	for _, bad := range []string{"", "d", "-1d", "12x", "1d-3h", "abc", "106752d", "9999999999d", "106751d24h", "106751d23h59m59s999ms"} {
		if _, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) accepted", bad)
		}
	}
}

func TestMountPoint(t *testing.T) {
	mi := []byte("22 1 0:21 / / rw - overlay overlay rw\n30 22 8:1 / /data rw - ext4 /dev/sda1 rw\n31 22 8:2 / /data\\040x rw - ext4 /dev/sdb rw\n")
	for path, want := range map[string]string{"/data/k0s/pki": "/data", "/tmp/pki": "/", "/data x/pki": "/data x", "/datax/pki": "/"} {
		if got := mountPoint(path, mi); got != want {
			t.Errorf("mountPoint(%s) = %q, want %q", path, got, want)
		}
	}
}
