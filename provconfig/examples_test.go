package provconfig

import (
	"path/filepath"
	"testing"
)

// TestExamplesParse loads and validates every config in examples/, so the
// examples cannot rot.
func TestExamplesParse(t *testing.T) {
	names, err := filepath.Glob("../examples/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 3 {
		t.Fatalf("expected the examples, found %v", names)
	}
	for _, name := range names {
		t.Run(filepath.Base(name), func(t *testing.T) {
			b, err := LoadBundle(name)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Blocks) == 0 {
				t.Fatal("no blocks")
			}
		})
	}
}
