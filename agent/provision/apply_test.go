package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/provconfig"
)

func TestApplyContinuesPastFailure(t *testing.T) {
	dir := t.TempDir()
	cfg := parse(t, fmt.Sprintf(`[[file]]
path = "%[1]s/one"
content = "1"

[[exec]]
cmd = "/bin/false"

[[file]]
path = "%[1]s/two"
content = "2"
`, dir), nil)
	var streamed []BlockResult
	rep := apply(t, cfg, Options{OnResult: func(r BlockResult) { streamed = append(streamed, r) }})
	wantOutcomes(t, rep, OutcomeChanged, OutcomeFailed, OutcomeChanged)
	if rep.Totals != (Totals{Changed: 2, Failed: 1}) || !rep.Failed() {
		t.Fatalf("totals %+v failed=%v", rep.Totals, rep.Failed())
	}
	if !reflect.DeepEqual(streamed, rep.Blocks) {
		t.Fatalf("streamed results differ from the report:\n%+v\n%+v", streamed, rep.Blocks)
	}
	if _, err := os.Stat(filepath.Join(dir, "two")); err != nil {
		t.Fatal("block after the failure did not run")
	}
}

func TestApplyFailHard(t *testing.T) {
	dir := t.TempDir()
	cfg := parse(t, fmt.Sprintf(`failhard = true
[[exec]]
cmd = "/bin/true"

[[exec]]
name = "breaks"
script = "exit 2"

[[file]]
path = "%[1]s/never"
content = "x"

[[exec]]
cmd = "/bin/true"
`, dir), nil)
	var streamed int
	rep := apply(t, cfg, Options{OnResult: func(BlockResult) { streamed++ }})
	wantOutcomes(t, rep, OutcomeChanged, OutcomeFailed, OutcomeSkipped, OutcomeSkipped)
	if rep.Totals != (Totals{Changed: 1, Failed: 1, Skipped: 2}) || streamed != 4 {
		t.Fatalf("totals %+v, streamed %d", rep.Totals, streamed)
	}
	if e := rep.Blocks[2].Error; !strings.Contains(e, `exec "breaks" failed and failhard = true`) {
		t.Fatalf("skip reason %q", e)
	}
	if _, err := os.Stat(filepath.Join(dir, "never")); err == nil {
		t.Fatal("block after failhard ran")
	}
}

func TestApplyCancelled(t *testing.T) {
	cfg := parse(t, "[[exec]]\ncmd = \"/bin/true\"\n", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Apply(ctx, cfg, Options{}); err == nil {
		t.Fatal("Apply with a cancelled context started")
	}
	if _, err := Apply(context.Background(), nil, Options{}); err == nil {
		t.Fatal("Apply(nil) did not fail")
	}

	// Cancelled during the run: the block in progress fails, the rest are skipped.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	cfg = parse(t, "[[exec]]\ncmd = \"/bin/true\"\n[[exec]]\ncmd = \"/bin/sleep\"\nargs = [\"30\"]\n[[exec]]\ncmd = \"/bin/true\"\n", nil)
	rec := &RecordingRunner{Handler: func(c Command) (CommandResult, error) {
		if c.Name == "/bin/sleep" {
			cancel()
			return CommandResult{ExitCode: -1}, context.Canceled
		}
		return CommandResult{}, nil
	}}
	rep, err := Apply(ctx, cfg, Options{Runner: rec})
	if err != nil {
		t.Fatal(err)
	}
	wantOutcomes(t, rep, OutcomeChanged, OutcomeFailed, OutcomeSkipped)
	if !strings.Contains(rep.Blocks[2].Error, "cancelled") {
		t.Fatalf("skip reason %q", rep.Blocks[2].Error)
	}
}

func TestReportJSON(t *testing.T) {
	rep := &Report{DryRun: true}
	rep.add(BlockResult{Kind: "file", Name: "/etc/motd", Outcome: OutcomeChanged,
		Changes: []Change{{Field: "content", Old: "absent", New: "3 bytes", Diff: "--- a\n"}}, DurationMS: 3})
	rep.add(BlockResult{Kind: "exec", Name: "x", Outcome: OutcomeFailed, Changes: []Change{}, Output: "o", Error: "exit status 1"})
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"blocks":[{"kind":"file","name":"/etc/motd","outcome":"changed","changes":[{"field":"content","old":"absent","new":"3 bytes","diff":"--- a\n"}],"output":"","error":"","duration_ms":3},` +
		`{"kind":"exec","name":"x","outcome":"failed","changes":[],"output":"o","error":"exit status 1","duration_ms":0}],` +
		`"totals":{"ok":0,"changed":1,"failed":1,"skipped":0},"dry_run":true}`
	if string(data) != want {
		t.Fatalf("json:\n%s\nwant:\n%s", data, want)
	}
}

func TestResultsHaveEmptyChangesNotNull(t *testing.T) {
	cfg := parse(t, "[[file]]\npath = \"/nonexistent-hpt-test\"\nabsent = true\n", nil)
	rep := apply(t, cfg, Options{})
	data, _ := json.Marshal(rep.Blocks[0])
	if !strings.Contains(string(data), `"changes":[]`) {
		t.Fatalf("json %s", data)
	}
}

func TestWriteText(t *testing.T) {
	rep := &Report{DryRun: true}
	rep.add(BlockResult{Kind: "file", Name: "/etc/motd", Outcome: OutcomeChanged,
		Changes: []Change{{Field: "content", Old: "absent", New: "6 bytes", Diff: "--- /etc/motd\n+++ /etc/motd\n@@ -0,0 +1 @@\n+hello\n"}}})
	rep.add(BlockResult{Kind: "package", Name: "curl", Outcome: OutcomeOK})
	rep.add(BlockResult{Kind: "exec", Name: "make", Outcome: OutcomeFailed, Changes: []Change{{Field: "command", New: "make"}},
		Output: "cc -c x.c\nx.c:1: error\n", Error: "exit status 2", DurationMS: 2500})
	rep.add(BlockResult{Kind: "service", Name: "app", Outcome: OutcomeSkipped, Error: "not run: exec \"make\" failed and failhard = true"})
	var b strings.Builder
	if err := WriteText(&b, rep); err != nil {
		t.Fatal(err)
	}
	want := `DRY RUN: nothing is changed; "changed" means "would change".

changed  file /etc/motd
    content: absent → 6 bytes
        --- /etc/motd
        +++ /etc/motd
        @@ -0,0 +1 @@
        +hello
ok       package curl
failed   exec make (2.5s)
    command: make
    error: exit status 2
    output:
      | cc -c x.c
      | x.c:1: error
skipped  service app
    error: not run: exec "make" failed and failhard = true

ok=1 changed=1 failed=1 skipped=1 (dry run)
`
	if b.String() != want {
		t.Fatalf("text:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestSecondApplyAllOK applies a config using several kinds against temp
// dirs twice: the second run reports nothing changed.
func TestSecondApplyAllOK(t *testing.T) {
	needTool(t, "git", "git")
	dir := t.TempDir()
	up := upstream(t)
	cfg := parse(t, fmt.Sprintf(`[[file]]
path = "%[1]s/etc"
dir = true
perms = "0750"

[[file]]
path = "%[1]s/etc/app.conf"
content = "name = {{ .Target.Name }}\n"
template = true
perms = "0640"

[[exec]]
script = "touch %[1]s/installed"
creates = "%[1]s/installed"

[[exec]]
script = "echo configured > %[1]s/configured"
unless = "grep -q configured %[1]s/configured"

[[clone]]
url = %[2]q
dest = "%[1]s/src"
`, dir, up), nil)
	opts := Options{Facts: provconfig.Facts{Name: "web1"}}
	first := apply(t, cfg, opts)
	wantOutcomes(t, first, OutcomeChanged, OutcomeChanged, OutcomeChanged, OutcomeChanged, OutcomeChanged)
	second := apply(t, cfg, opts)
	wantOutcomes(t, second, OutcomeOK, OutcomeOK, OutcomeOK, OutcomeOK, OutcomeOK)
	if second.Totals != (Totals{OK: 5}) {
		t.Fatalf("totals %+v", second.Totals)
	}
}

// TestFailureSummary names the first failed block and the first line of
// its error, and counts the others, rather than counting failed blocks.
func TestFailureSummary(t *testing.T) {
	ok := BlockResult{Kind: "file", Name: "/etc/motd", Outcome: OutcomeOK}
	boom := BlockResult{Kind: "exec", Name: "boom", Outcome: OutcomeFailed, Error: "exit status 7\nstderr: no\n"}
	pkg := BlockResult{Kind: "package", Name: "curl", Outcome: OutcomeFailed, Error: "not found"}
	for _, tc := range []struct {
		blocks []BlockResult
		want   string
	}{
		{nil, ""},
		{[]BlockResult{ok}, ""},
		{[]BlockResult{ok, boom}, `exec "boom": exit status 7 …`},
		{[]BlockResult{ok, pkg, boom, {Kind: "file", Outcome: OutcomeSkipped}}, `package "curl": not found (and 1 more)`},
	} {
		if got := FailureSummary(tc.blocks); got != tc.want {
			t.Errorf("FailureSummary(%v) = %q, want %q", tc.blocks, got, tc.want)
		}
	}
}
