package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
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
// over the shared port. It retries across leader
// changes until ctx (or ApplyTimeout) ends; the event's request id makes a
// retry of a write that did commit harmless.
func (n *Node) apply(ctx context.Context, ev *events.Event, data []byte) (*rpc.WriteResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
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
// confirmed with a quorum that it still leads.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
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
		return 0, status.Error(codes.Unavailable, ErrNoLeader.Error())
	}
	conn, err := n.peers.get(addr)
	if err != nil {
		return 0, status.Errorf(codes.Unavailable, "reach leader: %v", err)
	}
	resp, err := rpc.NewInternalClient(conn).ReadIndex(ctx, &rpc.ReadIndexRequest{})
	if err != nil {
		return 0, err
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
	wctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	if err := n.fsm.WaitApplied(wctx, idx); err != nil {
		return status.Errorf(codes.DeadlineExceeded, "node %s has not applied index %d: %v", n.cfg.Name, idx, err)
	}
	return nil
}

// readBarrier honours a call's consistency metadata: hpt-min-index waits
// until this node has applied the entry carrying that event index
// (read-your-writes anywhere);
// hpt-consistent, for reads only, waits for the leader-confirmed read index.
func (n *Node) readBarrier(ctx context.Context, read bool) error {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
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
	if v := md.Get(MDConsistent); read && len(v) > 0 && v[0] == "1" {
		idx, err := n.readIndex(ctx)
		if err != nil {
			return err
		}
		want = max(want, idx)
	}
	if want == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	if err := n.fsm.WaitApplied(wctx, want); err != nil {
		return status.Errorf(codes.DeadlineExceeded, "node %s has not applied log entry %d: %v", n.cfg.Name, want, err)
	}
	return nil
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
