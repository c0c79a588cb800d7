package node_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// rawConn is a connection to node i without rpc.Client's retries and
// failover, to see what one node answers.
func rawConn(t *testing.T, c *nodetest.Cluster, i int) *grpc.ClientConn {
	t.Helper()
	fp := pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey))
	conn, err := grpc.NewClient("passthrough:///"+c.Node(i).Addr(),
		grpc.WithTransportCredentials(pinned.ClientCredentials(pinned.ClientConfig(nil, pinned.Pin("cluster", fp), pinned.ProtoGRPC))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestWritesFailOverFromPartitionedNode: a client that lists a node cut
// off from the others keeps writing and reading (read-your-writes, and
// consistent reads) through the healthy ones. The cut-off node falls ever
// further behind the client's min index; it must answer Unavailable, which
// the client takes to the next address, not DeadlineExceeded, which it
// does not retry.
func TestWritesFailOverFromPartitionedNode(t *testing.T) {
	c := nodetest.Start(t, 3)
	leader := c.WaitLeader()
	cut := follower(c)
	healthy := 3 - leader - cut
	ctx := ctxT(t)

	// The cut-off node first, so that calls do reach it.
	addrs := []string{c.Node(cut).Addr(), c.Node(healthy).Addr()}
	cl := c.ClientFor(c.Admin.Secret(), addrs...)
	if _, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "before"}); err != nil {
		t.Fatal(err)
	}
	consistent, err := rpc.Dial(rpc.ClientConfig{Addrs: addrs, Token: c.Admin.Secret(),
		ClusterKey: pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey)), Consistent: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { consistent.Close() })

	c.Partition(cut)
	t.Cleanup(c.Heal)
	for i := range 6 {
		// Generous: only catches a hang.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		name := fmt.Sprintf("during-%d", i)
		if _, err := cl.Identities.Add(cctx, &rpc.AddIdentityRequest{Kind: "user", Name: name}); err != nil {
			cancel()
			t.Fatalf("write %d with %s cut off: %v", i, c.Node(cut).Name(), err)
		}
		// Carries the client's min index, which the cut-off node lacks.
		if _, err := cl.Identities.List(cctx, &rpc.ListIdentitiesRequest{Kind: "user"}); err != nil {
			cancel()
			t.Fatalf("read %d with %s cut off: %v", i, c.Node(cut).Name(), err)
		}
		if _, err := consistent.Identities.List(cctx, &rpc.ListIdentitiesRequest{Kind: "user"}); err != nil {
			cancel()
			t.Fatalf("consistent read %d with %s cut off: %v", i, c.Node(cut).Name(), err)
		}
		cancel()
	}
	if got := c.Node(cut).State().AppliedIndex(); got >= c.Node(healthy).State().AppliedIndex() {
		t.Fatalf("cut-off node applied %d, not behind the healthy one: the test did not partition it", got)
	}
}

// TestLaggingNodeAnswersUnavailable asks one node directly for an index it
// has not applied: a read says Unavailable (so a client tries another
// node) after a bounded wait, and a write ignores the min index (the
// leader orders it) and commits.
func TestLaggingNodeAnswersUnavailable(t *testing.T) {
	c := nodetest.Start(t, 1)
	conn := rawConn(t, c, 0)
	ctx := ctxT(t)
	ahead := strconv.FormatUint(c.Node(0).State().AppliedIndex()+1<<20, 10)
	mctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.Admin.Secret(), node.MDMinIndex, ahead)

	_, err := rpc.NewIdentitiesClient(conn).List(mctx, &rpc.ListIdentitiesRequest{Kind: "user"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("read at a min index the node lacks: %v, want Unavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the test's own deadline ended the read")
	}
	if _, err := rpc.NewIdentitiesClient(conn).Add(mctx, &rpc.AddIdentityRequest{Kind: "user", Name: "ahead"}); err != nil {
		t.Fatalf("write with a min index the node lacks: %v", err)
	}
}

// TestMinorityRefusesNoLeader cuts the leader off: alone, it can commit
// nothing, and a client that reaches only it gets Unavailable "no leader"
// for a write and for a consistent read, from the node, instead of
// retries until the client's deadline.
func TestMinorityRefusesNoLeader(t *testing.T) {
	c := nodetest.Start(t, 3)
	old := c.WaitLeader()
	ctx := ctxT(t)
	cl := c.Client(old)
	if _, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "before"}); err != nil {
		t.Fatal(err)
	}
	c.Partition(old)
	t.Cleanup(c.Heal)

	for _, call := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"write", func(ctx context.Context) error {
			_, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "minority"})
			return err
		}},
		{"consistent read", func(ctx context.Context) error {
			_, err := cl.Identities.List(metadata.AppendToOutgoingContext(ctx, node.MDConsistent, "1"), &rpc.ListIdentitiesRequest{Kind: "user"})
			return err
		}},
	} {
		// The client would retry for a minute; the node's refusal must
		// end the call long before (20s only catch a hang).
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		done := make(chan error, 1)
		go func() { done <- call.do(cctx) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			cancel()
			<-done
			t.Fatalf("%s on the cut-off old leader: no answer in 20s, the client is still retrying", call.name)
		}
		cancel()
		if status.Code(err) != codes.Unavailable || !rpc.IsNoLeader(err) {
			t.Fatalf("%s on the cut-off old leader: %v, want Unavailable no leader", call.name, err)
		}
		t.Logf("%s: %v", call.name, err)
	}
}
