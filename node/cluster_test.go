package node_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func atIndex(ctx context.Context, idx uint64) context.Context {
	return metadata.AppendToOutgoingContext(ctx, node.MDMinIndex, strconv.FormatUint(idx, 10))
}

func userNames(t *testing.T, ctx context.Context, c *rpc.Client) []string {
	t.Helper()
	resp, err := c.Identities.List(ctx, &rpc.ListIdentitiesRequest{Kind: "user"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, id := range resp.GetIdentities() {
		names = append(names, id.GetName())
	}
	return names
}

func follower(c *nodetest.Cluster) int {
	for i := range c.Len() {
		if n := c.Node(i); n != nil && !n.IsLeader() {
			return i
		}
	}
	return -1
}

func TestWriteOnFollowerVisibleEverywhere(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	f := follower(c)
	resp, err := c.Client(f).Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetIndex() == 0 {
		t.Fatal("write returned no index")
	}
	for i := range c.Len() {
		names := userNames(t, atIndex(ctx, resp.GetIndex()), c.Client(i))
		if !slices.Contains(names, "alice@example.com") {
			t.Errorf("node %d: users %v lack alice after min_index %d", i, names, resp.GetIndex())
		}
	}
	ev, err := c.Node(0).State().Event(resp.GetIndex())
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetActor() != "user:admin" || ev.GetType() != events.Type_TYPE_USER_ADDED || ev.GetRequestId() == "" || ev.GetTimeUnixNano() == 0 {
		t.Errorf("archived event = %v, want actor user:admin, type user_added, a request id and a time", ev)
	}
}

func TestRetriedRequestAppliedOnce(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := rpc.WithRequestID(ctxT(t), "retry-me")
	first, err := c.Client(follower(c)).Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "machine", Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	// The retry goes to another node, as it would after a failover.
	second, err := c.Client(c.WaitLeader()).Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "machine", Name: "ci"})
	if err != nil {
		t.Fatalf("retry failed instead of being recognised: %v", err)
	}
	if !second.GetDuplicate() || second.GetIndex() != first.GetIndex() {
		t.Fatalf("retry = %v, want duplicate of index %d", second, first.GetIndex())
	}
}

func TestLeaderKilledNoAcknowledgedWriteLost(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	cl := c.ClientFor(c.Admin.Secret(), c.Addrs()...)

	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.Identities.Add(wctx, &rpc.AddIdentityRequest{Kind: "user", Name: name})
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	c.Eventually(10*time.Second, func() error {
		if count() < 30 {
			return fmt.Errorf("%d writes acknowledged", count())
		}
		return nil
	})
	old := c.WaitLeader()
	c.Crash(old)
	before := count()
	c.Eventually(20*time.Second, func() error {
		if count() < before+30 {
			return fmt.Errorf("%d writes acknowledged since the kill", count()-before)
		}
		return nil
	})
	close(stop)
	wg.Wait()

	newLeader := c.WaitLeader()
	if newLeader == old {
		t.Fatal("crashed node is still leader")
	}
	// The crashed node comes back from what it left on disk and catches up.
	c.Restart(old)
	for _, n := range c.Running() {
		rc := c.ClientFor(c.Admin.Secret(), n.Addr())
		cctx := metadata.AppendToOutgoingContext(ctx, node.MDConsistent, "1")
		names := userNames(t, cctx, rc)
		for _, a := range acked {
			if !slices.Contains(names, a) {
				t.Fatalf("node %s lost acknowledged write %s (%d users, %d acked)", n.Name(), a, len(names), len(acked))
			}
		}
	}
	t.Logf("%d writes acknowledged, %d after the leader crashed; none lost on any node, the crashed one included", len(acked), len(acked)-before)
}

func TestRestartedNodeCatchesUpWithoutReplay(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	f := follower(c)
	cl := c.ClientFor(c.Admin.Secret(), c.Node(c.WaitLeader()).Addr())
	for i := range 20 {
		if _, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: fmt.Sprintf("before-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitEvent(cl.LastIndex())
	// A Raft snapshot flushes the follower's state; a crash keeps that.
	if err := c.Node(f).Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	flushed := c.Node(f).State().AppliedIndex()
	if _, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "unflushed"}); err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(cl.LastIndex())
	c.Crash(f)
	for i := range 20 {
		if _, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: fmt.Sprintf("after-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	n := c.Restart(f)
	// The state is durable up to its last flush: the node starts there,
	// not at zero, and Raft re-delivers only what came after.
	if got := n.State().AppliedIndex(); got < flushed {
		t.Fatalf("restarted node starts at applied index %d, below %d where its state was flushed", got, flushed)
	}
	c.WaitEvent(cl.LastIndex())
	names := userNames(t, ctx, c.Client(f))
	wants := []string{"unflushed"}
	for i := range 20 {
		wants = append(wants, fmt.Sprintf("after-%d", i))
	}
	for _, want := range wants {
		if !slices.Contains(names, want) {
			t.Fatalf("restarted node lacks %s", want)
		}
	}
}

// TestSnapshotInstallOnNewNode: a node added after the log was compacted
// gets the state by an installed snapshot, with the event archive whole.
func TestSnapshotInstallOnNewNode(t *testing.T) {
	c := nodetest.Start(t, 3, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.Raft.SnapshotThreshold = 32
		cfg.Raft.TrailingLogs = 8
		// No node snapshots on its own during the test: the only
		// snapshot is the leader's below, so a snapshot on the new node
		// can only have come from the leader.
		cfg.Raft.SnapshotInterval = time.Hour
	}})
	ctx := ctxT(t)
	leader := c.Node(c.WaitLeader())
	cl := c.ClientFor(c.Admin.Secret(), leader.Addr())
	for i := range 100 {
		if _, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "machine", Name: fmt.Sprintf("m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := leader.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	first := leader.Raft().Stats()["last_snapshot_index"]
	if n, _ := strconv.ParseUint(first, 10, 64); n < 100 {
		t.Fatalf("leader snapshot at index %s, want past the 100 writes", first)
	}
	i := c.AddNode()
	newNode := c.Node(i)
	c.WaitEvent(cl.LastIndex())
	// The leader kept only TrailingLogs entries before its snapshot, so the
	// early log cannot have been replayed: the new node's snapshot is the
	// leader's, installed.
	// Raft records the installed snapshot only after the FSM restored it,
	// so the applied index can be seen a moment before the stats say so.
	c.Eventually(5*time.Second, func() error {
		if st := newNode.Raft().Stats(); st["last_snapshot_index"] != first || st["last_snapshot_term"] != leader.Raft().Stats()["last_snapshot_term"] {
			return fmt.Errorf("new node's last snapshot is %s (term %s), want the leader's %s: no snapshot was installed", st["last_snapshot_index"], st["last_snapshot_term"], first)
		}
		return nil
	})
	// The new node got its state from a snapshot (the early log is gone)
	// and the event archive came with it: history survives compaction.
	var n int
	var firstIndex uint64
	if err := newNode.State().Events(0, func(ev *events.Event) bool {
		if n == 0 {
			firstIndex = ev.GetIndex()
		}
		n++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if n < 101 || events.EntryOf(firstIndex) > 5 {
		t.Fatalf("new node's archive has %d events starting at %d; want the whole history (leader snapshot at %s)", n, firstIndex, first)
	}
	names, err := newNode.State().Identities("machine")
	if err != nil || len(names) != 100 {
		t.Fatalf("new node has %d machines (%v), want 100", len(names), err)
	}
	// The new node learns the configuration that includes it from the log
	// too, possibly after the writes above.
	c.Eventually(10*time.Second, func() error {
		st, err := c.Client(i).Cluster.Status(ctx, &rpc.StatusRequest{})
		if err != nil {
			return err
		}
		if len(st.GetMembers()) != 4 {
			return fmt.Errorf("status lists %d members, want 4: %v", len(st.GetMembers()), st)
		}
		return nil
	})
}

func TestClientPinningOtherClusterKeyRefused(t *testing.T) {
	c := nodetest.Start(t, 1)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	cl, err := rpc.Dial(rpc.ClientConfig{Addrs: c.Addrs(), Token: c.Admin.Secret(), ClusterKey: pinned.Fingerprint(other)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// The deadline only catches a hang: the refusal must come from the
	// client's pin check, naming the key it saw, not from running out of
	// time (which a server that never answers would also cause).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = cl.Cluster.Status(ctx, &rpc.StatusRequest{})
	if err == nil {
		t.Fatal("client pinning another cluster key was served")
	}
	want := pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey))
	if ctx.Err() != nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), pinned.Fingerprint(other)) {
		t.Fatalf("error %q (context: %v) does not name the refused key %s and the pinned %s", err, ctx.Err(), want, pinned.Fingerprint(other))
	}
}

func TestAuthentication(t *testing.T) {
	c := nodetest.Start(t, 1)
	ctx := ctxT(t)
	admin := c.Client(0)
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:bob"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := auth.NewToken()
	tests := []struct {
		name  string
		token string
		code  codes.Code
	}{
		{"no token", "", codes.Unauthenticated},
		{"malformed", "sk_nope", codes.Unauthenticated},
		{"unknown", other.Secret(), codes.Unauthenticated},
		{"wrong secret", "sk_" + tok.GetId() + other.Secret()[3+auth.IDLen:], codes.Unauthenticated},
		{"no grant", tok.GetToken(), codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl := c.ClientFor(tc.token, c.Addrs()...)
			_, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "mallory"})
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
			if strings.Contains(err.Error(), tok.GetToken()) {
				t.Fatal("error echoes the token secret")
			}
		})
	}
	bob := c.ClientFor(tok.GetToken(), c.Addrs()...)
	_, err = bob.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "mallory"})
	if !strings.Contains(err.Error(), "hpt grants add user:bob admin identities/mallory") {
		t.Errorf("denial %q does not name the missing grant", err)
	}
	if _, err := admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:bob", Privilege: "view", Resource: "*"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Identities.List(atIndex(ctx, admin.LastIndex()), &rpc.ListIdentitiesRequest{Kind: "user"}); err != nil {
		t.Fatalf("view grant does not allow listing: %v", err)
	}
	if _, err := bob.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "mallory"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("view grant allowed a write: %v", err)
	}
	if _, err := admin.Tokens.Revoke(ctx, &rpc.RevokeTokenRequest{Id: tok.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Identities.List(atIndex(ctx, admin.LastIndex()), &rpc.ListIdentitiesRequest{Kind: "user"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked token still works: %v", err)
	}
}

func TestSnapshotSaveAndRestore(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	cl := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	if _, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "kept"}); err != nil {
		t.Fatal(err)
	}
	// Save from a follower: any node can take a backup.
	fc := c.Client(follower(c))
	stream, err := fc.Cluster.SnapshotSave(atIndex(ctx, cl.LastIndex()), &rpc.SnapshotSaveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var backup []byte
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		backup = append(backup, chunk.GetData()...)
	}
	if _, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "after-backup"}); err != nil {
		t.Fatal(err)
	}
	// Restore through a follower: it relays to the leader.
	up, err := fc.Cluster.SnapshotRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(backup); off += 4096 {
		if err := up.Send(&rpc.SnapshotChunk{Data: backup[off:min(off+4096, len(backup))]}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := up.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(res.GetIndex())
	for i := range c.Len() {
		names := userNames(t, ctx, c.Client(i))
		if !slices.Contains(names, "kept") || slices.Contains(names, "after-backup") {
			t.Fatalf("node %d after restore has users %v, want kept and not after-backup", i, names)
		}
	}
	// A corrupt upload is refused and changes nothing.
	bad := append([]byte(nil), backup...)
	bad[len(bad)-3] ^= 0xff
	up, _ = fc.Cluster.SnapshotRestore(ctx)
	up.Send(&rpc.SnapshotChunk{Data: bad})
	if _, err := up.CloseAndRecv(); err == nil {
		t.Fatal("corrupt snapshot accepted")
	}
	if names := userNames(t, ctx, c.Client(0)); !slices.Contains(names, "kept") {
		t.Fatalf("refused restore changed state: %v", names)
	}
}
