package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// A server SIGKILLed right after a token was revoked restarts with a state
// from before the revocation (Pebble keeps no WAL; the Raft log is the
// state's). Alone, it cannot re-apply the log, and it must refuse the
// revoked token, and every stale read, instead of answering from that
// state. With a quorum back it catches up and the revocation holds.
func TestKilledServerRefusesRevokedTokenUntilCaughtUp(t *testing.T) {
	// Frequent small snapshots flush the state: the token's creation
	// reaches the disk of every node, its revocation does not.
	e, servers := startServers(t, 3, "--raft-snapshot-threshold", "4", "--raft-snapshot-interval", "200ms")
	mustHPT(t, e, "users", "add", "mallory")
	mustHPT(t, e, "grants", "add", "user:mallory", "admin", "*")
	var tok struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(mustHPT(t, e, "tokens", "create", "--for", "user:mallory", "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		mustHPT(t, e, "machines", "add", fmt.Sprintf("filler-%d", i))
	}
	var st statusJSON
	json.Unmarshal([]byte(mustHPT(t, e, "cluster", "status", "-o", "json")), &st)
	var f *server
	for _, s := range servers {
		if s.name != st.Leader {
			f = s
		}
	}
	// Each node snapshots within 2 intervals of the fillers.
	time.Sleep(time.Second)

	mallory := env{"HOME": e["HOME"], "HPT_TOKEN": tok.Token, "HPT_CLUSTER_KEY": e["HPT_CLUSTER_KEY"], "HPT_ADDR": f.addr}
	mustHPT(t, mallory, "users", "list", "--stale")
	mustHPT(t, e, "tokens", "revoke", tok.ID)
	waitFor(t, 10*time.Second, func() error {
		if r := hpt(t, mallory, "users", "list", "--stale"); r.code == 0 {
			return fmt.Errorf("%s still accepts the revoked token", f.name)
		}
		return nil
	})
	for _, s := range servers {
		s.kill()
	}
	logBefore, _ := os.ReadFile(f.log.Name())
	f.start(t)

	alone := hpt(t, mallory, "users", "list", "--stale")
	if alone.code == 0 {
		t.Fatalf("revoked token read users through %s restarted alone: %s", f.name, alone.stdout)
	}
	if !strings.Contains(alone.stderr, "catching up") {
		t.Fatalf("revoked token through %s restarted alone: exit %d, stderr %q; want a refusal saying it is catching up", f.name, alone.code, alone.stderr)
	}
	admin := env{"HOME": e["HOME"], "HPT_TOKEN": e["HPT_TOKEN"], "HPT_CLUSTER_KEY": e["HPT_CLUSTER_KEY"], "HPT_ADDR": f.addr}
	if r := hpt(t, admin, "events", "--stale"); r.code == 0 || !strings.Contains(r.stderr, "catching up") {
		t.Fatalf("stale read through %s restarted alone: exit %d, stderr %q; want a refusal", f.name, r.code, r.stderr)
	}
	// The node says why, once: its state was behind its log. Without that,
	// the crash lost nothing and the refusals above prove nothing.
	logAfter, _ := os.ReadFile(f.log.Name())
	if !strings.Contains(string(logAfter[len(logBefore):]), "state is behind this node's Raft log") {
		t.Fatalf("%s did not restart behind its log:\n%s", f.name, logAfter[len(logBefore):])
	}

	for _, s := range servers {
		if s != f {
			s.start(t)
		}
	}
	waitFor(t, 30*time.Second, func() error {
		if r := hpt(t, admin, "users", "list"); r.code != 0 {
			return fmt.Errorf("admin through %s: %s", f.name, r.stderr)
		}
		return nil
	})
	if r := hpt(t, mallory, "users", "list", "--stale"); r.code == 0 || !strings.Contains(r.stderr, "revoked") {
		t.Fatalf("revoked token through %s after catching up: exit %d, stderr %q", f.name, r.code, r.stderr)
	}
}
