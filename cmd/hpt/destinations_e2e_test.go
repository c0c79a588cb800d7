package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestDestinationsProcesses: destinations added, listed (JSON field names
// of SPEC section 10) and removed with the CLI against a real server; bad
// input refused naming the field, locally (exit 2) or by the node (exit 1),
// changing nothing; and auth check on a login role answers with the grant.
func TestDestinationsProcesses(t *testing.T) {
	admin, _ := startServers(t, 1)
	mustHPT(t, admin, "gen-target-keys", "--target", "web-1", "--out", filepath.Join(t.TempDir(), "web-1.db"))

	mustHPT(t, admin, "destinations", "add", "web-1", "--kind", "ssh", "--addr", "127.0.0.1:22", "--connector", "web-1", "--labels", "env=prod,team=web")
	mustHPT(t, admin, "destinations", "add", "redis", "--kind", "tcp", "--addr", "127.0.0.1:6379", "--connector", "web-1")

	bad := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--kind", "sshh", "--addr", "h:22"}, exitUsage, `kind "sshh" is not one of ssh, postgres, kubernetes, tcp`},
		{[]string{"--kind", "ssh", "--addr", "h"}, exitUsage, `addr "h": want HOST:PORT`},
		{[]string{"--kind", "ssh", "--addr", "h:99999"}, exitUsage, `port "99999"`},
		{[]string{"--kind", "ssh"}, exitUsage, "addr is required for ssh destinations"},
		{[]string{"--kind", "tcp", "--addr", "h:1"}, exitUsage, "connector is required"},
		{[]string{"--kind", "ssh", "--addr", "h:22", "--labels", "a"}, exitUsage, `--labels: label "a"`},
		{[]string{"--kind", "ssh", "--addr", "h:22", "--connector", "ghost"}, exitFailure, `connector "ghost" is not a registered target`},
	}
	for _, b := range bad {
		r := hpt(t, admin, append([]string{"destinations", "add", "db-1"}, b.args...)...)
		if r.code != b.code || !strings.Contains(r.stderr, b.want) {
			t.Errorf("destinations add db-1 %s: exit %d, stderr %q; want exit %d …%s", strings.Join(b.args, " "), r.code, r.stderr, b.code, b.want)
		}
	}
	if r := hpt(t, admin, "destinations", "add", "web-1", "--kind", "ssh", "--addr", "h:22"); r.code != exitFailure || !strings.Contains(r.stderr, `destination "web-1" already exists`) {
		t.Errorf("adding web-1 twice: exit %d, %q", r.code, r.stderr)
	}

	out := mustHPT(t, admin, "destinations", "list", "-o", "json")
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) != 2 {
		t.Fatalf("destinations list -o json: %q: %v", out, err)
	}
	var fields []string
	for k := range raw[0] {
		fields = append(fields, k)
	}
	slices.Sort(fields)
	if got := strings.Join(fields, ","); got != "addr,connector,kind,labels,mesh,name,status" {
		t.Fatalf("destinations list JSON fields %s, want SPEC's name, kind, addr, connector, mesh, labels, status", got)
	}
	var list []destinationJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	redis, web := list[0], list[1]
	if redis.Name != "redis" || !redis.Mesh || redis.Status != "disconnected" ||
		web.Name != "web-1" || web.Kind != "ssh" || web.Addr != "127.0.0.1:22" || web.Connector != "web-1" || web.Mesh || web.Labels["team"] != "web" {
		t.Fatalf("destinations list: %+v", list)
	}

	mustHPT(t, admin, "users", "add", "alice")
	if r := hpt(t, admin, "grants", "add", "user:alice", "login:deploy", "targets/web-*"); r.code != exitUsage || !strings.Contains(r.stderr, "is a destination role: grant it on destinations/") {
		t.Errorf("login grant on targets: exit %d, %q", r.code, r.stderr)
	}
	mustHPT(t, admin, "grants", "add", "user:alice", "login:deploy", "destinations/web-*")
	if out := mustHPT(t, admin, "auth", "check", "user:alice", "login:deploy", "destinations/web-1"); !strings.Contains(out, "allowed by grant user:alice login:deploy destinations/web-*") {
		t.Errorf("auth check: %q", out)
	}
	if r := hpt(t, admin, "auth", "check", "user:admin", "login:deploy", "destinations/web-1"); r.code != exitFailure || !strings.Contains(r.stdout, "admin never implies a destination role") {
		t.Errorf("auth check of admin's login: exit %d, %q", r.code, r.stdout)
	}

	mustHPT(t, admin, "destinations", "remove", "web-1")
	if r := hpt(t, admin, "destinations", "remove", "web-1"); r.code != exitFailure || !strings.Contains(r.stderr, `destination "web-1" does not exist`) {
		t.Errorf("removing web-1 twice: exit %d, %q", r.code, r.stderr)
	}
	evs := mustHPT(t, admin, "events", "--type", "destination_added", "-o", "json")
	if !strings.Contains(evs, `"type":"destination_added"`) && !strings.Contains(evs, `"type": "destination_added"`) {
		t.Errorf("events --type destination_added: %s", evs)
	}
}
