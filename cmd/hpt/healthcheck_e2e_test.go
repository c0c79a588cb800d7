package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHealthcheckProcesses runs `hpt healthcheck` as the compose health
// checks do: exit 0 with the node's answer against a server in a cluster
// with a leader, exit 1 naming the 503 against a server without quorum,
// and exit 1 when nothing listens.
func TestHealthcheckProcesses(t *testing.T) {
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e, _ := startServers(t, 1, "--metrics", metrics)
	url := "http://" + metrics + "/healthz"
	var r result
	waitFor(t, 30*time.Second, func() error {
		if r = hpt(t, e, "healthcheck", url); r.code != exitOK {
			return fmt.Errorf("healthcheck of a leader: exit %d, %s", r.code, r.stderr)
		}
		return nil
	})
	if !strings.HasPrefix(r.stdout, "ok: leader, leader n1") {
		t.Fatalf("healthcheck stdout %q", r.stdout)
	}

	// A server waiting for a second one to bootstrap with has no quorum.
	dir := t.TempDir()
	lonely := &server{name: "lonely", dataDir: filepath.Join(dir, "data"),
		addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	lonelyMetrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	lonely.args = []string{"server", "--name", lonely.name, "--keystore", filepath.Join(e["HOME"], "keys", clusterKeystoreName),
		"--data-dir", lonely.dataDir, "--listen", lonely.addr, "--gossip", lonely.gossip,
		"--bootstrap-expect", "2", "--metrics", lonelyMetrics, "--log-level", "warn"}
	var err error
	if lonely.log, err = os.Create(filepath.Join(dir, "lonely.log")); err != nil {
		t.Fatal(err)
	}
	lonely.start(t)
	t.Cleanup(func() { lonely.kill(); lonely.log.Close() })
	lonelyURL := "http://" + lonelyMetrics + "/healthz"
	// Until its metrics listener is up the check fails for another reason;
	// wait for the answer itself.
	waitFor(t, 30*time.Second, func() error {
		r = hpt(t, e, "healthcheck", lonelyURL)
		if !strings.Contains(r.stderr, "503") {
			return fmt.Errorf("healthcheck of a node without quorum: exit %d, %s", r.code, r.stderr)
		}
		return nil
	})
	if r.code != exitFailure || !strings.Contains(r.stderr, "no leader") || r.stdout != "" {
		t.Fatalf("healthcheck of a node without quorum: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// Nothing listening.
	closed := fmt.Sprintf("http://127.0.0.1:%d/healthz", freePort(t))
	if r := hpt(t, e, "healthcheck", closed); r.code != exitFailure || !strings.Contains(r.stderr, "refused") {
		t.Fatalf("healthcheck of a closed port: exit %d, stderr %q", r.code, r.stderr)
	}
}
