package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// Metadata keys of the API conventions (see rpc/api.proto).
const (
	MDRequestID  = "hpt-request-id"
	MDMinIndex   = "hpt-min-index"
	MDConsistent = "hpt-consistent"
)

// propose commits payload as an event by the calling subject, with the
// caller's request id if it sent one.
func (n *Node) propose(ctx context.Context, payload proto.Message) (*rpc.WriteResponse, error) {
	actor := n.nodeActor()
	if c, ok := auth.CallerFrom(ctx); ok && c.Subject != "" {
		actor = c.Subject
	}
	var reqID string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(MDRequestID); len(v) > 0 {
			reqID = v[0]
		}
	}
	return n.proposeAs(ctx, actor, reqID, payload)
}

// proposeAs commits payload as an event by actor. An empty request id gets
// a random one, so forwarding retries inside this node are still deduplicated.
func (n *Node) proposeAs(ctx context.Context, actor, reqID string, payload proto.Message) (*rpc.WriteResponse, error) {
	if reqID == "" {
		reqID = rpc.NewRequestID()
	}
	if len(reqID) > 128 {
		return nil, status.Errorf(codes.InvalidArgument, "request id has %d characters, at most 128", len(reqID))
	}
	// Each field's own limit first, so that an oversized field is refused
	// by name rather than by the size of the event it would make.
	if err := events.CheckPayload(payload); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ev, err := events.New(actor, reqID, time.Now(), payload)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if c, ok := auth.CallerFrom(ctx); ok && c.TokenID != "" && c.Subject == actor {
		ev.TokenId = c.TokenID
	}
	data, err := events.Encode(ev)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return n.apply(ctx, ev, data)
}

// apply commits an encoded event as part of this node's next batch:
// directly on the leader, otherwise by forwarding the batch to the leader
// over the shared port. It retries across leader changes until ctx (or
// ApplyTimeout) ends; the event's request id makes a retry of a write that
// did commit harmless. A node that has no leader, and finds none within
// patience, refuses at once with "no leader" instead of retrying into the
// timeout: a partitioned minority cannot commit, and the client has other
// nodes to try.
func (n *Node) apply(ctx context.Context, ev *events.Event, data []byte) (*rpc.WriteResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		if err := n.awaitLeader(ctx); err != nil {
			return nil, err
		}
		resp, err := n.batches.write(ctx, ev, data)
		if err == nil || !retryable(err) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, status.Errorf(codes.Unavailable, "write not committed: %v (last error: %v)", ctx.Err(), err)
		case <-n.ctx.Done():
			return nil, status.Error(codes.Unavailable, ErrShutdown.Error())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// patience is how long a call waits on this node, for a leader during an
// election or for this node to apply an index the call needs, before it
// answers Unavailable so that the client tries another node. Two election
// timeouts ride out a normal election and a healthy follower's apply lag;
// a node that is partitioned away, slow or out of disk is not worth
// waiting for longer while other nodes can serve. Never more than
// ApplyTimeout.
func (n *Node) patience() time.Duration {
	return min(2*n.cfg.Raft.ElectionTimeout, n.cfg.ApplyTimeout)
}

// leaderWatch holds since when a node has had no leader, in Unix
// nanoseconds; 0 while it has one.
type leaderWatch struct{ since atomic.Int64 }

// watchLeader keeps n.leaderGone up to date from raft's leader
// observations until the node stops.
func (n *Node) watchLeader() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	n.noteLeader()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-ch:
			// Read the leader again rather than trust the observation: an
			// observation dropped from a full channel then costs nothing.
			n.noteLeader()
		}
	}
}

func (n *Node) noteLeader() {
	if _, addr := n.Leader(); addr != "" {
		n.leaderGone.since.Store(0)
		return
	}
	n.leaderGone.since.CompareAndSwap(0, time.Now().UnixNano())
}

// leaderlessSince reports whether this node knows it has no leader, and
// since when: it is not the leader and knows none, or, as a follower, it
// has heard nothing from the leader it knows for longer than an election
// timeout (raft's LastContact), which is how a partition from the leader
// looks before raft starts an election of its own. A leader cut off from
// its quorum steps down after its lease, and is leaderless from then on.
func (n *Node) leaderlessSince() (time.Time, bool) {
	if n.IsLeader() {
		return time.Time{}, false
	}
	if _, addr := n.Leader(); addr == "" {
		if s := n.leaderGone.since.Load(); s != 0 {
			return time.Unix(0, s), true
		}
		// watchLeader has not seen it yet.
		return time.Now(), true
	}
	if lc := n.raft.LastContact(); !lc.IsZero() && time.Since(lc) > n.cfg.Raft.ElectionTimeout {
		return lc, true
	}
	return time.Time{}, false
}

func (n *Node) leaderless() bool {
	_, none := n.leaderlessSince()
	return none
}

// awaitLeader returns nil once this node leads or is in contact with a
// leader, waiting for an election to end until the node has been without
// a leader for patience. Then it gives up with Unavailable "no leader"
// (rpc.NoLeaderError): the client takes that to another node, or to its
// caller once no node it knows has a leader. A node that has been without
// a leader for longer refuses at once, so that calls fail over from a
// partitioned node without waiting on it each time.
func (n *Node) awaitLeader(ctx context.Context) error {
	since, none := n.leaderlessSince()
	if !none {
		return nil
	}
	noLeader := rpc.NoLeaderError(fmt.Sprintf("node %s: %v (no contact with a leader; try another node)", n.cfg.Name, ErrNoLeader))
	wait := time.Until(since.Add(n.patience()))
	if wait <= 0 {
		return noLeader
	}
	giveUp := time.NewTimer(wait)
	defer giveUp.Stop()
	poll := time.NewTicker(max(n.cfg.Raft.ElectionTimeout/20, time.Millisecond))
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-n.ctx.Done():
			return status.Error(codes.Unavailable, ErrShutdown.Error())
		case <-giveUp.C:
			if !n.leaderless() {
				return nil
			}
			return noLeader
		case <-poll.C:
			if !n.leaderless() {
				return nil
			}
		}
	}
}

// commitError turns the error of a proposal into one apply's retry loop
// understands: ErrNotLeader for a lost or missing leadership, otherwise a
// gRPC status.
func commitError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return status.Error(codes.Unavailable, ErrShutdown.Error())
	}
	return status.Errorf(codes.Unavailable, "commit: %v", err)
}

// retryable reports errors that a new attempt, perhaps at a new leader, may
// cure.
func retryable(err error) bool {
	if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) {
		return true
	}
	s, ok := status.FromError(err)
	if !ok {
		// Dial errors to a leader that just died.
		return true
	}
	switch s.Code() {
	case codes.Unavailable:
		return s.Message() != ErrShutdown.Error()
	case codes.FailedPrecondition:
		return s.Message() == ErrNotLeader.Error() || s.Message() == ErrNoLeader.Error()
	}
	return false
}

// rejectionStatus maps a state machine rejection to a gRPC status: the one
// place where fsm errors become codes.
func rejectionStatus(r *fsm.Rejection) error {
	code := codes.FailedPrecondition
	switch {
	case errors.Is(r, fsm.ErrNotFound):
		code = codes.NotFound
	case errors.Is(r, fsm.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(r, fsm.ErrInvalid):
		code = codes.InvalidArgument
	}
	return status.Error(code, r.Msg)
}

// readIndex returns an index whose application makes a read on this node
// linearizable: the leader's commit index, taken while the leader has
// confirmed with a quorum that it still leads. A node without a leader, or
// whose leader does not answer within patience, answers Unavailable.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	if err := n.awaitLeader(ctx); err != nil {
		return 0, err
	}
	if n.IsLeader() {
		if !n.isLeaderReady() {
			return 0, status.Error(codes.Unavailable, "leader is still applying its predecessor's log")
		}
		idx := n.raft.CommitIndex()
		if err := n.raft.VerifyLeader().Error(); err != nil {
			return 0, status.Errorf(codes.Unavailable, "verify leadership: %v", err)
		}
		return idx, nil
	}
	_, addr := n.Leader()
	if addr == "" {
		return 0, rpc.NoLeaderError(fmt.Sprintf("node %s: %v", n.cfg.Name, ErrNoLeader))
	}
	conn, err := n.peers.get(addr)
	if err != nil {
		return 0, status.Errorf(codes.Unavailable, "reach leader: %v", err)
	}
	// A leader behind a partition that drops packets never answers: bound
	// the wait, so that the client can try another node.
	rctx, cancel := context.WithTimeout(ctx, n.patience())
	defer cancel()
	resp, err := rpc.NewInternalClient(conn).ReadIndex(rctx, &rpc.ReadIndexRequest{})
	if err != nil {
		if ctx.Err() != nil {
			return 0, status.FromContextError(ctx.Err()).Err()
		}
		// Whatever the leader said (not the leader any more, cannot verify
		// its leadership, unreachable), another node may do better.
		return 0, status.Errorf(codes.Unavailable, "read index from leader %s: %v", addr, status.Convert(err).Message())
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
			return status.FromContextError(ctx.Err()).Err()
		}
		return status.Errorf(codes.Unavailable, "node %s is behind: applied log entry %d, the call needs %d; try another node", n.cfg.Name, n.fsm.AppliedIndex(), index)
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
		"/hpt.v1.Jobs/Submit", "/hpt.v1.Jobs/Cancel":
		return true
	}
	return false
}

// peerPool keeps one gRPC connection per other node, dialled lazily.
type peerPool struct {
	tls     *tls.Config
	maxSize int
	dial    func(context.Context, string) (net.Conn, error)

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerPool(cfg *tls.Config, maxSize int, dial func(context.Context, string) (net.Conn, error)) *peerPool {
	return &peerPool{tls: cfg, maxSize: maxSize, dial: dial, conns: map[string]*grpc.ClientConn{}}
}

func (p *peerPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	if p.conns == nil {
		return nil, status.Error(codes.Unavailable, ErrShutdown.Error())
	}
	c, err := grpc.NewClient("passthrough:///"+addr, append(rpc.FlowDialOptions(),
		grpc.WithTransportCredentials(pinned.ClientCredentials(p.tls)),
		grpc.WithContextDialer(p.dial),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.maxSize), grpc.MaxCallSendMsgSize(p.maxSize)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("dial node %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
