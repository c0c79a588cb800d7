package main

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// TestEventsSinceTime: --since takes a time or a duration ago as well as
// an index, and starts at the first event at or after it; anything else
// is a usage error naming the flag.
func TestEventsSinceTime(t *testing.T) {
	c := nodetest.Start(t, 1)
	vars := map[string]string{
		"HPT_ADDR":        c.Node(0).Addr(),
		"HPT_TOKEN":       c.Admin.Secret(),
		"HPT_CLUSTER_KEY": pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey)),
		"HPT_CONFIG":      filepath.Join(t.TempDir(), "cli.json"),
	}
	add := func(name string) {
		t.Helper()
		if r := runIn(vars, "users", "add", name); r.code != exitOK {
			t.Fatalf("users add %s: exit %d, %s", name, r.code, r.stderr)
		}
	}
	list := func(args ...string) []events.JSON {
		t.Helper()
		r := runIn(vars, append([]string{"events", "--type", "user_added", "-o", "json"}, args...)...)
		var out []events.JSON
		if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &out) != nil {
			t.Fatalf("events %v: exit %d, %s%s", args, r.code, r.stdout, r.stderr)
		}
		return out
	}
	names := func(evs []events.JSON) string {
		var out []string
		for _, e := range evs {
			var p struct{ Name string }
			json.Unmarshal(e.Payload, &p)
			out = append(out, p.Name)
		}
		return strings.Join(out, ",")
	}
	// Enough events before the time for the search to take several
	// steps, and some after.
	for i := range 9 {
		add(fmt.Sprintf("before-%d", i))
	}
	mark := time.Now()
	for i := range 3 {
		add(fmt.Sprintf("after-%d", i))
	}
	all := list()
	if got := names(list("--since", mark.Format(time.RFC3339Nano))); got != "after-0,after-1,after-2" {
		t.Fatalf("--since %s: %s", mark.Format(time.RFC3339Nano), got)
	}
	if got := names(list("--since", "1h")); got != names(all) {
		t.Fatalf("--since 1h: %s, want all: %s", got, names(all))
	}
	if got := list("--since", time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05")); len(got) != 0 {
		t.Fatalf("--since an hour ahead: %s", names(got))
	}
	if got := names(list("--since", "2000-01-01")); got != names(all) {
		t.Fatalf("--since 2000-01-01: %s", got)
	}
	if got := names(list("--since", fmt.Sprint(all[9].Index))); got != "after-0,after-1,after-2" {
		t.Fatalf("--since %d: %s", all[9].Index, got)
	}
	// --follow prints rows as they come, aligned all the same.
	r := runIn(vars, "events", "--follow", "--limit", "4")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if r.code != exitOK || len(lines) != 5 {
		t.Fatalf("events --follow --limit 4: exit %d, %d lines:\n%s%s", r.code, len(lines), r.stdout, r.stderr)
	}
	col := strings.Index(lines[0], "TYPE")
	for _, l := range lines[1:] {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Fatalf("events --follow: TYPE not at column %d in every row:\n%s", col, r.stdout)
		}
	}
	for _, bad := range []string{"yesterday", "-5m", "2026-13-01"} {
		if r := runIn(vars, "events", "--since", bad); r.code != exitUsage || !strings.Contains(r.stderr, "--since") {
			t.Errorf("--since %s: exit %d, %s", bad, r.code, r.stderr)
		}
	}
}
