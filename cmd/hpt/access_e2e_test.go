package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAccessProcesses: with real server processes, a view-only token reads
// on every node but cannot write on any, each denial naming the missing
// grant and changing nothing; a revoked token then fails on every node
// within a second.
func TestAccessProcesses(t *testing.T) {
	admin, servers := startServers(t, 3)
	mustHPT(t, admin, "users", "add", "viewer@example.com")
	mustHPT(t, admin, "grants", "add", "user:viewer@example.com", "view", "*")
	var tok struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	out := mustHPT(t, admin, "tokens", "create", "--for", "user:viewer@example.com", "-o", "json")
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Token == "" {
		t.Fatalf("tokens create -o json: %q: %v", out, err)
	}
	viewerOn := func(s *server) env {
		e := env{}
		for k, v := range admin {
			e[k] = v
		}
		e["HPT_ADDR"] = s.addr
		e["HPT_TOKEN"] = tok.Token
		return e
	}

	for i, s := range servers {
		e := viewerOn(s)
		mustHPT(t, e, "users", "list")
		r := hpt(t, e, "users", "add", fmt.Sprintf("intruder-%d", i))
		if r.code != exitFailure || !strings.Contains(r.stderr, "no grant for admin") || !strings.Contains(r.stderr, "hpt grants add user:viewer@example.com") {
			t.Errorf("users add with a view token on %s: exit %d, stderr %q; want exit %d naming the missing grant", s.name, r.code, r.stderr, exitFailure)
		}
		r = hpt(t, e, "grants", "add", "user:viewer@example.com", "admin", "*")
		if r.code != exitFailure {
			t.Errorf("a view token granted itself admin on %s: exit %d, %s", s.name, r.code, r.stderr)
		}
	}
	if out := mustHPT(t, admin, "users", "list", "-o", "json"); strings.Contains(out, "intruder") {
		t.Fatalf("a denied write changed the state: %s", out)
	}
	var grants []grantJSON
	if err := json.Unmarshal([]byte(mustHPT(t, admin, "grants", "list", "-o", "json")), &grants); err != nil {
		t.Fatal(err)
	}
	for _, g := range grants {
		if g.Subject == "user:viewer@example.com" && g.Privilege != "view" {
			t.Fatalf("a denied grant was added: %+v", g)
		}
	}

	mustHPT(t, admin, "tokens", "revoke", tok.ID)
	revoked := time.Now()
	for _, s := range servers {
		e := viewerOn(s)
		waitFor(t, 5*time.Second, func() error {
			r := hpt(t, e, "users", "list")
			if r.code == exitOK {
				return fmt.Errorf("revoked token still reads on %s", s.name)
			}
			if !strings.Contains(r.stderr, "revoked") {
				return fmt.Errorf("on %s: %s", s.name, r.stderr)
			}
			return nil
		})
		if d := time.Since(revoked); d > time.Second {
			t.Errorf("revoked token refused on %s only after %v", s.name, d)
		}
	}
}
