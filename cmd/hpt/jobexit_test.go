package main

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// TestJobExitCodes: `hpt job run` exits 0 when every target ended ok or
// changed, 1 when one failed, 3 when none failed but one was unreachable,
// and 2 only for a usage error; the recap labels what its table and its
// totals count, names the failed block's own error and says where the
// logs are.
func TestJobExitCodes(t *testing.T) {
	c := nodetest.Start(t, 1)
	c.StartAgent("web-1", nodetest.AgentOptions{})
	c.RegisterTarget("ghost", t.TempDir())
	c.WaitConnected("web-1")
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", "[[file]]\npath = \""+filepath.Join(dir, "out.txt")+"\"\ncontent = \"hi\\n\"\n")
	bad := write("bad.toml", "[[exec]]\nname = \"boom\"\nscript = \"echo no >&2; exit 7\"\n")
	vars := map[string]string{
		"HPT_ADDR":        c.Node(0).Addr(),
		"HPT_TOKEN":       c.Admin.Secret(),
		"HPT_CLUSTER_KEY": pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey)),
		"HPT_CONFIG":      filepath.Join(t.TempDir(), "cli.json"),
	}

	r := runIn(vars, "job", "run", good, "--targets", "web-1")
	if r.code != exitOK {
		t.Fatalf("a job that succeeds: exit %d, %s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"blocks per target:\nTARGET", "\ntargets: ok=0 changed=1 failed=0", "hpt job logs j-"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("recap lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "on 1 target (batch 1)") {
		t.Errorf("job run says %q, want \"on 1 target\"", r.stderr)
	}

	r = runIn(vars, "job", "run", bad, "--targets", "web-1")
	if r.code != exitFailure || !strings.Contains(r.stderr, "1 target failed") {
		t.Fatalf("a job that fails: exit %d, stderr %q", r.code, r.stderr)
	}
	if recap := r.stdout[strings.Index(r.stdout, "RECAP"):]; !strings.Contains(recap, `exec "boom": `) || strings.Contains(recap, "blocks failed") {
		t.Errorf("recap's ERROR is not the failed block's own:\n%s", r.stdout)
	}
	// The live line per target, before the recap, names it too: the
	// target's error is the failed block's, not a count of blocks.
	if live := r.stdout[:strings.Index(r.stdout, "RECAP")]; !strings.Contains(live, `failed: exec "boom": exit status 7`) || strings.Contains(r.stdout+r.stderr, "blocks failed") {
		t.Errorf("the progress does not name the failed block and its error:\n%s", r.stdout)
	}

	// No match: the refusal gives the selector as --selector takes it.
	r = runIn(vars, "job", "run", good, "--selector", "role=nothing,zone=a")
	if r.code != exitFailure || !strings.Contains(r.stderr, "target matching --selector role=nothing,zone=a") || strings.Contains(r.stderr, "map[") || strings.Contains(r.stderr, "--targets") {
		t.Errorf("a job matching no target: exit %d, stderr %q", r.code, r.stderr)
	}

	r = runIn(vars, "job", "run", good, "--targets", "ghost", "--timeout", "1s")
	// 3, written out: the constant must not drift back to usage's 2.
	if r.code != 3 || !strings.Contains(r.stderr, "1 target unreachable") {
		t.Fatalf("a job on an unreachable target: exit %d, stderr %q", r.code, r.stderr)
	}

	for _, args := range [][]string{
		{"job", "run"},
		{"job", "run", good, "--batch", "x"},
		{"job", "run", good, "--timeout", "-1s"},
	} {
		if r := runIn(vars, args...); r.code != exitUsage {
			t.Errorf("hpt %s: exit %d, want %d (usage)", strings.Join(args, " "), r.code, exitUsage)
		}
	}
}

// TestDryRunIsMarked: a dry-run job says so in the recap, in job list and
// in job logs, and its JSON says dry_run.
func TestDryRunIsMarked(t *testing.T) {
	c := nodetest.Start(t, 1)
	c.StartAgent("web-1", nodetest.AgentOptions{})
	c.WaitConnected("web-1")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfg, []byte("[[file]]\npath = \""+filepath.Join(dir, "out.txt")+"\"\ncontent = \"hi\\n\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"HPT_ADDR":        c.Node(0).Addr(),
		"HPT_TOKEN":       c.Admin.Secret(),
		"HPT_CLUSTER_KEY": pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey)),
		"HPT_CONFIG":      filepath.Join(t.TempDir(), "cli.json"),
	}
	r := runIn(vars, "job", "run", cfg, "--dry-run", "--detach")
	if r.code != exitOK {
		t.Fatalf("job run --dry-run --detach: exit %d, %s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	r = runIn(vars, "job", "status", id)
	if r.code != exitOK || !strings.Contains(r.stdout, "RECAP") {
		// The detached job may still run: wait through a real run.
		r = runIn(vars, "job", "run", cfg, "--dry-run")
	}
	if r.code != exitOK || !strings.Contains(r.stdout, "DRY RUN: nothing was changed") {
		t.Fatalf("dry-run recap: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runIn(vars, "job", "list")
	if r.code != exitOK || !strings.Contains(r.stdout, "(dry run)") {
		t.Fatalf("job list: exit %d:\n%s", r.code, r.stdout)
	}
	r = runIn(vars, "job", "logs", id)
	if r.code != exitOK || !strings.Contains(r.stdout, "DRY RUN") {
		t.Fatalf("job logs: exit %d:\n%s", r.code, r.stdout)
	}
	r = runIn(vars, "job", "status", id, "-o", "json")
	var j jobJSON
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || !j.DryRun {
		t.Fatalf("job status -o json: %v, dry_run %t\n%s", err, j.DryRun, r.stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.txt")); !os.IsNotExist(err) {
		t.Fatalf("the dry run wrote its file (%v)", err)
	}
}
