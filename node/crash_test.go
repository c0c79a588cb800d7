package node_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// A node restarted after a crash opens its state at the last flush, which
// here lacks the revocations made just before the crash. Until Raft has
// re-applied them it must authenticate nothing: not the revoked token, not
// the revoked target key, and no stale read either. Once a quorum is back
// it catches up and serves again, with the revocations in force.
func TestCrashedNodeRefusesUntilCaughtUp(t *testing.T) {
	c := nodetest.Start(t, 3, nodetest.Options{Configure: func(_ int, cfg *node.Config) { cfg.MetricsListen = "127.0.0.1:0" }})
	ctx := ctxT(t)
	admin := c.ClientFor(c.Admin.Secret(), c.Addrs()...)

	// A second admin, whose token is revoked before the crash, and a
	// target whose key is revoked before the crash.
	mustWrite(t, func() (*rpc.WriteResponse, error) {
		return admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "mallory"})
	})
	mustWrite(t, func() (*rpc.WriteResponse, error) {
		return admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:mallory", Privilege: events.PrivAdmin, Resource: "*"})
	})
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:mallory"})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keystore.Open(c.RegisterTarget("web-1", t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	targetKey, err := ks.Identity()
	ks.Close()
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(admin.LastIndex())
	f := follower(c)
	fAddr := c.Node(f).Addr()
	mallory := c.ClientFor(tok.GetToken(), fAddr)
	if _, err := mallory.Identities.List(ctx, &rpc.ListIdentitiesRequest{Kind: "user"}); err != nil {
		t.Fatalf("mallory before the revocation: %v", err)
	}
	// A Raft snapshot flushes the follower's state: what a crash keeps of
	// it ends here, with mallory's token valid.
	if err := c.Node(f).Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	revoked := mustWrite(t, func() (*rpc.WriteResponse, error) {
		return admin.Tokens.Revoke(ctx, &rpc.RevokeTokenRequest{Id: tok.GetId()})
	})
	keyRevoked := mustWrite(t, func() (*rpc.WriteResponse, error) {
		return admin.Keys.Revoke(ctx, &rpc.RevokeKeyRequest{Target: "web-1"})
	})
	c.WaitEvent(keyRevoked.GetIndex())

	// Crash the follower, then stop the others: alone, it cannot catch up.
	c.Crash(f)
	for i := range c.Len() {
		if i != f {
			c.Kill(i)
		}
	}
	n := c.Restart(f)
	if got := n.State().AppliedIndex(); got >= events.EntryOf(revoked.GetIndex()) {
		t.Fatalf("restarted state is at %d, past the revocation's entry %d: the crash lost nothing, so this test proves nothing", got, events.EntryOf(revoked.GetIndex()))
	}
	// The state does hold the token as valid: only the gate stands between
	// it and the caller.
	if rec, err := n.State().Token(tok.GetId()); err != nil || rec.GetRevoked() {
		t.Fatalf("restarted state's view of the token: %v, %v; want it unrevoked", rec, err)
	}

	mallory = c.ClientFor(tok.GetToken(), fAddr)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = mallory.Identities.List(cctx, &rpc.ListIdentitiesRequest{Kind: "user"})
	cancel()
	if code := status.Code(err); code != codes.Unavailable {
		t.Fatalf("read with the revoked token through the restarted node: %v (code %s), want Unavailable", err, code)
	}
	cctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	_, err = mallory.Tokens.Create(cctx, &rpc.CreateTokenRequest{Subject: "user:admin"})
	cancel()
	if code := status.Code(err); code != codes.Unavailable {
		t.Fatalf("revoked token through the restarted node: %v (code %s), want Unavailable", err, code)
	}
	// Reads, stale ones included, are refused too, whatever the token.
	staleAdmin := c.ClientFor(c.Admin.Secret(), fAddr)
	cctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	stream, err := staleAdmin.Events.List(cctx, &rpc.ListEventsRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	cancel()
	if code := status.Code(err); code != codes.Unavailable {
		t.Fatalf("stale read through the restarted node: %v (code %s), want Unavailable", err, code)
	}
	if err := handshakeAsTarget(fAddr, targetKey, n.ClusterKey()); err == nil {
		t.Fatal("revoked target key passed the handshake of the restarted node")
	}
	if code := healthCode(t, n.MetricsAddr()); code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz of the catching-up node = %d, want 503", code)
	}

	// Quorum back: the node catches up, and the revocations hold.
	for i := range c.Len() {
		if i != f {
			c.Restart(i)
		}
	}
	c.WaitLeader()
	fresh := c.ClientFor(c.Admin.Secret(), fAddr)
	c.Eventually(30*time.Second, func() error {
		_, err := fresh.Identities.List(ctx, &rpc.ListIdentitiesRequest{Kind: "user"})
		return err
	})
	if got := n.State().AppliedIndex(); got < events.EntryOf(keyRevoked.GetIndex()) {
		t.Fatalf("node serves at applied index %d, before the revocations (entry %d)", got, events.EntryOf(keyRevoked.GetIndex()))
	}
	mallory = c.ClientFor(tok.GetToken(), fAddr)
	if _, err := mallory.Identities.List(ctx, &rpc.ListIdentitiesRequest{Kind: "user"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked token after catching up: %v, want Unauthenticated", err)
	}
	if err := handshakeAsTarget(fAddr, targetKey, n.ClusterKey()); err == nil {
		t.Fatal("revoked target key passed the handshake after catching up")
	}
}

// A restarted node whose state was flushed on a clean stop serves at once,
// even alone: its state is as new as its log.
func TestCleanRestartServesAlone(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	admin := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	w := mustWrite(t, func() (*rpc.WriteResponse, error) {
		return admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "alice"})
	})
	c.WaitEvent(w.GetIndex())
	f := follower(c)
	for i := range c.Len() {
		c.Kill(i)
	}
	n := c.Restart(f)
	cl := c.ClientFor(c.Admin.Secret(), n.Addr())
	c.Eventually(10*time.Second, func() error {
		names := userNames(t, ctx, cl)
		for _, name := range names {
			if name == "alice" {
				return nil
			}
		}
		return fmt.Errorf("users %v lack alice", names)
	})
}

// The leader checks the token behind every forwarded write again: a
// follower's view may be older than a revocation the leader has applied.
func TestLeaderRefusesForwardedWriteOfRevokedToken(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	admin := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	mustWrite(t, func() (*rpc.WriteResponse, error) {
		return admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "mallory"})
	})
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:mallory"})
	if err != nil {
		t.Fatal(err)
	}
	live, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:mallory"})
	if err != nil {
		t.Fatal(err)
	}
	w := mustWrite(t, func() (*rpc.WriteResponse, error) {
		return admin.Tokens.Revoke(ctx, &rpc.RevokeTokenRequest{Id: tok.GetId()})
	})
	c.WaitEvent(w.GetIndex())
	// Every write records the token that authorized it.
	ev, err := c.Node(0).State().Event(w.GetIndex())
	if err != nil || ev.GetTokenId() != c.Admin.ID {
		t.Fatalf("revocation event records token %q (%v), want the admin's %q", ev.GetTokenId(), err, c.Admin.ID)
	}

	leader := c.WaitLeader()
	internal := rpc.NewInternalClient(c.NodeClient(leader))
	forward := func(actor, tokenID, name string) *rpc.ApplyResult {
		t.Helper()
		ev, err := events.New(actor, rpc.NewRequestID(), time.Now(), &events.UserAdded{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		ev.TokenId = tokenID
		data, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := internal.ApplyBatch(ctx, &rpc.ApplyBatchRequest{Events: [][]byte{data}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetResults()[0]
	}
	cases := []struct {
		actor, token, user string
		want               codes.Code
	}{
		{"user:mallory", tok.GetId(), "by-revoked", codes.Unauthenticated},
		{"user:mallory", "0000000000000", "by-unknown", codes.Unauthenticated},
		{"user:admin", live.GetId(), "by-borrowed", codes.PermissionDenied},
		{"user:mallory", live.GetId(), "by-live", codes.OK},
	}
	for _, tc := range cases {
		if got := codes.Code(forward(tc.actor, tc.token, tc.user).GetCode()); got != tc.want {
			t.Errorf("forwarded write by %s with token %s: code %s, want %s", tc.actor, tc.token, got, tc.want)
		}
	}
	names := userNames(t, metadata.AppendToOutgoingContext(ctx, node.MDConsistent, "1"), admin)
	for _, tc := range cases {
		has := false
		for _, n := range names {
			has = has || n == tc.user
		}
		if has != (tc.want == codes.OK) {
			t.Errorf("user %s in state: %v, want %v", tc.user, has, tc.want == codes.OK)
		}
	}
}

// The cluster's own key is refused as a target key: its revocation would
// cut every connection between nodes.
func TestClusterKeyIsNoTargetKey(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	admin := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	before := admin.LastIndex()
	_, err := admin.Keys.Register(ctx, &rpc.RegisterKeyRequest{Target: "evil", PublicKey: c.Node(0).ClusterKey()})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("registering the cluster key: %v, want InvalidArgument", err)
	}
	if _, err := c.Node(0).State().TargetKey("evil"); err == nil {
		t.Fatal("the cluster key was registered as a target's")
	}
	if admin.LastIndex() != before {
		t.Fatalf("a refused registration moved the client's index from %d to %d", before, admin.LastIndex())
	}

	// A log from before that check may hold the cluster key as a target's.
	// Revoking it must leave the connections that present it alone.
	ev, err := events.New("user:admin", rpc.NewRequestID(), time.Now(), &events.TargetKeyRegistered{Target: "evil", PublicKey: c.Node(0).ClusterKey()})
	if err != nil {
		t.Fatal(err)
	}
	data, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	leader := c.WaitLeader()
	conn := c.NodeClient(leader)
	resp, err := rpc.NewInternalClient(conn).ApplyBatch(ctx, &rpc.ApplyBatchRequest{Events: [][]byte{data}})
	if err != nil || resp.GetResults()[0].GetCode() != 0 {
		t.Fatalf("old-style registration of the cluster key: %v %v", resp, err)
	}
	if conn.GetState() != connectivity.Ready {
		t.Fatalf("node connection is %s before the revocation", conn.GetState())
	}
	w := mustWrite(t, func() (*rpc.WriteResponse, error) {
		return admin.Keys.Revoke(ctx, &rpc.RevokeKeyRequest{Target: "evil"})
	})
	c.WaitEvent(w.GetIndex())
	// Cutting happens as the revocation is applied; give it a moment.
	time.Sleep(500 * time.Millisecond)
	if st := conn.GetState(); st != connectivity.Ready {
		t.Fatalf("a connection presenting the cluster key is %s after the revocation, want READY", st)
	}
}

func mustWrite(t *testing.T, write func() (*rpc.WriteResponse, error)) *rpc.WriteResponse {
	t.Helper()
	w, err := write()
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// handshakeAsTarget completes (or not) a TLS handshake with the node as an
// agent holding key would.
func handshakeAsTarget(addr string, key ed25519.PrivateKey, cluster ed25519.PublicKey) error {
	cert, err := pinned.Certificate(key)
	if err != nil {
		return err
	}
	cfg := pinned.ClientConfig(&cert, pinned.Pin("node", pinned.Fingerprint(cluster)), pinned.ProtoGRPC)
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	// In TLS 1.3 the server checks the client's certificate after the
	// client's handshake is done: its refusal arrives as the first read.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, err = conn.Read(b[:])
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil // accepted: the server waits for a request
	}
	return err
}

func healthCode(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
