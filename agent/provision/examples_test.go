package provision

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/provconfig"
)

// TestHelloExampleDryRun dry-runs examples/hello.toml for real, then
// applies it twice, as its header shows. Its /tmp/hpt-hello is moved into a
// fresh temporary directory, so what earlier runs left in /tmp cannot turn
// the expected changes into "ok".
func TestHelloExampleDryRun(t *testing.T) {
	b, err := provconfig.LoadBundle("../../examples/hello.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b.Config, []byte("/tmp/hpt-hello/hello.txt")) {
		t.Fatal("examples/hello.toml no longer writes /tmp/hpt-hello/hello.txt: update this test")
	}
	dir := filepath.Join(t.TempDir(), "hpt-hello")
	b.Config = bytes.ReplaceAll(b.Config, []byte("/tmp/hpt-hello"), []byte(dir))
	cfg, err := provconfig.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	rec := &RecordingRunner{}
	rep := apply(t, cfg, Options{DryRun: true, Runner: rec, Facts: provconfig.Facts{Name: "example"}})
	if len(rec.Commands()) != 0 {
		t.Fatalf("dry run ran %v", rec.Lines())
	}
	wantOutcomes(t, rep, OutcomeChanged, OutcomeChanged, OutcomeChanged)
	idx := slices.IndexFunc(rep.Blocks, func(b BlockResult) bool { return b.Name == dir+"/hello.txt" })
	if idx < 0 {
		t.Fatalf("no block for hello.txt:\n%s", reportText(rep))
	}
	if c := findChange(t, rep, idx, "content"); !strings.Contains(c.Diff, "+Hello from hpt!") {
		t.Fatalf("template not rendered in the diff:\n%s", c.Diff)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the dry run created %s: %v", dir, err)
	}

	// Applied, it does what it said; applied again, everything is ok.
	wantOutcomes(t, apply(t, cfg, Options{Facts: provconfig.Facts{Name: "example"}}), OutcomeChanged, OutcomeChanged, OutcomeChanged)
	if got, err := os.ReadFile(filepath.Join(dir, "hello.txt")); err != nil || !strings.HasPrefix(string(got), "Hello from hpt!\n") {
		t.Fatalf("hello.txt = %q, %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "first-run")); err != nil || !strings.HasPrefix(string(got), "first run: example at ") {
		t.Fatalf("first-run = %q, %v", got, err)
	}
	wantOutcomes(t, apply(t, cfg, Options{Facts: provconfig.Facts{Name: "example"}}), OutcomeOK, OutcomeOK, OutcomeOK)
}

// TestWebserverExampleDryRun is the dry run examples/webserver.toml
// suggests, with the host's commands answered by a recorder: it passes, and
// its page shows the target's "role" label, or "none" without one.
func TestWebserverExampleDryRun(t *testing.T) {
	b, err := provconfig.LoadBundle("../../examples/webserver.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := provconfig.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		facts provconfig.Facts
		role  string
	}{
		{provconfig.Facts{Name: "example"}, "none"},
		{provconfig.Facts{Name: "web-1", Labels: map[string]string{"role": "web"}}, "web"},
	} {
		if err := provconfig.CheckTemplates(cfg, tc.facts, nil); err != nil {
			t.Errorf("%s: templates: %v", tc.facts.Name, err)
		}
		rep := apply(t, cfg, Options{DryRun: true, Runner: &RecordingRunner{}, Facts: tc.facts, PackageManager: "apt"})
		if rep.Failed() {
			t.Errorf("%s: dry run failed:\n%s", tc.facts.Name, reportText(rep))
			continue
		}
		idx := slices.IndexFunc(rep.Blocks, func(b BlockResult) bool { return b.Name == "/var/www/hpt/index.html" })
		if idx < 0 {
			t.Fatalf("no block for index.html:\n%s", reportText(rep))
		}
		if rep.Blocks[idx].Outcome == OutcomeChanged {
			if c := findChange(t, rep, idx, "content"); !strings.Contains(c.Diff, "Role: "+tc.role+".") {
				t.Errorf("%s: page diff does not show role %s:\n%s", tc.facts.Name, tc.role, c.Diff)
			}
		}
	}
}
