package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tmpfs mounts a tmpfs of size bytes on a new directory and unmounts it
// when the test ends. It needs root; under CI=true a missing root fails.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("mount a tmpfs (needs root): %v: %s", err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes to dir until its file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for i := 0; ; i++ {
		if i > 1<<16 {
			t.Fatal("the tmpfs did not fill up")
		}
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space left") {
				t.Fatal(err)
			}
			break
		}
	}
	// Smaller writes fill the last partial blocks too.
	for i := 0; i < 1<<12; i++ {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return path
}

// TestServerRestartOnFullDisk restarts a server that was killed under
// load on a full disk: it must exit non-zero with one clear line, not a
// Pebble stack dump, and start normally once space is freed.
func TestServerRestartOnFullDisk(t *testing.T) {
	data := tmpfs(t, 2<<20)
	dir := t.TempDir()
	e := env{"HOME": dir}
	r := hpt(t, e, "init", "--out", filepath.Join(dir, "keys"))
	if r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		k, v, _ := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		e[k] = v
	}
	s := &server{name: "n1", dataDir: filepath.Join(data, "n1")}
	s.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.gossip = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.args = []string{"server", "--name", s.name, "--keystore", filepath.Join(dir, "keys", clusterKeystoreName),
		"--data-dir", s.dataDir, "--listen", s.addr, "--gossip", s.gossip, "--bootstrap-expect", "1", "--log-level", "warn"}
	var err error
	if s.log, err = os.Create(filepath.Join(dir, "n1.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.kill()
		s.log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(s.log.Name())
			t.Logf("server log:\n%s", b)
		}
	})
	e["HPT_ADDR"] = s.addr
	s.start(t)
	waitFor(t, 30*time.Second, func() error {
		if r := hpt(t, e, "users", "add", "before@example.com"); r.code != 0 {
			return fmt.Errorf("users add: %s", r.stderr)
		}
		return nil
	})
	// Killed, the node replays its log into memtables on the next start,
	// which Pebble then flushes.
	s.kill()
	filler := fill(t, data)

	// The restart on the full disk: bounded only to catch a hang.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hptBin, s.args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the server did not exit on a full disk; output:\n%s", stderr.String())
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() <= 0 {
		t.Fatalf("server on a full disk: %v, want a non-zero exit; output:\n%s", err, stderr.String())
	}
	out := stderr.String()
	if strings.Contains(out, "goroutine ") || strings.Contains(out, "panic:") {
		t.Fatalf("server on a full disk dumped a stack:\n%s", out)
	}
	var errLines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "hpt: ") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 || !strings.Contains(errLines[0], "no space left on device") {
		t.Fatalf("server on a full disk: want one error line naming the full disk, got:\n%s", out)
	}
	t.Logf("exit %d: %s", ee.ExitCode(), errLines[0])

	// Space freed: the same data directory starts and serves.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	waitFor(t, 30*time.Second, func() error {
		r := hpt(t, e, "users", "list", "-o", "json")
		if r.code != 0 || !strings.Contains(r.stdout, `"before@example.com"`) {
			return fmt.Errorf("users list after freeing space: %s %s", r.stdout, r.stderr)
		}
		return nil
	})
	mustHPT(t, e, "users", "add", "after@example.com")
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("server after freeing space did not stop cleanly: %v", err)
	}
}
