package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
)

// readIndex returns an index whose application makes a read on this node
// linearizable: the leader's commit index, taken while the leader has
// confirmed with a quorum that it still leads. A node without a leader, or
// whose leader does not answer within patience, fails with an
// ErrUnavailable or ErrNoLeader error, so that the client tries another
// node.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	if err := n.awaitLeader(ctx); err != nil {
		return 0, err
	}
	if n.IsLeader() {
		if !n.isLeaderReady() {
			return 0, errLeaderNotReady
		}
		idx := n.raft.CommitIndex()
		if err := n.raft.VerifyLeader().Error(); err != nil {
			return 0, unavailable(fmt.Sprintf("verify leadership: %v", err))
		}
		return idx, nil
	}
	leader, addr, err := n.leaderClient()
	if errors.Is(err, ErrNoLeader) {
		// Lost since awaitLeader found it: as good as waited out.
		return 0, &leaderlessError{fmt.Sprintf("node %s: %v", n.cfg.Name, ErrNoLeader)}
	}
	if err != nil {
		return 0, err
	}
	// A leader behind a partition that drops packets never answers: bound
	// the wait, so that the client can try another node.
	rctx, cancel := context.WithTimeout(ctx, n.patience())
	defer cancel()
	resp, err := leader.ReadIndex(rctx, &rpc.ReadIndexRequest{})
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		// Whatever the leader said (not the leader any more, cannot verify
		// its leadership, unreachable), another node may do better.
		return 0, unavailable(fmt.Sprintf("read index from leader %s: %v", addr, status.Convert(err).Message()))
	}
	return resp.GetIndex(), nil
}

// syncRead waits until this node has applied everything the leader had
// committed when the call arrived (a linearizable read point).
func (n *Node) syncRead(ctx context.Context) error {
	idx, err := n.readIndex(ctx)
	if err != nil {
		return err
	}
	return n.awaitApplied(ctx, idx)
}

// awaitApplied waits up to patience for this node to apply log entry
// index. A node that is further behind (partitioned away, slow, out of
// disk) answers Unavailable, so that the client reads from another node
// instead of timing out on this one.
func (n *Node) awaitApplied(ctx context.Context, index uint64) error {
	if n.fsm.AppliedIndex() >= index {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, n.patience())
	defer cancel()
	if err := n.fsm.WaitApplied(wctx, index); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return unavailable(fmt.Sprintf("node %s is behind: applied log entry %d, the call needs %d; try another node", n.cfg.Name, n.fsm.AppliedIndex(), index))
	}
	return nil
}

// readBarrier honours a call's consistency metadata: hpt-min-index waits
// until this node has applied the entry carrying that event index
// (read-your-writes anywhere); hpt-consistent, for reads only (the methods
// whose rule asks for view), waits for the leader-confirmed read index.
//
// Writes (isWrite) ignore both. A write needs no min index to be ordered
// after the caller's earlier writes: the leader appends it after every
// entry it has committed, and those include every write the caller saw
// acknowledged, and the state machine checks it (exists, revoked, ...) in
// that order on every node. What this node has applied does not change the
// outcome, so waiting for it would only make a write through a lagging
// node fail where forwarding it succeeds. The few write handlers that read
// this node's state first make their own read point (Jobs.Submit and
// Jobs.Cancel call syncRead); authorization runs before this barrier
// either way.
func (n *Node) readBarrier(ctx context.Context, method string) error {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || isWrite(method) {
		return nil
	}
	var want uint64
	if v := md.Get(MDMinIndex); len(v) > 0 {
		idx, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "%s %q: not an index", MDMinIndex, v[0])
		}
		// An event index: wait for the entry that carries it.
		want = events.EntryOf(idx)
	}
	if v := md.Get(MDConsistent); n.isRead(method) && len(v) > 0 && v[0] == "1" {
		idx, err := n.readIndex(ctx)
		if err != nil {
			return err
		}
		want = max(want, idx)
	}
	if want == 0 || n.fsm.AppliedIndex() >= want {
		return nil
	}
	// Without a leader this node will not catch up: say so at once.
	if err := n.awaitLeader(ctx); err != nil {
		return err
	}
	return n.awaitApplied(ctx, want)
}

// isWrite reports the API methods that commit an event. A method missing
// here is treated as a read, which only costs a write the min-index wait;
// a read listed here would lose read-your-writes (SnapshotSave is one that
// needs admin, so the privilege alone cannot tell).
func isWrite(method string) bool {
	switch method {
	case "/hpt.v1.Cluster/RemoveNode", "/hpt.v1.Cluster/SnapshotRestore",
		"/hpt.v1.Identities/Add", "/hpt.v1.Identities/Remove",
		"/hpt.v1.Identities/AddMember", "/hpt.v1.Identities/RemoveMember",
		"/hpt.v1.Tokens/Create", "/hpt.v1.Tokens/Revoke",
		"/hpt.v1.Grants/Add", "/hpt.v1.Grants/Remove",
		"/hpt.v1.Keys/Register", "/hpt.v1.Keys/Revoke",
		"/hpt.v1.Bench/Write",
		"/hpt.v1.Jobs/Submit", "/hpt.v1.Jobs/Cancel",
		"/hpt.v1.Destinations/Add", "/hpt.v1.Destinations/Remove":
		return true
	}
	return false
}
