package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// `hpt whoami` needs no grant and tells the token's subject, its expiry,
// its groups and the grants it holds directly and through them.
func TestWhoami(t *testing.T) {
	c := nodetest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := c.Client(0)
	for _, step := range []func() error{
		func() error {
			_, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "bob"})
			return err
		},
		func() error {
			_, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "group", Name: "ops"})
			return err
		},
		func() error {
			_, err := admin.Identities.AddMember(ctx, &rpc.MemberRequest{Group: "ops", Member: "user:bob"})
			return err
		},
		func() error {
			_, err := admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "group:ops", Privilege: "view", Resource: "targets/*"})
			return err
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:bob", TtlSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(admin.LastIndex())
	vars := map[string]string{"HPT_ADDR": c.Node(0).Addr(), "HPT_TOKEN": tok.GetToken(), "HPT_CLUSTER_KEY": pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey)), "HPT_CONFIG": t.TempDir() + "/cli.json"}
	r := runIn(vars, "whoami", "-o", "json")
	if r.code != 0 {
		t.Fatalf("whoami: exit %d, %s", r.code, r.stderr)
	}
	var got whoamiJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("whoami -o json: %v\n%s", err, r.stdout)
	}
	if got.Subject != "user:bob" || got.TokenID != tok.GetId() || got.Expires == nil || got.Expires.UnixNano() != tok.GetExpiresUnixNano() {
		t.Fatalf("whoami = %+v, want user:bob with token %s expiring %d", got, tok.GetId(), tok.GetExpiresUnixNano())
	}
	if len(got.Groups) != 1 || got.Groups[0] != "ops" || len(got.Grants) != 1 ||
		got.Grants[0] != (grantJSON{Subject: "group:ops", Privilege: "view", Resource: "targets/*", CreatedIndex: got.Grants[0].CreatedIndex}) {
		t.Fatalf("whoami groups %v, grants %+v; want ops and view targets/* through group:ops", got.Groups, got.Grants)
	}
	r = runIn(vars, "whoami")
	for _, want := range []string{"user:bob", "expires", "grant: view targets/* (through group:ops)"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("whoami table: exit %d, lacks %q:\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
}
