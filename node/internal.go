package node

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
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
	return writeOutcome(resp.GetResults()[0])
}

// internalStatus gives a lost leadership the status a forwarding node
// retries on.
func internalStatus(err error) error {
	if errors.Is(err, ErrNotLeader) {
		return status.Error(codes.FailedPrecondition, ErrNotLeader.Error())
	}
	return err
}

// ApplyBatch commits a follower's batch: its events join the leader's own
// queue, so that the leader proposes the writes of every node together in
// few entries. The forwarding node built and authorized each event; they
// are decoded anyway so that nothing malformed reaches the log, and one
// that fails alone is refused. The token behind each is checked again
// here (batcher.admit).
func (s *internalServer) ApplyBatch(ctx context.Context, req *rpc.ApplyBatchRequest) (*rpc.ApplyBatchResponse, error) {
	if !s.n.IsLeader() {
		return nil, status.Error(codes.FailedPrecondition, ErrNotLeader.Error())
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
			results[i] = applyResult(nil, status.Error(codes.InvalidArgument, err.Error()))
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
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		results[i] = applyResult(w.resp, internalStatus(w.err))
	}
	return &rpc.ApplyBatchResponse{Results: results}, nil
}

func (s *internalServer) ReadIndex(ctx context.Context, _ *rpc.ReadIndexRequest) (*rpc.ReadIndexResponse, error) {
	if !s.n.IsLeader() {
		return nil, status.Error(codes.FailedPrecondition, ErrNotLeader.Error())
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
		return nil, status.Error(codes.FailedPrecondition, ErrNotLeader.Error())
	}
	return s.n.removeServer(relayedCaller(ctx), req.GetName())
}

func (s *internalServer) Restore(stream grpc.ClientStreamingServer[rpc.SnapshotChunk, rpc.SnapshotRestoreResponse]) error {
	if !s.n.IsLeader() {
		return status.Error(codes.FailedPrecondition, ErrNotLeader.Error())
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
