package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSocketActivation starts `hpt serve` the way systemd does with
// hpt-agent.socket: the listening socket as descriptor 3, LISTEN_FDS=1 and
// LISTEN_PID set to the agent's own pid. The agent must take that socket
// (not --port) and provision through it.
func TestSocketActivation(t *testing.T) {
	dir := t.TempDir()
	e := env{"HOME": dir, "HPT_KEYSTORE": filepath.Join(dir, "client.db")}
	ks := filepath.Join(dir, "web-1.db")
	mustHPT(t, e, "gen-target-keys", "--target", "web-1", "--out", ks)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// sh execs hpt in place, so $$ is the agent's pid, as systemd sets it
	// after fork.
	serve := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, hptBin,
		"serve", "--keystore", ks, "--port", "1", "--gossip", "127.0.0.1:0")
	serve.ExtraFiles = []*os.File{f}
	line := startServe(t, serve)
	addr := ln.Addr().String()
	if !strings.Contains(line, "listening on "+addr) {
		t.Fatalf("serve printed %q, want it listening on the passed socket %s", line, addr)
	}
	port := regexp.MustCompile(`:(\d+)$`).FindStringSubmatch(addr)[1]

	target := filepath.Join(dir, "out.txt")
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte("[[file]]\npath = \""+target+"\"\ncontent = \"activated\"\n"), 0o644)
	mustHPT(t, e, "--target", "web-1", "--ip", "127.0.0.1", "--port", port, cfg)
	if b, _ := os.ReadFile(target); string(b) != "activated" {
		t.Fatalf("applied content %q", b)
	}
}

func TestUnitFileCommand(t *testing.T) {
	out := mustHPT(t, env{}, "unit-file", "agent-socket")
	if !strings.Contains(out, "ListenStream=6632") {
		t.Fatalf("unit-file agent-socket:\n%s", out)
	}
	if r := hpt(t, env{}, "unit-file", "nope"); r.code != exitUsage {
		t.Fatalf("unit-file nope: exit %d, %s", r.code, r.stderr)
	}
}
