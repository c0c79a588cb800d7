package node

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/rpc/pinned"
)

// A node restarted after a crash opens its state at the last flush, which
// can be older than what it had applied, and served, before it died: the
// Raft log, not Pebble's memtables, is what survives (fsm's package
// documentation). Until Raft has re-applied the lost part, the state may
// still hold a token or a target key that was revoked before the crash.
// So the node authenticates nothing from its state (tokens, target keys at
// the handshake, agents' streams) and serves no read until it knows its
// state is at least as new as before: it answers Unavailable, and clients
// try another node.
//
// What it waits for is the first of:
//   - the applied index reaching the last index of its own Raft log (or
//     newest snapshot) as found at start. Whatever the node applied before
//     it died was committed and in that log: a node applies only entries it
//     has stored, and stores them with an fsync. This needs no other node,
//     so a clean restart (where Close flushed the state) is fresh at once.
//   - a read index from the leader, applied. The leader's commit index is
//     at least every index ever committed, so this proves the same; it
//     covers a log whose uncommitted tail a new leader has cut, which would
//     otherwise keep the node waiting for indexes that come back only with
//     new writes.
//
// freshness holds that decision; it only ever goes from false to true.
type freshness struct {
	// floor is the last index of the Raft log and snapshots at start;
	// until known is set (the log is opened after the port), nothing is
	// fresh.
	floor atomic.Uint64
	known atomic.Bool
	fresh atomic.Bool
}

func (f *freshness) setFloor(index uint64) {
	f.floor.Store(index)
	f.known.Store(true)
}

// check reports whether the state is fresh, given its applied index.
func (f *freshness) check(applied uint64) bool {
	if f.fresh.Load() {
		return true
	}
	if f.known.Load() && applied >= f.floor.Load() {
		f.fresh.Store(true)
		return true
	}
	return false
}

// freshnessPoll is how often a node that is catching up asks the leader for
// a read index.
const freshnessPoll = 250 * time.Millisecond

// isFresh reports whether the state is known to be no older than before
// the node's last stop.
func (n *Node) isFresh() bool { return n.fresh.check(n.fsm.AppliedIndex()) }

// awaitFreshState runs until the state is fresh (or the node stops): it
// asks the leader for read indexes, and says when the node serves again.
func (n *Node) awaitFreshState() {
	defer n.wg.Done()
	if n.isFresh() {
		return
	}
	floor := n.fresh.floor.Load()
	n.log.Warn("state is behind this node's Raft log (the last run did not stop cleanly); refusing to authenticate and to serve reads until it has caught up",
		"applied", n.fsm.AppliedIndex(), "log_index", floor)
	tick := time.NewTicker(freshnessPoll)
	defer tick.Stop()
	for !n.isFresh() {
		select {
		case <-n.ctx.Done():
			return
		case <-n.fsm.Changed():
			continue
		case <-tick.C:
		}
		if n.caughtUpWithLeader() {
			n.fresh.fresh.Store(true)
		}
	}
	n.log.Info("state caught up after restart; serving", "applied", n.fsm.AppliedIndex(), "log_index", floor)
}

// caughtUpWithLeader reports whether this node has applied a read index the
// leader gave it just now.
func (n *Node) caughtUpWithLeader() bool {
	if _, addr := n.Leader(); addr == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	defer cancel()
	return n.syncRead(ctx) == nil
}

// errCatchingUp is the refusal of a node whose state is not yet fresh.
func (n *Node) errCatchingUp() error {
	return status.Errorf(codes.Unavailable, "node %s is catching up after a restart (applied %d, needs %d); try another node",
		n.cfg.Name, n.fsm.AppliedIndex(), n.fresh.floor.Load())
}

// freshUnary and freshStream refuse every call that would be authorized or
// answered from the state while it is not fresh. Other nodes pass: they
// prove the cluster key at the handshake, which needs no state, and the
// calls they make (forwarding to a leader, reading its index, asking for
// status) are what catching up is made of.
func (n *Node) freshUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !n.isFresh() && !n.fromNode(ctx) {
		return nil, n.errCatchingUp()
	}
	return handler(ctx, req)
}

func (n *Node) freshStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !n.isFresh() && !n.fromNode(ss.Context()) {
		return n.errCatchingUp()
	}
	return handler(srv, ss)
}

func (n *Node) fromNode(ctx context.Context) bool {
	key := pinned.PeerKeyFromContext(ctx)
	return key != nil && key.Equal(n.clusterPub)
}
