package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/internal/testlog"
)

// devProc is one `hpt dev` process, stopped as an operator would (SIGINT)
// when the test ends.
type devProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	tmp    string // its TMPDIR: hpt dev makes its data directory here
	env    env    // HPT_ADDR, HPT_TOKEN, HPT_CLUSTER_KEY from its banner
	stderr *testlog.Buffer
	done   bool
}

// startDev starts `hpt dev --port 0 ARGS...` and waits for its banner.
func startDev(t *testing.T, args ...string) *devProc {
	t.Helper()
	d := &devProc{t: t, tmp: t.TempDir(), env: env{"HOME": t.TempDir()}, stderr: &testlog.Buffer{}}
	d.cmd = exec.Command(hptBin, append([]string{"dev", "--port", "0"}, args...)...)
	d.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + d.env["HOME"], "TMPDIR=" + d.tmp}
	d.cmd.Stderr = d.stderr
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	sc := bufio.NewScanner(stdout)
	var banner []string
	for sc.Scan() {
		line := sc.Text()
		banner = append(banner, line)
		if kv, ok := strings.CutPrefix(strings.TrimSpace(line), "export "); ok {
			k, v, _ := strings.Cut(kv, "=")
			d.env[k] = v
		}
		if strings.HasPrefix(line, "Ctrl-C") {
			break
		}
	}
	if !strings.HasPrefix(strings.Join(banner, "\n"), "hpt dev: ") || d.env["HPT_TOKEN"] == "" {
		t.Fatalf("hpt dev printed %q\nstderr: %s", banner, d.stderr)
	}
	// Keep reading, so that the process never blocks on a full pipe.
	go func() {
		for sc.Scan() {
		}
	}()
	return d
}

// stop sends SIGINT, waits for hpt dev to exit and checks that it removed
// its data directory.
func (d *devProc) stop() {
	t := d.t
	if d.done {
		return
	}
	d.done = true
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Errorf("signal hpt dev: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("hpt dev after SIGINT: %v\nstderr: %s", err, d.stderr)
		}
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		<-exited
		t.Errorf("hpt dev still running 60s after SIGINT; killed\nstderr: %s", d.stderr)
	}
	left, _ := filepath.Glob(filepath.Join(d.tmp, "hpt-dev-*"))
	if len(left) > 0 {
		t.Errorf("hpt dev left its data behind: %v", left)
	}
}

// A healthy `hpt dev`, started and stopped with Ctrl-C, logs no error and
// none of raft's start-up chatter as a warning, and removes its data.
func TestDevStopsQuietly(t *testing.T) {
	d := startDev(t)
	mustHPT(t, d.env, "targets", "list")
	d.stop()
	out := d.stderr.String()
	if !strings.Contains(out, "hpt dev: stopping") {
		t.Fatalf("no stop message in stderr:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("error logged on a healthy start and stop: %s", line)
		}
		for _, routine := range []string{"no known peers, aborting election", "failed to get previous log", "appendEntries rejected, sending older logs"} {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, routine) {
				t.Errorf("raft's start-up chatter is a warning: %s", line)
			}
		}
		if strings.Contains(line, "level=WARN") {
			t.Logf("warning (allowed, but look): %s", line)
		}
	}
}

// examples/hello.toml, run twice through `hpt dev`'s two agents (which share
// one host), is "ok" on every target and block the second time.
func TestDevHelloExampleIsIdempotent(t *testing.T) {
	src, err := os.ReadFile("../../examples/hello.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte("/tmp/hpt-hello")) {
		t.Fatal("examples/hello.toml no longer writes under /tmp/hpt-hello: update this test")
	}
	// Its /tmp/hpt-hello moves into a fresh directory, so that earlier runs
	// cannot make the first run "ok".
	dir := t.TempDir()
	conf := filepath.Join(dir, "hello.toml")
	if err := os.WriteFile(conf, bytes.ReplaceAll(src, []byte("/tmp/hpt-hello"), []byte(filepath.Join(dir, "hpt-hello"))), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDev(t)
	type job struct {
		Targets []struct {
			Target, Status string
			Blocks         []struct{ Name, Outcome string }
		}
	}
	run := func() job {
		var j job
		out := mustHPT(t, d.env, "job", "run", conf, "--targets", "dev-*", "--batch", "1", "-o", "json")
		if err := json.Unmarshal([]byte(out), &j); err != nil || len(j.Targets) != 2 {
			t.Fatalf("job run: %v, %d targets\n%s", err, len(j.Targets), out)
		}
		return j
	}
	first := run()
	if first.Targets[0].Status != "changed" {
		t.Fatalf("first run on %s: %s, want changed", first.Targets[0].Target, first.Targets[0].Status)
	}
	for _, tg := range run().Targets {
		if tg.Status != "ok" {
			t.Errorf("second run on %s: %s, want ok (blocks %+v)", tg.Target, tg.Status, tg.Blocks)
		}
	}
}
