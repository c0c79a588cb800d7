package provision

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestExamplesParse loads and validates every config in examples/, so the
// examples cannot rot.
func TestExamplesParse(t *testing.T) {
	names, err := filepath.Glob("../../examples/*.toml")
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

// TestHelloExampleDryRun dry-runs examples/hello.toml for real: everything
// it touches is under /tmp, and a dry run writes nothing.
func TestHelloExampleDryRun(t *testing.T) {
	b, err := LoadBundle("../../examples/hello.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	rec := &RecordingRunner{}
	rep := apply(t, cfg, Options{DryRun: true, Runner: rec, Facts: Facts{Name: "example"}})
	if rep.Failed() {
		t.Fatalf("dry run failed:\n%s", reportText(rep))
	}
	if len(rec.Commands()) != 0 {
		t.Fatalf("dry run ran %v", rec.Lines())
	}
	idx := slices.IndexFunc(rep.Blocks, func(b BlockResult) bool { return b.Name == "/tmp/hpt-hello/hello.txt" })
	if idx < 0 {
		t.Fatalf("no block for hello.txt:\n%s", reportText(rep))
	}
	// ok when someone already ran the example with this target name.
	if rep.Blocks[idx].Outcome != OutcomeOK {
		c := findChange(t, rep, idx, "content")
		if !strings.Contains(c.Diff, "+Hello from example!") {
			t.Fatalf("template not rendered in the diff:\n%s", c.Diff)
		}
	}
}
