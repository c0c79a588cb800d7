package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/rpc"
)

// What a person and a script see of a target in flight whose agent is not
// connected.
func TestJobTargetWaitingShown(t *testing.T) {
	since := time.Date(2025, 3, 1, 12, 0, 5, 0, time.UTC)
	for _, tc := range []struct {
		target      *rpc.JobTargetInfo
		state, wait string
	}{
		{&rpc.JobTargetInfo{Status: "dispatched"}, "dispatched", ""},
		{&rpc.JobTargetInfo{Status: "running", Node: "n1"}, "running on n1", ""},
		{&rpc.JobTargetInfo{Status: "dispatched", AgentDisconnected: true, DisconnectedSinceUnixNano: since.UnixNano()},
			"waiting: disconnected since 2025-03-01T12:00:05Z", "disconnected since 2025-03-01T12:00:05Z"},
		{&rpc.JobTargetInfo{Status: "dispatched", AgentDisconnected: true}, "waiting: never connected", "never connected"},
		{&rpc.JobTargetInfo{Status: "running", Node: "n1", AgentDisconnected: true, DisconnectedSinceUnixNano: since.UnixNano()},
			"running on n1, waiting: disconnected since 2025-03-01T12:00:05Z", "disconnected since 2025-03-01T12:00:05Z"},
	} {
		if got := targetState(tc.target); got != tc.state {
			t.Errorf("%v: shown %q, want %q", tc.target, got, tc.state)
		}
		j := toJobJSON(&rpc.JobInfo{Targets: []*rpc.JobTargetInfo{tc.target}}).Targets[0]
		if j.Waiting != tc.wait {
			t.Errorf("%v: json waiting %q, want %q", tc.target, j.Waiting, tc.wait)
		}
		if got := j.DisconnectedSince != nil; got != (tc.target.GetDisconnectedSinceUnixNano() != 0) {
			t.Errorf("%v: json disconnected_since %v", tc.target, j.DisconnectedSince)
		}
	}
}

func TestJobRunConnectTimeoutUsage(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "small.toml")
	os.WriteFile(cfg, []byte("[[exec]]\nscript = \"true\"\n"), 0o644)
	r := hpt(t, env{"HOME": t.TempDir(), "HPT_ADDR": "127.0.0.1:1", "HPT_TOKEN": "sk_x"}, "job", "run", cfg, "--connect-timeout", "500ms")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--connect-timeout") {
		t.Fatalf("--connect-timeout 500ms: exit %d, stderr %q; want a usage error naming the flag", r.code, r.stderr)
	}
}

// `hpt job run` with a target whose agent is stopped: the progress says
// the target waits for its disconnected agent, and after --connect-timeout
// it is unreachable while the other target runs.
func TestJobRunDisconnectedTarget(t *testing.T) {
	e, _ := startServers(t, 1)
	away := startAgentProc(t, e, "web-1", "role=web")
	startAgentProc(t, e, "web-2", "role=web")
	waitTargets(t, e, 2)
	away.kill()
	waitFor(t, 30*time.Second, func() error {
		var ts []targetJSON
		json.Unmarshal([]byte(mustHPT(t, e, "targets", "list", "-o", "json")), &ts)
		for _, tg := range ts {
			if tg.Name == "web-1" && tg.Status != "disconnected" {
				return fmt.Errorf("web-1 is %s", tg.Status)
			}
		}
		return nil
	})

	dir := t.TempDir()
	cfg := filepath.Join(dir, "count.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[[exec]]\nscript = \"echo run >> %s/{{ .Target.Name }}.runs\"\n", dir)), 0o644)
	r := hpt(t, e, "job", "run", cfg, "--targets", "web-*", "--connect-timeout", "1s")
	if r.code != exitUnreachable {
		t.Errorf("exit %d, want %d (unreachable)", r.code, exitUnreachable)
	}
	if !regexp.MustCompile(`(?m)^web-1 +waiting: disconnected since \d{4}-\d\d-\d\dT`).MatchString(r.stdout) {
		t.Errorf("progress never says web-1 waits for its disconnected agent:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`(?m)^web-1 +unreachable: agent not connected within the connect timeout 1s`).MatchString(r.stdout) {
		t.Errorf("web-1 not unreachable by the connect timeout:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`(?m)^web-2 +changed`).MatchString(r.stdout) {
		t.Errorf("web-2 did not run:\n%s", r.stdout)
	}
}
