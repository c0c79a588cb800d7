package node_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// expiredRemovals returns, from node n's archive, the grant removals made
// for expiry: "ACTOR SUBJECT PRIVILEGE RESOURCE".
func expiredRemovals(t *testing.T, n *node.Node) []string {
	t.Helper()
	var out []string
	err := n.State().Events(0, func(ev *events.Event) bool {
		if ev.GetType() != events.Type_TYPE_GRANT_REMOVED {
			return true
		}
		p, err := ev.DecodePayload()
		if err != nil {
			t.Error(err)
			return false
		}
		if r := p.(*events.GrantRemoved); r.GetReason() == events.GrantExpired {
			out = append(out, strings.Join([]string{ev.GetActor(), r.GetSubject(), r.GetPrivilege(), r.GetResource()}, " "))
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTimeBoundGrantOnACluster: a login grant with a 3 s ttl lets alice
// get an SSH certificate on every node until its expiry and none after,
// by each node's clock; the certificate ends no later than the grant; the
// leader removes the grant with a grant_removed whose reason is "expired",
// which revokes the certificate's credential as "grant expired"; and when
// the leader is gone, the new leader's loop removes the next one.
func TestTimeBoundGrantOnACluster(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	admin := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Destinations.Add(ctx, &rpc.AddDestinationRequest{Name: "web-1", Kind: "ssh", Addr: "127.0.0.1:2222"}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:alice"})
	if err != nil {
		t.Fatal(err)
	}
	alice := make([]*rpc.Client, c.Len())
	for i := range alice {
		alice[i] = c.ClientFor(tok.GetToken(), c.Node(i).Addr())
	}
	_, pub := clientKey(t)

	const ttl = 3 * time.Second
	w, err := admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-1", TtlNanos: int64(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(w.GetIndex())
	grants, err := c.Client(0).Grants.List(ctx, &rpc.ListGrantsRequest{Subject: "user:alice"})
	if err != nil || len(grants.GetGrants()) != 1 {
		t.Fatalf("grants of alice = %v, %v", grants, err)
	}
	exp := time.Unix(0, grants.GetGrants()[0].GetExpiresUnixNano())
	if d := time.Until(exp); d <= 0 || d > ttl {
		t.Fatalf("expiry %s is not within the ttl from now (%s)", exp, d)
	}

	// Issued on every node until the expiry, and never past it. A call
	// refused before the expiry by this clock is wrong; one that ended
	// after it proves nothing either way.
	var credIDs []string
	for i, cl := range alice {
		r, err := cl.Credentials.IssueSSH(ctx, &rpc.IssueSSHRequest{Destination: "web-1", PublicKey: pub})
		if err != nil {
			if time.Now().Before(exp) {
				t.Fatalf("node %d refused alice before her grant's expiry: %v", i, err)
			}
			continue
		}
		if vb := time.Unix(0, r.GetValidBeforeUnixNano()); vb.After(exp) {
			t.Fatalf("node %d: certificate valid before %s, after the grant's expiry %s", i, vb, exp)
		}
		credIDs = append(credIDs, r.GetId())
	}
	if len(credIDs) == 0 {
		t.Fatal("no certificate issued before the expiry")
	}
	// Refused on every node from the expiry on, first for the expiry itself
	// (perhaps before the removal is applied there), then for no grant.
	c.Eventually(15*time.Second, func() error {
		for i, cl := range alice {
			_, err := cl.Credentials.IssueSSH(ctx, &rpc.IssueSSHRequest{Destination: "web-1", PublicKey: pub})
			if status.Code(err) != codes.PermissionDenied {
				return fmt.Errorf("node %d: alice's issue = %v, want denied", i, err)
			}
		}
		return nil
	})
	if time.Now().Before(exp) {
		t.Fatalf("denied before the expiry %s", exp)
	}
	leader := c.Node(c.WaitLeader()).Name()
	c.Eventually(15*time.Second, func() error {
		for _, n := range c.Running() {
			got := expiredRemovals(t, n)
			if want := []string{"node:" + leader + " user:alice login:deploy destinations/web-1"}; !slices.Equal(got, want) {
				return fmt.Errorf("%s: expiry removals %v, want %v", n.Name(), got, want)
			}
			for _, id := range credIDs {
				cr, err := n.State().Credential(id)
				if err != nil {
					return err
				}
				// A certificate capped at the expiry is past its end when
				// the removal applies: nothing to revoke then.
				if !cr.GetRevoked() && cr.GetValidBeforeUnixNano() > exp.UnixNano() {
					return fmt.Errorf("%s: credential %s outlives the grant's removal: %v", n.Name(), id, cr)
				}
				if cr.GetRevoked() && cr.GetRevokedReason() != fsm.ReasonGrantExpired {
					return fmt.Errorf("%s: credential %s revoked as %q, want %q", n.Name(), id, cr.GetRevokedReason(), fsm.ReasonGrantExpired)
				}
			}
		}
		return nil
	})
	for i := range c.Len() {
		resp, err := c.Client(i).Grants.List(ctx, &rpc.ListGrantsRequest{Subject: "user:alice"})
		if err != nil || len(resp.GetGrants()) != 0 {
			t.Fatalf("node %d: grants of alice after removal = %v, %v", i, resp, err)
		}
	}

	// Failover: the leader stops before the next grant expires, and the new
	// leader removes it.
	w, err = admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "view", Resource: "jobs/*", TtlNanos: int64(3 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(w.GetIndex())
	old := c.WaitLeader()
	oldName := c.Node(old).Name()
	c.Kill(old)
	newName := c.Node(c.WaitLeader()).Name()
	if newName == oldName {
		t.Fatalf("leader still %s", oldName)
	}
	c.Eventually(20*time.Second, func() error {
		for _, n := range c.Running() {
			got := expiredRemovals(t, n)
			if len(got) != 2 || got[1] != "node:"+newName+" user:alice view jobs/*" {
				return fmt.Errorf("%s: expiry removals %v, want the second by node:%s", n.Name(), got, newName)
			}
		}
		return nil
	})
}

// TestIssueSSHCappedByGrantExpiry: a certificate asked for with the
// default TTL (1 h) under a grant that expires in 30 min ends with the
// grant, not the TTL.
func TestIssueSSHCappedByGrantExpiry(t *testing.T) {
	c := nodetest.Start(t, 1)
	ctx := ctxT(t)
	admin := c.Client(0)
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Destinations.Add(ctx, &rpc.AddDestinationRequest{Name: "web-1", Kind: "ssh", Addr: "127.0.0.1:2222"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-1", TtlNanos: int64(30 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:alice"})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(admin.LastIndex())
	grants, err := admin.Grants.List(ctx, &rpc.ListGrantsRequest{Subject: "user:alice"})
	if err != nil || len(grants.GetGrants()) != 1 {
		t.Fatalf("grants of alice = %v, %v", grants, err)
	}
	exp := grants.GetGrants()[0].GetExpiresUnixNano()
	_, pub := clientKey(t)
	r, err := c.ClientFor(tok.GetToken(), c.Node(0).Addr()).Credentials.IssueSSH(ctx, &rpc.IssueSSHRequest{Destination: "web-1", PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, r.GetCertificate())
	if r.GetValidBeforeUnixNano() > exp || int64(cert.ValidBefore) > exp/1e9 {
		t.Fatalf("certificate valid before %s (cert %d), after the grant's expiry %s",
			time.Unix(0, r.GetValidBeforeUnixNano()).UTC(), cert.ValidBefore, time.Unix(0, exp).UTC())
	}
	if r.GetValidBeforeUnixNano() < exp-int64(time.Second) {
		t.Fatalf("certificate valid before %s, well before the grant's expiry %s", time.Unix(0, r.GetValidBeforeUnixNano()).UTC(), time.Unix(0, exp).UTC())
	}
}

// TestGrantExpiryRequests: ttl and until are exclusive, must lie ahead,
// and only add takes them; nothing is recorded for a refused request.
func TestGrantExpiryRequests(t *testing.T) {
	c := nodetest.Start(t, 1)
	ctx := ctxT(t)
	admin := c.Client(0)
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	req := func(ttl time.Duration, until time.Time) *rpc.GrantRequest {
		r := &rpc.GrantRequest{Subject: "user:alice", Privilege: "view", Resource: "*", TtlNanos: int64(ttl)}
		if !until.IsZero() {
			r.UntilUnixNano = until.UnixNano()
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *rpc.GrantRequest
		want string
	}{
		{"both", req(time.Hour, time.Now().Add(time.Hour)), "ttl and until"},
		{"negative ttl", req(-time.Hour, time.Time{}), "ttl"},
		{"until in the past", req(0, time.Now().Add(-time.Minute)), "until"},
		{"until too far", req(0, time.Now().Add(200*365*24*time.Hour)), "until"},
	} {
		_, err := admin.Grants.Add(ctx, tc.r)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.want)
		}
	}
	if _, err := admin.Grants.Remove(ctx, req(time.Hour, time.Time{})); status.Code(err) != codes.InvalidArgument {
		t.Errorf("remove with a ttl: %v, want InvalidArgument", err)
	}
	resp, err := admin.Grants.List(ctx, &rpc.ListGrantsRequest{Subject: "user:alice"})
	if err != nil || len(resp.GetGrants()) != 0 {
		t.Fatalf("refused requests left grants: %v, %v", resp, err)
	}

	// until is absolute; adding again with a ttl moves the expiry.
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	if _, err := admin.Grants.Add(ctx, req(0, until)); err != nil {
		t.Fatal(err)
	}
	w, err := admin.Grants.Add(ctx, req(4*time.Hour, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = admin.Grants.List(atIndex(ctx, w.GetIndex()), &rpc.ListGrantsRequest{Subject: "user:alice"})
	if err != nil || len(resp.GetGrants()) != 1 {
		t.Fatalf("grants = %v, %v", resp, err)
	}
	if g := resp.GetGrants()[0]; time.Unix(0, g.GetExpiresUnixNano()).Before(until.Add(2*time.Hour)) || g.GetExpired() {
		t.Fatalf("grant after extending = %v, want an expiry about 4h ahead", g)
	}
}

// TestCredentialsListAndRevoke: who may list and revoke credentials, and
