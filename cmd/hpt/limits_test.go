package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The CLI applies each input's limit before it sends anything (no server
// listens at HPT_ADDR here): the error names the file, flag or field and
// the limit, never a gRPC byte count.
func TestInputLimitsBeforeSending(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("# padding\n"), 3<<20), 0o644); err != nil { // 30 MiB
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.toml")
	os.WriteFile(small, []byte("[[exec]]\nscript = \"true\"\n"), 0o644)
	e := env{"HOME": t.TempDir(), "HPT_ADDR": "127.0.0.1:1", "HPT_TOKEN": "sk_x"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"job run 30 MiB", []string{"job", "run", big, "--targets", "web-*"}, exitFailure, []string{"big.toml", "3 MiB"}},
		{"apply 30 MiB", []string{"apply", big}, exitFailure, []string{"big.toml", "3 MiB"}},
		{"vars", []string{"job", "run", small, "--vars", "x=" + strings.Repeat("v", 65<<10)}, exitUsage, []string{"--vars", "64 KiB"}},
		{"user name", []string{"users", "add", strings.Repeat("a", 300)}, exitUsage, []string{"at most 253"}},
		{"label", []string{"job", "run", small, "--selector", "role=" + strings.Repeat("r", 300)}, exitUsage, []string{"--selector", "at most 253"}},
		{"labels without a cluster", []string{"gen-target-keys", "--target", "x", "--labels", "role=db"}, exitUsage, []string{"--labels needs cluster mode"}},
	} {
		ee := e
		if tc.name == "labels without a cluster" {
			ee = env{"HOME": e["HOME"]}
		}
		r := hpt(t, ee, tc.args...)
		if r.code != tc.code {
			t.Errorf("%s: exit %d, want %d; stderr %q", tc.name, r.code, tc.code, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr %q does not say %q", tc.name, r.stderr, w)
			}
		}
		if strings.Contains(r.stderr, "grpc") || strings.Contains(r.stderr, "connect") {
			t.Errorf("%s: sent or tried to send: %q", tc.name, r.stderr)
		}
	}
}
