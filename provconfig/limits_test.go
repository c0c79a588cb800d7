package provconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One bundle limit for every path a config takes; LoadBundle names the
// file that crosses it, CheckBundle (and so Parse, which every path calls)
// the bundle, and CheckVars the vars.
func TestBundleAndVarsLimits(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "site.toml")
	os.WriteFile(cfg, []byte("[[file]]\npath = \"/tmp/x\"\nsource = \"blob\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "blob"), make([]byte, MaxBundleSize), 0o644)
	_, err := LoadBundle(cfg)
	if err == nil || !strings.Contains(err.Error(), `source "blob"`) || !strings.Contains(err.Error(), "3 MiB") || !strings.Contains(err.Error(), "site.toml:3") {
		t.Errorf("a source over the limit: %v; want the source, its line and the limit named", err)
	}
	os.WriteFile(filepath.Join(dir, "blob"), make([]byte, MaxBundleSize-200), 0o644)
	b, err := LoadBundle(cfg)
	if err != nil {
		t.Fatalf("a bundle under the limit: %v", err)
	}
	if _, err := Parse(b); err != nil {
		t.Fatalf("parse a bundle under the limit: %v", err)
	}
	b.Files["more"] = make([]byte, 300)
	if _, err := Parse(b); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "bundle site.toml") {
		t.Errorf("Parse of a bundle over the limit: %v", err)
	}
	if err := CheckVars(map[string]string{"x": strings.Repeat("v", MaxVarsSize)}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "vars") {
		t.Errorf("vars over the limit: %v", err)
	}
	if err := CheckVars(map[string]string{"x": strings.Repeat("v", MaxVarsSize-1)}); err != nil {
		t.Errorf("vars at the limit: %v", err)
	}
}
