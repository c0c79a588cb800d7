package node

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
)

// internalServer serves node-to-node calls. The Authorizer admits only
// peers that proved the cluster key at the TLS handshake.
type internalServer struct {
	rpc.UnimplementedInternalServer
	n *Node
}

// mdActor carries the original caller of a relayed call between nodes.
// Only nodes can send it: Internal is closed to everyone else.
const mdActor = "hpt-actor"

// withCaller returns an outgoing context that carries the caller's subject
// to the leader.
func withCaller(ctx context.Context) context.Context {
	if c, ok := auth.CallerFrom(ctx); ok && c.Subject != "" {
		return metadata.AppendToOutgoingContext(ctx, mdActor, c.Subject)
	}
	return ctx
}

// relayedCaller turns the hpt-actor of a relayed call back into a caller.
func relayedCaller(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(mdActor); len(v) > 0 {
		return auth.WithCaller(ctx, auth.Caller{Subject: v[0], Node: true})
	}
	return ctx
}

func (s *internalServer) Apply(ctx context.Context, req *rpc.ApplyRequest) (*rpc.WriteResponse, error) {
	resp, err := s.ApplyBatch(ctx, &rpc.ApplyBatchRequest{Events: [][]byte{req.GetEvent()}})
	if err != nil {
		return nil, err
	}
	return decodeResult(resp.GetResults()[0])
}

// ApplyBatch commits a follower's batch: its events join the leader's own
// queue, so that the leader proposes the writes of every node together in
// few entries. The forwarding node built and authorized each event; they
// are decoded anyway so that nothing malformed reaches the log, and one
// that fails alone is refused. The token behind each is checked again
// here (batcher.admit).
func (s *internalServer) ApplyBatch(ctx context.Context, req *rpc.ApplyBatchRequest) (*rpc.ApplyBatchResponse, error) {
	if !s.n.IsLeader() {
		return nil, ErrNotLeader
	}
	evs := req.GetEvents()
	if len(evs) == 0 || len(evs) > events.PerEntry {
		return nil, status.Errorf(codes.InvalidArgument, "batch of %d events, want 1 to %d", len(evs), events.PerEntry)
	}
	results := make([]*rpc.ApplyResult, len(evs))
	writes := make([]*pendingWrite, len(evs))
	valid := make([]*pendingWrite, 0, len(evs))
	for i, data := range evs {
		ev, err := events.Decode(data)
		if err != nil {
			results[i] = encodeResult(nil, status.Error(codes.InvalidArgument, err.Error()))
			continue
		}
		writes[i] = newPendingWrite(ev, data)
		valid = append(valid, writes[i])
	}
	if len(valid) > 0 {
		if err := s.n.batches.enqueue(valid...); err != nil {
			return nil, err
		}
	}
	for i, w := range writes {
		if w == nil {
			continue
		}
		select {
		case <-w.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		results[i] = encodeResult(w.resp, w.err)
	}
	return &rpc.ApplyBatchResponse{Results: results}, nil
}

// encodeResult is one write's outcome as ApplyBatch carries it: a
// response, or the kind of failure with the status the client would see.
func encodeResult(resp *rpc.WriteResponse, err error) *rpc.ApplyResult {
	if err == nil {
		return &rpc.ApplyResult{Index: resp.GetIndex(), Duplicate: resp.GetDuplicate()}
	}
	st := status.Convert(errorStatus(err))
	r := &rpc.ApplyResult{Code: uint32(st.Code()), Message: st.Message(), Failure: failureOf(err)}
	if r.Failure == rpc.ApplyFailure_APPLY_FAILURE_NOT_LEADER {
		// The text a node older than the failure field retries on.
		r.Message = ErrNotLeader.Error()
	}
	return r
}

// failureOf is the kind of a failed write's error.
func failureOf(err error) rpc.ApplyFailure {
	switch {
	case errors.Is(err, ErrShutdown):
		return rpc.ApplyFailure_APPLY_FAILURE_SHUTDOWN
	case errors.Is(err, ErrNotLeader):
		return rpc.ApplyFailure_APPLY_FAILURE_NOT_LEADER
	case errors.Is(err, ErrNoLeader):
		return rpc.ApplyFailure_APPLY_FAILURE_NO_LEADER
	case errors.Is(err, ErrUnavailable):
		return rpc.ApplyFailure_APPLY_FAILURE_UNAVAILABLE
	}
	var rej *fsm.Rejection
	if errors.As(err, &rej) {
		for f, kind := range rejectionKinds {
			if errors.Is(rej, kind) {
				return f
			}
		}
		return rpc.ApplyFailure_APPLY_FAILURE_REJECTED_CONFLICT
	}
	return rpc.ApplyFailure_APPLY_FAILURE_OTHER
}

// rejectionKinds are the failures that carry a state machine rejection.
var rejectionKinds = map[rpc.ApplyFailure]error{
	rpc.ApplyFailure_APPLY_FAILURE_REJECTED_NOT_FOUND: fsm.ErrNotFound,
	rpc.ApplyFailure_APPLY_FAILURE_REJECTED_EXISTS:    fsm.ErrExists,
	rpc.ApplyFailure_APPLY_FAILURE_REJECTED_INVALID:   fsm.ErrInvalid,
	rpc.ApplyFailure_APPLY_FAILURE_REJECTED_CONFLICT:  fsm.ErrConflict,
}

// decodeResult reads an encodeResult back into the errors of this node,
// so that the forwarding node decides on a forwarded write exactly as on
// one it committed itself.
func decodeResult(r *rpc.ApplyResult) (*rpc.WriteResponse, error) {
	code, msg := codes.Code(r.GetCode()), r.GetMessage()
	f := r.GetFailure()
	if f == rpc.ApplyFailure_APPLY_FAILURE_UNSPECIFIED {
		if code == codes.OK {
			return &rpc.WriteResponse{Index: r.GetIndex(), Duplicate: r.GetDuplicate()}, nil
		}
		f = legacyFailure(code, msg)
	}
	if kind, ok := rejectionKinds[f]; ok {
		return nil, &fsm.Rejection{Kind: kind, Msg: msg}
	}
	switch f {
	case rpc.ApplyFailure_APPLY_FAILURE_NOT_LEADER:
		return nil, &kindError{ErrNotLeader, msg}
	case rpc.ApplyFailure_APPLY_FAILURE_NO_LEADER:
		return nil, &kindError{ErrNoLeader, msg}
	case rpc.ApplyFailure_APPLY_FAILURE_SHUTDOWN:
		return nil, &kindError{ErrShutdown, msg}
	case rpc.ApplyFailure_APPLY_FAILURE_UNAVAILABLE:
		return nil, unavailable(msg)
	}
	return nil, status.Error(code, msg)
}

// legacyFailure reads the failure of a write from the status alone, as a
// node from before ApplyResult.failure (and before ErrorInfo reasons on
// Internal's refusals) sends it, so that a cluster in the middle of a
// rolling upgrade still retries at a new leader. It reads message texts
// and is used for nothing else; it can go once no such node runs.
func legacyFailure(code codes.Code, msg string) rpc.ApplyFailure {
	switch code {
	case codes.FailedPrecondition:
		if msg == ErrNotLeader.Error() {
			return rpc.ApplyFailure_APPLY_FAILURE_NOT_LEADER
		}
		return rpc.ApplyFailure_APPLY_FAILURE_REJECTED_CONFLICT
	case codes.Unavailable:
		if msg == ErrShutdown.Error() {
			return rpc.ApplyFailure_APPLY_FAILURE_SHUTDOWN
		}
		return rpc.ApplyFailure_APPLY_FAILURE_UNAVAILABLE
	case codes.NotFound:
		return rpc.ApplyFailure_APPLY_FAILURE_REJECTED_NOT_FOUND
	case codes.AlreadyExists:
		return rpc.ApplyFailure_APPLY_FAILURE_REJECTED_EXISTS
	case codes.InvalidArgument:
		return rpc.ApplyFailure_APPLY_FAILURE_REJECTED_INVALID
	}
	return rpc.ApplyFailure_APPLY_FAILURE_OTHER
}

func (s *internalServer) ReadIndex(ctx context.Context, _ *rpc.ReadIndexRequest) (*rpc.ReadIndexResponse, error) {
	if !s.n.IsLeader() {
		return nil, ErrNotLeader
	}
	idx, err := s.n.readIndex(ctx)
	if err != nil {
		return nil, err
	}
	return &rpc.ReadIndexResponse{Index: idx}, nil
}

func (s *internalServer) NodeStatus(context.Context, *rpc.NodeStatusRequest) (*rpc.Member, error) {
	return s.n.localStatus(), nil
}

func (s *internalServer) RemoveServer(ctx context.Context, req *rpc.RemoveNodeRequest) (*rpc.WriteResponse, error) {
	if !s.n.IsLeader() {
		return nil, ErrNotLeader
	}
	return s.n.removeServer(relayedCaller(ctx), req.GetName())
}

func (s *internalServer) Restore(stream grpc.ClientStreamingServer[rpc.SnapshotChunk, rpc.SnapshotRestoreResponse]) error {
	if !s.n.IsLeader() {
		return ErrNotLeader
	}
	idx, err := s.n.restore(relayedCaller(stream.Context()), stream.Recv)
	if err != nil {
		return err
	}
	return stream.SendAndClose(&rpc.SnapshotRestoreResponse{Index: idx})
}

func (s *internalServer) Dispatch(ctx context.Context, req *rpc.DispatchRequest) (*rpc.DispatchResponse, error) {
	if err := s.n.dispatchLocal(ctx, req.GetJobId(), req.GetTarget()); err != nil {
		return nil, err
	}
	return &rpc.DispatchResponse{}, nil
}

func (s *internalServer) CancelRun(ctx context.Context, req *rpc.DispatchRequest) (*rpc.DispatchResponse, error) {
	err := s.n.fleet.push(req.GetTarget(), &rpc.NodeMessage{Msg: &rpc.NodeMessage_Cancel{Cancel: &rpc.JobCancel{JobId: req.GetJobId()}}})
	if err != nil {
		return nil, err
	}
	return &rpc.DispatchResponse{}, nil
}
