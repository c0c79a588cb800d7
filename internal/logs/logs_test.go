package logs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// raft logs its configuration as hclog.Fmt("%+v", servers); the line must
// show the servers, not the format and a list.
func TestHclogFmtIsRendered(t *testing.T) {
	var buf bytes.Buffer
	l := Hclog(slog.New(slog.NewTextHandler(&buf, nil)), "raft", nil)
	l.Info("initial configuration", "index", 1, "servers", hclog.Fmt("%+v", []struct{ ID string }{{"n1"}}))
	got := buf.String()
	if !strings.Contains(got, "servers=[{ID:n1}]") || strings.Contains(got, "%+v") {
		t.Fatalf("log line %q, want servers=[{ID:n1}]", got)
	}
}

// levelOf returns the level of the one line in buf.
func levelOf(t *testing.T, buf *bytes.Buffer) string {
	t.Helper()
	line := strings.TrimSpace(buf.String())
	buf.Reset()
	if strings.Count(line, "\n") != 0 {
		t.Fatalf("want one line, got %q", line)
	}
	for _, f := range strings.Fields(line) {
		if l, ok := strings.CutPrefix(f, "level="); ok {
			return l
		}
	}
	t.Fatalf("no level in %q", line)
	return ""
}

// The warnings raft logs on every healthy start go to debug; the same
// messages with values that mean trouble, and everything else, keep their
// level.
func TestHclogRoutineRaftWarningsAreDebug(t *testing.T) {
	type serverID string // raft logs its own string types
	for _, tc := range []struct {
		level hclog.Level
		msg   string
		args  []any
		want  string
	}{
		{hclog.Warn, "no known peers, aborting election", nil, "DEBUG"},
		{hclog.Warn, "heartbeat timeout reached, starting election", []any{"last-leader-addr", serverID(""), "last-leader-id", serverID("")}, "DEBUG"},
		{hclog.Warn, "heartbeat timeout reached, starting election", []any{"last-leader-addr", serverID("127.0.0.1:7400"), "last-leader-id", serverID("n1")}, "WARN"},
		{hclog.Warn, "heartbeat timeout reached, starting election", nil, "WARN"},
		{hclog.Warn, "failed to get previous log", []any{"previous-index", uint64(1), "last-index", uint64(0), "error", "log not found"}, "DEBUG"},
		{hclog.Warn, "failed to get previous log", []any{"previous-index", uint64(90), "last-index", uint64(40), "error", "log not found"}, "WARN"},
		{hclog.Warn, "appendEntries rejected, sending older logs", []any{"peer", "n2", "next", uint64(1)}, "DEBUG"},
		{hclog.Warn, "appendEntries rejected, sending older logs", []any{"peer", "n2", "next", uint64(41)}, "WARN"},
		{hclog.Warn, "failed to contact", []any{"server-id", "n1"}, "WARN"},
		{hclog.Error, "failed to appendEntries to", []any{"peer", "n1"}, "ERROR"},
		{hclog.Info, "entering follower state", nil, "INFO"},
	} {
		var buf bytes.Buffer
		l := Hclog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "raft", nil)
		l.Log(tc.level, tc.msg, tc.args...)
		if got := levelOf(t, &buf); got != tc.want {
			t.Errorf("%s %q %v: logged at %s, want %s", tc.level, tc.msg, tc.args, got, tc.want)
		}
	}
}

// Once its owner raises Quiet, raft's and memberlist's warnings and errors
// are debug; before, they are not.
func TestQuietDemotesAfterRaise(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var q Quiet
	h := Hclog(base, "raft-net", &q).Named("x").With("k", "v")
	std := Std(base, "gossip", &q)
	h.Error("failed to decode incoming command", "error", "transport shutdown")
	if got := levelOf(t, &buf); got != "ERROR" {
		t.Fatalf("before Raise: %s, want ERROR", got)
	}
	std.Printf("[ERR] memberlist: Failed to send gossip")
	if got := levelOf(t, &buf); got != "ERROR" {
		t.Fatalf("memberlist before Raise: %s, want ERROR", got)
	}
	q.Raise()
	for _, log := range []func(){
		func() { h.Error("failed to decode incoming command", "error", "transport shutdown") },
		func() { h.Warn("failed to contact", "server-id", "n1") },
		func() { std.Printf("[ERR] memberlist: Failed to send gossip") },
		func() { std.Printf("[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed") },
	} {
		log()
		if got := levelOf(t, &buf); got != "DEBUG" {
			t.Fatalf("after Raise: %s, want DEBUG", got)
		}
	}
	var none *Quiet
	if none.Raised() {
		t.Fatal("a nil Quiet is raised")
	}
}
