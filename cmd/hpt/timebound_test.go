package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// TestGrantExpiryFlags: --ttl and --until are exclusive, --ttl must be
// positive and --until an RFC 3339 time ahead; each mistake is a usage
// error naming the flag, refused before any connection (no address set).
func TestGrantExpiryFlags(t *testing.T) {
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	add := []string{"grants", "add", "user:a", "view", "*"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ttl", "4h", "--until", future}, "--ttl and --until"},
		{[]string{"--ttl", "0"}, "--ttl 0s: want a duration greater than 0"},
		{[]string{"--ttl", "-1h"}, "--ttl -1h0m0s"},
		{[]string{"--ttl", "soon"}, "--ttl"},
		{[]string{"--until", "tomorrow"}, `--until "tomorrow": want an RFC 3339 time`},
		{[]string{"--until", "2026-12-03 10:00"}, "--until"},
		{[]string{"--until", past}, "--until " + past + ": is not in the future"},
		{[]string{"--until", ""}, "--until"},
	} {
		r := runIn(nil, append(slices.Clone(add), tc.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("grants add %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), r.code, r.stderr, exitUsage, tc.want)
		}
	}
	// Good flags get as far as wanting an address.
	for _, args := range [][]string{{"--ttl", "4h"}, {"--until", future}, {}} {
		r := runIn(nil, append(slices.Clone(add), args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "no node address") {
			t.Errorf("grants add %s: exit %d, stderr %q; want it to want an address", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	// remove takes neither.
	if r := runIn(nil, "grants", "remove", "user:a", "view", "*", "--ttl", "1h"); r.code != exitUsage || !strings.Contains(r.stderr, "unknown flag: --ttl") {
		t.Errorf("grants remove --ttl: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestGrantsExpiryJSON: `grants list` shows the expiry (EXPIRES, and
// expires in JSON).
func TestGrantsExpiryJSON(t *testing.T) {
	c := nodetest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := c.Client(0)
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"HPT_ADDR": c.Node(0).Addr(), "HPT_TOKEN": c.Admin.Secret(),
		"HPT_CLUSTER_KEY": pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey)), "HPT_CONFIG": t.TempDir() + "/cli.json"}
	before := time.Now()
	if r := runIn(vars, "grants", "add", "user:alice", "view", "targets/*", "--ttl", "4h"); r.code != 0 {
		t.Fatalf("grants add --ttl: exit %d, %s", r.code, r.stderr)
	}
	until := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	if r := runIn(vars, "grants", "add", "user:alice", "provision", "targets/*", "--until", until.Format(time.RFC3339)); r.code != 0 {
		t.Fatalf("grants add --until: exit %d, %s", r.code, r.stderr)
	}
	r := runIn(vars, "grants", "list", "--for", "user:alice", "-o", "json")
	if r.code != 0 {
		t.Fatalf("grants list: exit %d, %s", r.code, r.stderr)
	}
	var grants []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &grants); err != nil || len(grants) != 2 {
		t.Fatalf("grants list -o json = %s (%v)", r.stdout, err)
	}
	for _, g := range grants {
		exp, err := time.Parse(time.RFC3339Nano, g["expires"].(string))
		if err != nil {
			t.Fatalf("expires of %v: %v", g, err)
		}
		switch g["privilege"] {
		case "view":
			if exp.Before(before.Add(4*time.Hour)) || exp.After(time.Now().Add(4*time.Hour)) {
				t.Errorf("--ttl 4h grant expires %s, want 4h after it was added", exp)
			}
		case "provision":
			if !exp.Equal(until) {
				t.Errorf("--until grant expires %s, want %s", exp, until)
			}
		}
		if g["expired"] != false {
			t.Errorf("grant %v is shown expired", g)
		}
	}
	r = runIn(vars, "grants", "list", "--for", "user:alice")
	if !strings.Contains(r.stdout, "EXPIRES") || !strings.Contains(r.stdout, until.Format(time.RFC3339)) {
		t.Errorf("grants list table:\n%s", r.stdout)
	}
}
