package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/internal/testenv"
	"github.com/hpt-dev/hpt/provconfig"
)

func TestExecBlocks(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(dir string)
		config  string // %[1]s is the temp dir
		want    Outcome
		output  string // substring of Output
		err     string // substring of Error
		created string // file the command creates, relative to dir
		killed  string // file in dir holding the pid of a child that must be dead
	}{
		{name: "script runs", config: "[[exec]]\nscript = \"echo hi; echo err >&2; touch %[1]s/ran\"\n",
			want: OutcomeChanged, output: "hi\nerr\n", created: "ran"},
		{name: "cmd and args", config: "[[exec]]\ncmd = \"/bin/sh\"\nargs = [\"-c\", \"echo $0 $1\", \"a b\", \"c\"]\n",
			want: OutcomeChanged, output: "a b c"},
		{name: "non-zero exit fails", config: "[[exec]]\nscript = \"echo before; exit 3\"\n",
			want: OutcomeFailed, output: "before", err: "exit status 3"},
		{name: "missing program fails", config: "[[exec]]\ncmd = \"/nonexistent/hpt-test\"\n",
			want: OutcomeFailed, err: "no such file"},
		{name: "creates exists", setup: func(dir string) { os.WriteFile(filepath.Join(dir, "done"), nil, 0o644) },
			config: "[[exec]]\nscript = \"touch %[1]s/ran\"\ncreates = \"%[1]s/done\"\n",
			want:   OutcomeOK, output: "not run: " + "%[1]s/done exists (creates)"},
		{name: "creates missing", config: "[[exec]]\nscript = \"touch %[1]s/done\"\ncreates = \"%[1]s/done\"\n",
			want: OutcomeChanged, created: "done"},
		{name: "unless true", config: "[[exec]]\nscript = \"touch %[1]s/ran\"\nunless = \"test 1 = 1\"\n",
			want: OutcomeOK, output: "unless command exited 0"},
		{name: "unless false", config: "[[exec]]\nscript = \"touch %[1]s/ran\"\nunless = \"test 1 = 2\"\n",
			want: OutcomeChanged, created: "ran"},
		{name: "onlyif false", config: "[[exec]]\nscript = \"touch %[1]s/ran\"\nonlyif = \"exit 4\"\n",
			want: OutcomeOK, output: "onlyif command exited 4"},
		{name: "onlyif true", config: "[[exec]]\nscript = \"touch %[1]s/ran\"\nonlyif = \"true\"\n",
			want: OutcomeChanged, created: "ran"},
		{name: "pwd and env", config: "[[exec]]\nscript = \"pwd; echo $GREETING\"\npwd = \"%[1]s\"\nenv = { GREETING = \"hello there\" }\n",
			want: OutcomeChanged, output: "%[1]s\nhello there\n"},
		{name: "guards see pwd and env", config: "[[exec]]\nscript = \"touch ran\"\npwd = \"%[1]s\"\nenv = { F = \"marker\" }\nunless = \"test -e $F\"\n",
			setup: func(dir string) { os.WriteFile(filepath.Join(dir, "marker"), nil, 0o644) },
			want:  OutcomeOK},
		// The background sleep holds the output pipe open and would outlive
		// the shell if only the shell were killed.
		{name: "timeout kills", config: "[[exec]]\nscript = \"sleep 600 & echo $! > %[1]s/child; wait\"\ntimeout = \"3s\"\n",
			want: OutcomeFailed, err: "timed out after 3s", killed: "child"},
		{name: "template script", config: "[vars]\nwho = \"world\"\n[[exec]]\nscript = \"echo hello {{ .Vars.who }} from {{ .Target.Name }}\"\n",
			want: OutcomeChanged, output: "hello world from testhost"},
		{name: "shebang script", config: "[[exec]]\nscript = \"\"\"#!/bin/sh -e\necho shebang $0\nfalse\necho not reached\n\"\"\"\n",
			want: OutcomeFailed, output: "shebang /", err: "exit status 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(dir)
			}
			cfg := parse(t, strings.ReplaceAll(tc.config, "%[1]s", dir), nil)
			rep := apply(t, cfg, Options{Facts: provconfig.Facts{Name: "testhost"}})
			wantOutcomes(t, rep, tc.want)
			b := rep.Blocks[0]
			if want := strings.ReplaceAll(tc.output, "%[1]s", dir); !strings.Contains(b.Output, want) {
				t.Fatalf("output %q does not contain %q", b.Output, want)
			}
			if !strings.Contains(b.Error, tc.err) || (tc.err == "") != (b.Error == "") {
				t.Fatalf("error %q, want %q", b.Error, tc.err)
			}
			if tc.created != "" {
				if _, err := os.Stat(filepath.Join(dir, tc.created)); err != nil {
					t.Fatalf("command did not run: %v", err)
				}
			}
			if tc.want == OutcomeOK {
				if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
					t.Fatal("guarded command ran")
				}
			}
			if tc.killed != "" {
				waitDead(t, readPid(t, filepath.Join(dir, tc.killed)))
			}
		})
	}
}

func TestExecCommands(t *testing.T) {
	cfg := parse(t, `[[exec]]
cmd = "make"
args = ["-C", "/hpt-test-nonexistent/src", "install"]
user = "builder"
pwd = "/hpt-test-nonexistent/src"
env = { B = "2", A = "1" }
unless = "test -e /hpt-test-nonexistent/src/installed"
timeout = "2m"

[[exec]]
name = "migrate"
script = "./migrate --to {{ .Vars.version }}"
onlyif = "test -x ./migrate"
`, nil)
	rec := &RecordingRunner{Handler: func(c Command) (CommandResult, error) {
		if strings.HasPrefix(c.String(), "/bin/sh -c 'test -e") {
			return exit(1), nil
		}
		return out("done\n"), nil
	}}
	rep := apply(t, cfg, Options{Runner: rec, Vars: map[string]string{"version": "42"}})
	wantOutcomes(t, rep, OutcomeChanged, OutcomeChanged)
	equalLines(t, rec.Lines(), []string{
		"/bin/sh -c 'test -e /hpt-test-nonexistent/src/installed'",
		"make -C /hpt-test-nonexistent/src install",
		"/bin/sh -c 'test -x ./migrate'",
		"/bin/sh -c './migrate --to 42'",
	})
	c := rec.Commands()[1]
	if c.User != "builder" || c.Dir != "/hpt-test-nonexistent/src" || strings.Join(c.Env, " ") != "A=1 B=2" || c.Timeout != 2*time.Minute {
		t.Fatalf("command details: %+v", c)
	}
	if g := rec.Commands()[0]; g.User != "builder" || g.Dir != "/hpt-test-nonexistent/src" || g.Timeout != 2*time.Minute {
		t.Fatalf("guard does not run like the command: %+v", g)
	}
	if d := rec.Commands()[3].Timeout; d != provconfig.DefaultExecTimeout {
		t.Fatalf("default timeout %v", d)
	}
	if rep.Blocks[1].Name != "migrate" || rep.Blocks[1].Output != "done\n" {
		t.Fatalf("result %+v", rep.Blocks[1])
	}

	// A dry run runs the guards (they only look) but not the commands.
	rec.Reset()
	rep = apply(t, cfg, Options{Runner: rec, DryRun: true, Vars: map[string]string{"version": "42"}})
	wantOutcomes(t, rep, OutcomeChanged, OutcomeChanged)
	// User builder and /hpt-test-nonexistent/src do not exist here: an earlier block would have to
	// create them, so the first block's guards cannot run yet.
	equalLines(t, rec.Lines(), []string{"/bin/sh -c 'test -x ./migrate'"})
	if c := findChange(t, rep, 0, "command"); c.New != "make -C /hpt-test-nonexistent/src install (guards not run in this dry run: pwd /hpt-test-nonexistent/src does not exist yet)" {
		t.Fatalf("dry-run change %+v", c)
	}
	if c := findChange(t, rep, 1, "command"); c.New != "./migrate --to 42" {
		t.Fatalf("dry-run change %+v", c)
	}
}

func TestExecAsUser(t *testing.T) {
	needRoot(t)
	cfg := parse(t, "[[exec]]\nscript = \"id -un; echo $HOME\"\nuser = \"nobody\"\n", nil)
	rep := apply(t, cfg, Options{})
	wantOutcomes(t, rep, OutcomeChanged)
	if !strings.HasPrefix(rep.Blocks[0].Output, "nobody\n") {
		t.Fatalf("ran as %q", rep.Blocks[0].Output)
	}
	// A #! script is a temporary file the user must be able to run.
	cfg = parse(t, "[[exec]]\nscript = \"#!/bin/sh\\nid -un\\n\"\nuser = \"nobody\"\n", nil)
	rep = apply(t, cfg, Options{})
	wantOutcomes(t, rep, OutcomeChanged)
	if rep.Blocks[0].Output != "nobody\n" {
		t.Fatalf("shebang script ran as %q (%s)", rep.Blocks[0].Output, rep.Blocks[0].Error)
	}
}

func TestExecOutputCapped(t *testing.T) {
	cfg := parse(t, "[[exec]]\nscript = \"head -c 300000 /dev/zero | tr '\\\\0' a; echo; echo THE END\"\n", nil)
	rep := apply(t, cfg, Options{})
	wantOutcomes(t, rep, OutcomeChanged)
	o := rep.Blocks[0].Output
	if len(o) > MaxBlockOutput+100 || !strings.Contains(o, "bytes omitted") || !strings.HasSuffix(o, "THE END\n") {
		t.Fatalf("output not capped to head and tail: %d bytes, tail %q", len(o), o[max(0, len(o)-40):])
	}
}

// Cancelling a running command kills it and its children. The command is
// cancelled only once it has started (it wrote its child's pid), so the
// test cannot pass by cancelling before anything ran.
func TestExecRunnerCancel(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := ExecRunner{}.Run(ctx, Command{Name: "/bin/sh", Args: []string{"-c", "sleep 600 & echo $! > " + pidFile + ".tmp; mv " + pidFile + ".tmp " + pidFile + "; wait"}})
		done <- err
	}()
	var pid int
	for deadline := time.Now().Add(30 * time.Second); pid == 0; {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid = parsePid(t, b)
			break
		}
		select {
		case err := <-done:
			t.Fatalf("command ended before it was cancelled: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("command did not start")
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled command: err = %v, want context.Canceled", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("cancel did not end the command")
	}
	waitDead(t, pid)
}

func TestExecRunnerStdinAndExitCode(t *testing.T) {
	res, err := ExecRunner{}.Run(context.Background(), Command{Name: "/bin/sh", Args: []string{"-c", "cat; exit 7"}, Stdin: []byte("in")})
	if err != nil || res.ExitCode != 7 || string(res.Stdout) != "in" {
		t.Fatalf("res %+v err %v", res, err)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the command never wrote its child's pid: %v", err)
	}
	return parsePid(t, b)
}

func parsePid(t *testing.T, b []byte) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("pid %q: %v", b, err)
	}
	return pid
}

// waitDead waits until pid has exited (gone, or a zombie nobody reaped
// yet: PID 1 of a container may never reap it). A killed process dies at
// once; the deadline only catches a child that was never killed.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			return nil
		}
		return fmt.Errorf("child %d still running: %s", pid, b)
	})
}
