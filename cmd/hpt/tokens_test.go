package main

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// TestTokenTTL: `tokens create` gives a token 30 days unless --ttl says
// otherwise, --ttl 0 gives one that never expires, a TTL under a second
// (which would round to "never") is refused, and `tokens list` marks a
// token past its expiry.
func TestTokenTTL(t *testing.T) {
	c := nodetest.Start(t, 1)
	vars := map[string]string{
		"HPT_ADDR":        c.Node(0).Addr(),
		"HPT_TOKEN":       c.Admin.Secret(),
		"HPT_CLUSTER_KEY": pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey)),
		"HPT_CONFIG":      filepath.Join(t.TempDir(), "cli.json"),
	}
	if r := runIn(vars, "users", "add", "bob"); r.code != exitOK {
		t.Fatalf("users add: exit %d, %s", r.code, r.stderr)
	}
	create := func(args ...string) (id string, expires *time.Time) {
		t.Helper()
		r := runIn(vars, append([]string{"tokens", "create", "--for", "user:bob", "-o", "json"}, args...)...)
		var out struct {
			ID      string     `json:"id"`
			Expires *time.Time `json:"expires"`
		}
		if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &out) != nil {
			t.Fatalf("tokens create %v: exit %d, %s%s", args, r.code, r.stdout, r.stderr)
		}
		return out.ID, out.Expires
	}
	before := time.Now()
	_, exp := create()
	if exp == nil || exp.Before(before.Add(defaultTokenTTL-time.Minute)) || exp.After(time.Now().Add(defaultTokenTTL+time.Minute)) {
		t.Fatalf("default token expires %v, want 30 days from now", exp)
	}
	if _, exp := create("--ttl", "0"); exp != nil {
		t.Fatalf("--ttl 0 token expires %v, want never", exp)
	}
	if r := runIn(vars, "tokens", "create", "--for", "user:bob", "--ttl", "500ms"); r.code != exitUsage || !strings.Contains(r.stderr, "--ttl") {
		t.Fatalf("--ttl 500ms: exit %d, %s", r.code, r.stderr)
	}
	short, _ := create("--ttl", "1s")
	var listed []tokenJSON
	for i := 0; ; i++ {
		r := runIn(vars, "tokens", "list", "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil {
			t.Fatalf("tokens list -o json: %v\n%s", err, r.stdout)
		}
		if expired(listed, short) {
			break
		}
		if i == 50 {
			t.Fatalf("token %s with --ttl 1s is not marked expired: %+v", short, listed)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, tok := range listed {
		if tok.ID != short && tok.Expired {
			t.Errorf("token %s marked expired: %+v", tok.ID, tok)
		}
	}
	r := runIn(vars, "tokens", "list")
	if !strings.Contains(r.stdout, "expired ") || strings.Count(r.stdout, "expired ") != 1 {
		t.Fatalf("tokens list table:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("%s  ", short)) {
		t.Fatalf("tokens list lacks %s:\n%s", short, r.stdout)
	}
}

func expired(list []tokenJSON, id string) bool {
	for _, t := range list {
		if t.ID == id {
			return t.Expired
		}
	}
	return false
}
