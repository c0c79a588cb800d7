package main

import (
	"bytes"
	"crypto/ed25519"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// TestJSONIsNotHTMLEscaped: -o json prints "a > b", not "a \u003e b".
func TestJSONIsNotHTMLEscaped(t *testing.T) {
	var out bytes.Buffer
	a := &app{stdout: &out}
	a.printJSON(map[string]string{"cmd": "a > b && c < d"})
	a.printJSONLine(map[string]string{"cmd": "x > y"})
	if s := out.String(); strings.Contains(s, `\u00`) || !strings.Contains(s, "a > b && c < d") || !strings.Contains(s, "x > y") {
		t.Fatalf("JSON is HTML-escaped: %s", s)
	}
}

// TestClusterStatusDeadMember: a member that cannot be reached shows as
// unreachable in the STATE column, with the reason, without gRPC's
// wrappers, under the table.
func TestClusterStatusDeadMember(t *testing.T) {
	if got := shortError(`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7411: connect: connection refused"`); got != "connect: connection refused" {
		t.Fatalf("shortError = %q", got)
	}
	c := nodetest.Start(t, 3)
	c.WaitLeader()
	dead := c.Node(2).Addr()
	c.Kill(2)
	c.WaitLeader()
	live := c.Node(0).Addr() + "," + c.Node(1).Addr()
	vars := map[string]string{
		"HPT_ADDR":        live,
		"HPT_TOKEN":       c.Admin.Secret(),
		"HPT_CLUSTER_KEY": pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey)),
		"HPT_CONFIG":      filepath.Join(t.TempDir(), "cli.json"),
	}
	r := runIn(vars, "cluster", "status")
	if r.code != exitOK {
		t.Fatalf("cluster status: exit %d, %s", r.code, r.stderr)
	}
	var row string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, dead) {
			row = l
		}
	}
	if !strings.Contains(row, "(unreachable)") || strings.Contains(row, "connection error") || strings.Contains(row, "desc =") {
		t.Fatalf("dead member's row %q:\n%s", row, r.stdout)
	}
	if strings.Contains(r.stdout, "desc =") || strings.Contains(r.stdout, "transport:") {
		t.Fatalf("cluster status shows gRPC's wrappers:\n%s", r.stdout)
	}
}
