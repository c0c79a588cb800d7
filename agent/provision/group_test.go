package provision

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGroupBlocks(t *testing.T) {
	host := newFakeAccounts(t)
	sudoers := t.TempDir()
	rec := &RecordingRunner{Handler: host.handle}
	opts := Options{Runner: rec, SudoersDir: sudoers}
	dropIn := filepath.Join(sudoers, "ops")
	tmp := filepath.Join(sudoers, ".ops.hpt-new")

	// Create with a gid and passwordless sudo.
	cfg := parse(t, "[[group]]\nname = \"ops\"\ngid = 1600\npasswordless_sudo = true\n", nil)
	dry := apply(t, cfg, Options{Runner: rec, SudoersDir: sudoers, DryRun: true})
	wantOutcomes(t, dry, OutcomeChanged)
	equalLines(t, rec.Lines(), []string{"getent group ops", "visudo -c -f -"})
	if _, err := os.Stat(dropIn); err == nil {
		t.Fatal("dry run wrote the drop-in")
	}
	rec.Reset()
	rep := apply(t, cfg, opts)
	wantOutcomes(t, rep, OutcomeChanged)
	equalLines(t, rec.Lines(), []string{"getent group ops", "groupadd --gid 1600 ops", "visudo -c -f " + tmp})
	data, err := os.ReadFile(dropIn)
	if err != nil || !strings.Contains(string(data), "\n%ops ALL=(ALL) NOPASSWD:ALL\n") {
		t.Fatalf("drop-in %q, %v", data, err)
	}
	if m := modeOf(t, dropIn); m != 0o440 {
		t.Fatalf("drop-in mode %04o", m)
	}
	if c := findChange(t, rep, 0, "sudoers"); !strings.Contains(c.Diff, "+%ops ALL=(ALL) NOPASSWD:ALL") {
		t.Fatalf("sudoers change %+v", c)
	}

	// Idempotent: the drop-in is not appended to or rewritten.
	rec.Reset()
	wantOutcomes(t, apply(t, cfg, opts), OutcomeOK)
	equalLines(t, rec.Lines(), []string{"getent group ops"})
	again, _ := os.ReadFile(dropIn)
	if string(again) != string(data) {
		t.Fatalf("drop-in rewritten: %q", again)
	}

	// A different gid is changed with groupmod.
	rec.Reset()
	cfg2 := parse(t, "[[group]]\nname = \"ops\"\ngid = 1700\npasswordless_sudo = true\n", nil)
	rep = apply(t, cfg2, opts)
	wantOutcomes(t, rep, OutcomeChanged)
	equalLines(t, rec.Lines(), []string{"getent group ops", "groupmod --gid 1700 ops"})
	if c := findChange(t, rep, 0, "gid"); c.Old != "1600" || c.New != "1700" {
		t.Fatalf("gid change %+v", c)
	}

	// passwordless_sudo = false removes the drop-in; the group stays.
	rec.Reset()
	off := parse(t, "[[group]]\nname = \"ops\"\npasswordless_sudo = false\n", nil)
	wantOutcomes(t, apply(t, off, opts), OutcomeChanged)
	if _, err := os.Stat(dropIn); !os.IsNotExist(err) {
		t.Fatal("drop-in not removed")
	}
	wantOutcomes(t, apply(t, off, opts), OutcomeOK)

	// Not mentioning passwordless_sudo leaves a drop-in alone.
	os.WriteFile(dropIn, []byte("%ops ALL=(ALL) ALL\n"), 0o440)
	wantOutcomes(t, apply(t, parse(t, "[[group]]\nname = \"ops\"\n", nil), opts), OutcomeOK)

	// absent removes the drop-in and the group.
	rec.Reset()
	gone := parse(t, "[[group]]\nname = \"ops\"\nabsent = true\n", nil)
	rep = apply(t, gone, opts)
	wantOutcomes(t, rep, OutcomeChanged)
	equalLines(t, rec.Lines(), []string{"getent group ops", "groupdel ops"})
	if _, err := os.Stat(dropIn); !os.IsNotExist(err) {
		t.Fatal("drop-in not removed with the group")
	}
	wantOutcomes(t, apply(t, gone, opts), OutcomeOK)
}

func TestGroupInvalidSudoersNeverInstalled(t *testing.T) {
	host := newFakeAccounts(t)
	host.groups["web"] = 1000
	host.visudoOK = false
	sudoers := t.TempDir()
	cfg := parse(t, "[[group]]\nname = \"web\"\npasswordless_sudo = true\n", nil)
	rep := apply(t, cfg, Options{Runner: &RecordingRunner{Handler: host.handle}, SudoersDir: sudoers})
	wantOutcomes(t, rep, OutcomeFailed)
	if !strings.Contains(rep.Blocks[0].Error, "visudo rejected") || !strings.Contains(rep.Blocks[0].Error, "syntax error") {
		t.Fatalf("error %q", rep.Blocks[0].Error)
	}
	if entries, _ := os.ReadDir(sudoers); len(entries) != 0 {
		t.Fatalf("sudoers dir holds %v after a rejected drop-in", entries)
	}
}

func TestGroupDottedNameDropIn(t *testing.T) {
	host := newFakeAccounts(t)
	host.groups["web.ops"] = 1000
	sudoers := t.TempDir()
	cfg := parse(t, "[[group]]\nname = \"web.ops\"\npasswordless_sudo = true\n", nil)
	wantOutcomes(t, apply(t, cfg, Options{Runner: &RecordingRunner{Handler: host.handle}, SudoersDir: sudoers}), OutcomeChanged)
	// sudo ignores drop-ins whose name holds a dot.
	if _, err := os.Stat(filepath.Join(sudoers, "web_ops")); err != nil {
		t.Fatal(err)
	}
}

// TestGroupSudoersRealVisudo validates the drop-in with the real visudo.
func TestGroupSudoersRealVisudo(t *testing.T) {
	needRoot(t)
	needTool(t, "visudo", "sudo")
	host := newFakeAccounts(t)
	host.groups["hpttest"] = 1000
	sudoers := t.TempDir()
	runner := &RecordingRunner{Handler: func(c Command) (CommandResult, error) {
		if c.Name == "visudo" {
			return ExecRunner{}.Run(t.Context(), c)
		}
		return host.handle(c)
	}}
	cfg := parse(t, "[[group]]\nname = \"hpttest\"\npasswordless_sudo = true\n", nil)
	rep := apply(t, cfg, Options{Runner: runner, SudoersDir: sudoers})
	wantOutcomes(t, rep, OutcomeChanged)
	out, err := exec.Command("visudo", "-c", "-f", filepath.Join(sudoers, "hpttest")).CombinedOutput()
	if err != nil {
		t.Fatalf("installed drop-in does not validate: %v\n%s", err, out)
	}
	// The same check rejects garbage, so the test above can fail.
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("%hpttest ALL=(ALL NOPASSWD ALL\n"), 0o440)
	if err := exec.Command("visudo", "-c", "-f", bad).Run(); err == nil {
		t.Fatal("visudo accepted a broken drop-in")
	}
}

// A dry run of passwordless_sudo checks what the real run needs to install
// the drop-in: with no visudo on PATH it fails as the real run does,
// instead of promising a change the real run cannot make.
func TestGroupDryRunNeedsVisudo(t *testing.T) {
	host := newFakeAccounts(t)
	host.groups["ops"] = 1000
	runner := &RecordingRunner{Handler: func(c Command) (CommandResult, error) {
		if c.Name == "visudo" {
			return ExecRunner{}.Run(t.Context(), c) // the real lookup, on the PATH below
		}
		return host.handle(c)
	}}
	t.Setenv("PATH", t.TempDir()) // no visudo here
	sudoers := t.TempDir()
	cfg := parse(t, "[[group]]\nname = \"ops\"\npasswordless_sudo = true\n", nil)

	dry := apply(t, cfg, Options{Runner: runner, SudoersDir: sudoers, DryRun: true})
	wantOutcomes(t, dry, OutcomeFailed)
	if e := dry.Blocks[0].Error; !strings.Contains(e, "the real run would fail") || !strings.Contains(e, "visudo") || !strings.Contains(e, "executable file not found") {
		t.Fatalf("dry run error %q", e)
	}
	real := apply(t, cfg, Options{Runner: runner, SudoersDir: sudoers})
	wantOutcomes(t, real, OutcomeFailed)
	if e := real.Blocks[0].Error; !strings.Contains(e, "visudo") || !strings.Contains(e, "executable file not found") {
		t.Fatalf("real run error %q", e)
	}
	if entries, _ := os.ReadDir(sudoers); len(entries) != 0 {
		t.Fatalf("sudoers dir holds %v", entries)
	}

	// An earlier block that would change the host may be what installs
	// sudo: then the dry run notes the precondition instead of failing.
	afterChange := parse(t, "[[file]]\npath = \""+filepath.Join(t.TempDir(), "f")+"\"\ncontent = \"x\"\n\n[[group]]\nname = \"ops\"\npasswordless_sudo = true\n", nil)
	rep := apply(t, afterChange, Options{Runner: runner, SudoersDir: sudoers, DryRun: true})
	wantOutcomes(t, rep, OutcomeChanged, OutcomeChanged)
	if c := findChange(t, rep, 1, "precondition"); !strings.Contains(c.New, "visudo") {
		t.Fatalf("precondition change %+v", c)
	}

	// A sudoers directory that is missing fails the dry run too.
	missing := filepath.Join(t.TempDir(), "sudoers.d")
	rep = apply(t, cfg, Options{Runner: &RecordingRunner{Handler: host.handle}, SudoersDir: missing, DryRun: true})
	wantOutcomes(t, rep, OutcomeFailed)
	if e := rep.Blocks[0].Error; !strings.Contains(e, "sudoers directory "+missing+" is missing") {
		t.Fatalf("dry run error %q", e)
	}
}

// The dry run gives the drop-in to visudo on stdin: a visudo that rejects it
// fails the dry run, and the real visudo accepts it.
func TestGroupDryRunValidatesDropIn(t *testing.T) {
	host := newFakeAccounts(t)
	host.groups["ops"] = 1000
	host.visudoOK = false
	cfg := parse(t, "[[group]]\nname = \"ops\"\npasswordless_sudo = true\n", nil)
	rep := apply(t, cfg, Options{Runner: &RecordingRunner{Handler: host.handle}, SudoersDir: t.TempDir(), DryRun: true})
	wantOutcomes(t, rep, OutcomeFailed)
	if e := rep.Blocks[0].Error; !strings.Contains(e, "visudo rejects") || !strings.Contains(e, "syntax error") {
		t.Fatalf("dry run error %q", e)
	}

	needTool(t, "visudo", "sudo")
	host.visudoOK = true
	runner := &RecordingRunner{Handler: func(c Command) (CommandResult, error) {
		if c.Name == "visudo" {
			return ExecRunner{}.Run(t.Context(), c)
		}
		return host.handle(c)
	}}
	rep = apply(t, cfg, Options{Runner: runner, SudoersDir: t.TempDir(), DryRun: true})
	wantOutcomes(t, rep, OutcomeChanged)
	equalLines(t, runner.Lines(), []string{"getent group ops", "visudo -c -f -"})
}
