package main

import (
	"crypto/ed25519"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// TestUsageErrors: a mistyped command or subcommand, a bad flag and a
// wrong number of arguments are usage errors (exit 2) that say so, with
// "did you mean" where a command is close; a group command alone still
// shows its help.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"targts"}, "did you mean targets?"},
		{[]string{"targets", "lst"}, `unknown command "lst" for "hpt targets"; did you mean list?`},
		{[]string{"job", "lst"}, "did you mean list?"},
		{[]string{"cluster", "snapshot", "sav"}, "did you mean save?"},
		{[]string{"tokens", "xyzzy"}, `unknown command "xyzzy" for "hpt tokens"`},
		{[]string{"xyzzy"}, `unknown command "xyzzy" (a config to apply must end in .toml)`},
		{[]string{"events", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"events", "--limit", "many"}, "--limit"},
		{[]string{"grants", "add", "user:a"}, "accepts 3 arg(s)"},
		{[]string{"users", "list", "extra"}, `unknown command "extra"`},
		{[]string{"help", "targts"}, `unknown help topic "targts"; did you mean targets?`},
		{[]string{"help", "targets", "lst"}, "did you mean list?"},
		{[]string{"completion", "bsh"}, "did you mean bash"},
	}
	for _, tc := range tests {
		r := runIn(nil, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("hpt %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), r.code, r.stderr, exitUsage, tc.want)
		}
	}
	for _, args := range [][]string{{"targets"}, {"help", "targets"}, {"targets", "--help"}} {
		r := runIn(nil, args...)
		if r.code != exitOK || !strings.Contains(r.stdout, "Targets registered with the cluster") {
			t.Errorf("hpt %s: exit %d, stdout %q; want the help of targets", strings.Join(args, " "), r.code, r.stdout)
		}
	}
}

// TestUsageErrorsAreClassified: run classifies cobra's errors by the
// hooks classifyUsage installs (flag parsing, argument checks). Cobra's
// required-flag and flag-group checks have no hook, so no command may use
// them without giving them one.
func TestUsageErrorsAreClassified(t *testing.T) {
	unhooked := []string{
		cobra.BashCompOneRequiredFlag,
		"cobra_annotation_required_if_others_set",
		"cobra_annotation_one_required",
		"cobra_annotation_mutually_exclusive",
	}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			for _, k := range unhooked {
				if _, ok := f.Annotations[k]; ok {
					t.Errorf("%s --%s uses %s, whose error run would not classify as a usage error", c.CommandPath(), f.Name, k)
				}
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk((&app{getenv: func(string) string { return "" }}).rootCommand())
}

// TestGrantOnLabelsIsUsageError: `grants add … targets/role=web` is
// refused before connecting (no address is set), with the hint.
func TestGrantOnLabelsIsUsageError(t *testing.T) {
	r := runIn(nil, "grants", "add", "user:a", "view", "targets/role=web")
	if r.code != exitUsage || !strings.Contains(r.stderr, "RESOURCE") || !strings.Contains(r.stderr, "label-based resources are not supported yet") {
		t.Fatalf("grants add on a label: exit %d, stderr %q", r.code, r.stderr)
	}
	// Removing one stays possible: it gets as far as wanting an address.
	r = runIn(nil, "grants", "remove", "user:a", "view", "targets/role=web")
	if r.code != exitUsage || !strings.Contains(r.stderr, "no node address") {
		t.Fatalf("grants remove on a label: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestEventsActorMustHaveAKind: `--actor alice` matched nothing, silently;
// it is a usage error naming the flag and the form wanted.
func TestEventsActorMustHaveAKind(t *testing.T) {
	for _, actor := range []string{"alice", "foo:bar", "user:", "node:"} {
		r := runIn(nil, "events", "--actor", actor)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--actor") {
			t.Errorf("events --actor %s: exit %d, stderr %q", actor, r.code, r.stderr)
		}
	}
	if r := runIn(nil, "events", "--actor", "alice"); !strings.Contains(r.stderr, "user:alice?") {
		t.Errorf("events --actor alice: stderr %q does not suggest user:alice", r.stderr)
	}
	// Well-formed actors get as far as wanting an address.
	for _, actor := range []string{"user:alice@example.com", "node:n1", "target:web-1", "group:ops"} {
		r := runIn(nil, "events", "--actor", actor)
		if r.code != exitUsage || !strings.Contains(r.stderr, "no node address") {
			t.Errorf("events --actor %s: exit %d, stderr %q", actor, r.code, r.stderr)
		}
	}
}

// TestGenTargetKeysSaysItsMode: gen-target-keys picks direct or cluster
// mode from --addr/HPT_ADDR alone; it says which on stderr, every time.
func TestGenTargetKeysSaysItsMode(t *testing.T) {
	dir := t.TempDir()
	client := filepath.Join(dir, "client.db")
	r := runIn(map[string]string{"HPT_KEYSTORE": client}, "gen-target-keys", "--target", "web-1", "--out", filepath.Join(dir, "web-1.db"))
	if r.code != exitOK || !strings.Contains(r.stderr, "direct mode") || !strings.Contains(r.stderr, client) || strings.Contains(r.stdout, "direct mode") {
		t.Fatalf("direct gen-target-keys: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	c := nodetest.Start(t, 1)
	vars := map[string]string{
		"HPT_ADDR":        c.Node(0).Addr(),
		"HPT_TOKEN":       c.Admin.Secret(),
		"HPT_CLUSTER_KEY": pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey)),
		"HPT_KEYSTORE":    client,
	}
	r = runIn(vars, "gen-target-keys", "--target", "web-2", "--out", filepath.Join(dir, "web-2.db"))
	if r.code != exitOK || !strings.Contains(r.stderr, "cluster mode") || strings.Contains(r.stderr, "direct mode") {
		t.Fatalf("cluster gen-target-keys: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestDirectModeHelp: direct mode's flags have their own place in the
// root's help, not its flag list and no subcommand's; no flag's usage has
// a back-quoted word, which pflag would show as its value's name
// ("--ip hpt serve").
func TestDirectModeHelp(t *testing.T) {
	r := runIn(nil, "--help")
	flags := r.stdout[strings.Index(r.stdout, "\nFlags:"):]
	if r.code != exitOK || !strings.Contains(r.stdout, "Direct mode") || !strings.Contains(r.stdout, "hpt --target NAME --ip HOST [--port 6632] FILE.toml") {
		t.Fatalf("hpt --help: exit %d, no direct-mode section:\n%s", r.code, r.stdout)
	}
	for _, f := range []string{"--target", "--ip", "--port", "--dry-run"} {
		if strings.Contains(flags, f) {
			t.Errorf("hpt --help lists %s among the flags:\n%s", f, flags)
		}
	}
	if r := runIn(nil, "users", "--help"); strings.Contains(r.stdout, "--ip") || strings.Contains(r.stdout, "direct mode") {
		t.Errorf("hpt users --help shows direct mode's flags:\n%s", r.stdout)
	}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: usage %q has a back-quote, shown as the value's name", c.CommandPath(), f.Name, f.Usage)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk((&app{getenv: func(string) string { return "" }}).rootCommand())
	// The flags still work, as SPEC section 5 says: --target needs --ip.
	if r := runIn(nil, "--target", "x", "c.toml"); r.code != exitUsage || !strings.Contains(r.stderr, "--ip") {
		t.Errorf("--target without --ip: exit %d, %q", r.code, r.stderr)
	}
}
