package node

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
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
	// The forwarding node built and authorized the event; decode it anyway
	// so that nothing malformed reaches the log.
	if _, err := events.Decode(req.GetEvent()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if !s.n.IsLeader() {
		return nil, status.Error(codes.FailedPrecondition, ErrNotLeader.Error())
	}
	resp, err := s.n.applyLocal(ctx, req.GetEvent())
	return resp, internalStatus(err)
}

// internalStatus gives a lost leadership the status a forwarding node
// retries on.
func internalStatus(err error) error {
	if errors.Is(err, ErrNotLeader) {
		return status.Error(codes.FailedPrecondition, ErrNotLeader.Error())
	}
	return err
}

// ApplyBatch proposes every event at once, so that Raft commits them
// together, and then waits for each.
func (s *internalServer) ApplyBatch(ctx context.Context, req *rpc.ApplyBatchRequest) (*rpc.ApplyBatchResponse, error) {
	if !s.n.IsLeader() {
		return nil, status.Error(codes.FailedPrecondition, ErrNotLeader.Error())
	}
	timeout := s.n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	evs := req.GetEvents()
	futures := make([]raft.ApplyFuture, len(evs))
	results := make([]*rpc.ApplyResult, len(evs))
	for i, data := range evs {
		if _, err := events.Decode(data); err != nil {
			results[i] = &rpc.ApplyResult{Code: uint32(codes.InvalidArgument), Message: err.Error()}
			continue
		}
		futures[i] = s.n.raft.Apply(data, timeout)
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		resp, err := applyResult(f)
		if err != nil {
			st := status.Convert(internalStatus(err))
			results[i] = &rpc.ApplyResult{Code: uint32(st.Code()), Message: st.Message()}
			continue
		}
		results[i] = &rpc.ApplyResult{Index: resp.GetIndex(), Duplicate: resp.GetDuplicate()}
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
