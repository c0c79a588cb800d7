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
// grant and changing nothing; a revoked token is then refused by each node
// from the moment that node has applied the revocation.
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
	// The revocation is committed once the command returns, so the commit
	// index now covers it. Each node is asked once it has applied that far,
	// and must refuse at once: no retry, and no clock, so CLI start-up
	// times do not enter into it.
	var st statusJSON
	if err := json.Unmarshal([]byte(mustHPT(t, admin, "cluster", "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	var committed uint64
	for _, m := range st.Members {
		committed = max(committed, m.CommitIndex)
	}
	for _, s := range servers {
		self := env{}
		for k, v := range admin {
			self[k] = v
		}
		self["HPT_ADDR"] = s.addr
		waitFor(t, 60*time.Second, func() error {
			var st statusJSON
			if err := json.Unmarshal([]byte(mustHPT(t, self, "cluster", "status", "-o", "json")), &st); err != nil {
				return err
			}
			for _, m := range st.Members {
				if m.Name == s.name && m.AppliedIndex >= committed {
					return nil
				}
			}
			return fmt.Errorf("%s has not applied index %d: %+v", s.name, committed, st.Members)
		})
		r := hpt(t, viewerOn(s), "users", "list")
		if r.code == exitOK || !strings.Contains(r.stderr, "revoked") {
			t.Errorf("revoked token on %s, which has applied the revocation: exit %d, stderr %q; want it refused as revoked", s.name, r.code, r.stderr)
		}
	}
}
