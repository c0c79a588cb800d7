package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
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
// over the shared port. It retries across leader changes (retryable) until
// ctx (or ApplyTimeout) ends; the event's request id makes a retry of a
// write that did commit harmless. A node that has no leader, and finds
// none within patience, refuses at once with "no leader" instead of
// retrying into the timeout: a partitioned minority cannot commit, and the
// client has other nodes to try. A refusal by the state machine returns
// as the *fsm.Rejection it is.
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
			return nil, unavailable(fmt.Sprintf("write not committed: %v (last error: %v)", ctx.Err(), err))
		case <-n.ctx.Done():
			return nil, ErrShutdown
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// commitError turns the error of a Raft proposal into the node's own:
// ErrNotLeader for a lost or missing leadership, ErrShutdown, or
// ErrUnavailable for any other failure to commit.
func commitError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return unavailable(fmt.Sprintf("commit: %v", err))
}

// proposeTolerant writes an event whose rejection as a conflict (the state
// already moved past it: a job cancelled, a result already recorded) is
// not a failure of the caller.
func (n *Node) proposeTolerant(ctx context.Context, actor, reqID string, p proto.Message) (*rpc.WriteResponse, error) {
	pctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	w, err := n.proposeAs(pctx, actor, reqID, p)
	if tolerable(err) {
		return w, nil
	}
	return w, err
}
