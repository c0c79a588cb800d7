package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// runIn runs the CLI in this process with exactly the environment vars.
func runIn(vars map[string]string, args ...string) result {
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb, func(k string) string { return vars[k] })
	return result{out.String(), errb.String(), code}
}

// TestLoginPinsTheClusterKey: `hpt login` shows the key the node presents
// (rpc.FetchClusterKey), saves address, key and token only when the key is
// pinned and the token works, and later commands use what it saved, the
// pin included.
func TestLoginPinsTheClusterKey(t *testing.T) {
	c := nodetest.Start(t, 1)
	addr := c.Node(0).Addr()
	fp := pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := rpc.FetchClusterKey(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if pinned.Fingerprint(pub) != fp {
		t.Fatalf("FetchClusterKey = %s, want the cluster key %s", pinned.Fingerprint(pub), fp)
	}

	cfgPath := filepath.Join(t.TempDir(), "hpt", "cli.json")
	vars := map[string]string{"HPT_CONFIG": cfgPath}
	unsaved := func(what string) {
		t.Helper()
		if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
			t.Fatalf("%s saved the CLI config (%v)", what, err)
		}
	}
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherFP := pinned.Fingerprint(otherPub)

	// Not a terminal and no pin: shown, not trusted.
	r := runIn(vars, "login", addr, "--token", c.Admin.Secret())
	if r.code != exitFailure || !strings.Contains(r.stderr, fp) || !strings.Contains(r.stderr, "nothing saved") {
		t.Fatalf("login without a pin or terminal: exit %d, stderr %q", r.code, r.stderr)
	}
	unsaved("login without a pin")

	// Another key pinned: refused, naming both.
	r = runIn(vars, "login", addr, "--token", c.Admin.Secret(), "--cluster-key", otherFP)
	if r.code != exitFailure || !strings.Contains(r.stderr, fp) || !strings.Contains(r.stderr, otherFP) {
		t.Fatalf("login pinning another key: exit %d, stderr %q", r.code, r.stderr)
	}
	unsaved("login pinning another key")

	// A malformed pin is a usage error naming the flag's value.
	r = runIn(vars, "login", addr, "--cluster-key", "SHA256:short")
	if r.code != exitUsage || !strings.Contains(r.stderr, "SHA256:short") {
		t.Fatalf("login with a malformed pin: exit %d, stderr %q", r.code, r.stderr)
	}
	unsaved("login with a malformed pin")

	// The right key with a bad token: nothing saved either.
	r = runIn(vars, "login", addr, "--cluster-key", fp, "--token", "sk_nope")
	if r.code != exitFailure || !strings.Contains(r.stderr, "token check") {
		t.Fatalf("login with a bad token: exit %d, stderr %q", r.code, r.stderr)
	}
	unsaved("login with a bad token")

	// The right key, through the environment as well as the flag.
	r = runIn(map[string]string{"HPT_CONFIG": cfgPath, "HPT_CLUSTER_KEY": fp, "HPT_TOKEN": c.Admin.Secret()}, "login", addr)
	if r.code != exitOK || !strings.Contains(r.stderr, "Authenticated as user:admin") {
		t.Fatalf("login: exit %d, stderr %q", r.code, r.stderr)
	}
	st, err := os.Stat(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("CLI config mode %v, want 0600 (it holds a token)", st.Mode().Perm())
	}
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var saved cliConfig
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	if saved != (cliConfig{Addr: addr, ClusterKey: fp, Token: c.Admin.Secret()}) {
		t.Fatalf("saved %+v", saved)
	}

	// Later commands need nothing but the saved file.
	if r := runIn(vars, "users", "list"); r.code != exitOK {
		t.Fatalf("users list from the saved config: exit %d, %s", r.code, r.stderr)
	}
	// The saved pin is enforced: with another key in the file, the node
	// is refused.
	saved.ClusterKey = otherFP
	b, _ = json.Marshal(saved)
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runIn(vars, "users", "list"); r.code != exitFailure || !strings.Contains(r.stderr, fp) {
		t.Fatalf("users list with another key saved: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestLoginStoresEveryMember: `hpt login` with one node's address saves
// every member's, so the CLI fails over when that node is gone; `hpt
// cluster status` refreshes a saved list that has gone out of date, and
// leaves it alone when --addr or HPT_ADDR chose the nodes.
func TestLoginStoresEveryMember(t *testing.T) {
	c := nodetest.Start(t, 3)
	c.WaitLeader()
	fp := pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey))
	cfgPath := filepath.Join(t.TempDir(), "cli.json")
	vars := map[string]string{"HPT_CONFIG": cfgPath}
	saved := func() []string {
		t.Helper()
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		var cfg cliConfig
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		got := strings.Split(cfg.Addr, ",")
		sort.Strings(got)
		return got
	}
	all := c.Addrs()
	sort.Strings(all)

	r := runIn(vars, "login", c.Node(0).Addr(), "--cluster-key", fp, "--token", c.Admin.Secret())
	if r.code != exitOK {
		t.Fatalf("login: exit %d, %s", r.code, r.stderr)
	}
	if got := saved(); !slices.Equal(got, all) {
		t.Fatalf("login saved addresses %v, want every member's %v", got, all)
	}

	// An out-of-date list (one member) is refreshed by cluster status...
	b, _ := json.Marshal(cliConfig{Addr: c.Node(1).Addr(), ClusterKey: fp, Token: c.Admin.Secret()})
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runIn(map[string]string{"HPT_CONFIG": cfgPath, "HPT_ADDR": c.Node(1).Addr()}, "cluster", "status"); r.code != exitOK {
		t.Fatalf("cluster status: exit %d, %s", r.code, r.stderr)
	}
	if got := saved(); !slices.Equal(got, []string{c.Node(1).Addr()}) {
		t.Fatalf("cluster status with HPT_ADDR rewrote the saved addresses: %v", got)
	}
	if r := runIn(vars, "cluster", "status"); r.code != exitOK {
		t.Fatalf("cluster status: exit %d, %s", r.code, r.stderr)
	}
	if got := saved(); !slices.Equal(got, all) {
		t.Fatalf("cluster status left the saved addresses at %v, want %v", got, all)
	}

	// ...and with the node logged in to gone, the saved list still works.
	c.Kill(0)
	if r := runIn(vars, "users", "list"); r.code != exitOK {
		t.Fatalf("users list with node 0 down: exit %d, %s", r.code, r.stderr)
	}
}

// TestUnreachableClusterIsExplained: with every address closed, the CLI
// says within WaitingAfter that it is still trying, then fails (exit 1)
// naming every address on a line of its own.
func TestUnreachableClusterIsExplained(t *testing.T) {
	var addrs []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	r := runIn(map[string]string{"HPT_ADDR": strings.Join(addrs, ","), "HPT_CLUSTER_KEY": pinned.Fingerprint(pub), "HPT_TOKEN": "sk_x"}, "users", "list")
	if r.code != exitFailure || !strings.Contains(r.stderr, "still trying "+strings.Join(addrs, ", ")) || !strings.Contains(r.stderr, "cannot reach the cluster") {
		t.Fatalf("users list on closed ports: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, addr := range addrs {
		if !strings.Contains(r.stderr, "\n  "+addr+": connect: connection refused\n") && !strings.HasSuffix(r.stderr, "\n  "+addr+": connect: connection refused") {
			t.Errorf("stderr lacks a line for %s:\n%s", addr, r.stderr)
		}
	}
}
