package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
)

// Batching limits: batches in flight at once, on the leader (each a Raft
// entry) and on a follower (each a request to the leader); events and bytes
// per batch (a single larger event still goes alone).
//
// One entry in flight is what makes the leader's batches large: every write
// that arrives while an entry commits, from its own clients or forwarded,
// joins the next. Each entry costs an fsync'd bolt transaction on every
// node, and with more in flight they went out nearly one per arrival
// (docs/benchmarks.md). Followers keep two requests in flight so that their
// writes reach the leader's queue without waiting for a whole commit.
const (
	maxProposalsInflight = 1
	maxForwardsInflight  = 2
	maxBatchEvents       = 256
	maxBatchBytes        = 1 << 20
)

// batcher turns the writes a node receives into Raft entries of many
// events. A write joins the queue; while fewer batches than the limit are
// in flight a sender takes the queue and commits it: on the leader it
// proposes it as one entry, on a follower it forwards it to the leader
// (Internal.ApplyBatch), where it joins the leader's queue. Under load the
// writes that arrive while one entry commits share the next, so the
// per-entry costs of Raft and of the log store (an fsync'd bolt transaction
// on every node, its pages, the entry's encoding and replication) are paid
// per batch, not per write; an idle node sends each write at once.
type batcher struct {
	n *Node

	mu       sync.Mutex
	queue    []*pendingWrite
	inflight int
	closed   bool
	senders  sync.WaitGroup
}

type pendingWrite struct {
	data []byte
	// actor and tokenID are the event's: the leader checks the token again
	// before it proposes the write (admit).
	actor, tokenID string

	done chan struct{}
	resp *rpc.WriteResponse
	err  error
}

func newPendingWrite(ev *events.Event, data []byte) *pendingWrite {
	return &pendingWrite{data: data, actor: ev.GetActor(), tokenID: ev.GetTokenId(), done: make(chan struct{})}
}

// write commits the encoded event as part of the next batch and waits
// for its outcome, for ctx, or until this node has lost its leader. The
// errors are alike whether this node leads or forwards, so apply's retry
// loop treats both the same.
func (b *batcher) write(ctx context.Context, ev *events.Event, data []byte) (*rpc.WriteResponse, error) {
	w := newPendingWrite(ev, data)
	if err := b.enqueue(w); err != nil {
		return nil, err
	}
	// A batch forwarded to a leader behind a partition that drops packets
	// hangs until its timeout; look at the leader now and then, so that a
	// node that knows it has lost its leader stops waiting for it.
	check := time.NewTicker(b.n.cfg.Raft.HeartbeatTimeout)
	defer check.Stop()
	for {
		select {
		case <-w.done:
			return w.resp, w.err
		case <-ctx.Done():
			// The write may still commit; its request id makes a retry safe.
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-check.C:
			if b.n.leaderless() {
				// As above: a retry at a new leader is safe.
				return nil, ErrNoLeader
			}
		}
	}
}

// enqueue adds writes to the queue and starts a sender if fewer than the
// limit are running.
func (b *batcher) enqueue(ws ...*pendingWrite) error {
	limit := maxForwardsInflight
	if b.n.IsLeader() {
		limit = maxProposalsInflight
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return status.Error(codes.Unavailable, ErrShutdown.Error())
	}
	b.queue = append(b.queue, ws...)
	start := b.inflight < limit
	if start {
		b.inflight++
		b.senders.Add(1)
	}
	b.mu.Unlock()
	if start {
		go b.send()
	}
	return nil
}

// send proposes batches until the queue is empty.
func (b *batcher) send() {
	defer b.senders.Done()
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		n, size := 0, 0
		for n < len(b.queue) && n < maxBatchEvents && (n == 0 || size+len(b.queue[n].data) <= maxBatchBytes) {
			size += len(b.queue[n].data)
			n++
		}
		batch := make([]*pendingWrite, n)
		copy(batch, b.queue)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		b.mu.Unlock()
		b.propose(batch)
	}
}

func (b *batcher) propose(batch []*pendingWrite) {
	leader := b.n.IsLeader()
	if leader {
		if batch = b.admit(batch); len(batch) == 0 {
			return
		}
	}
	encoded := make([][]byte, len(batch))
	for i, w := range batch {
		encoded[i] = w.data
	}
	ctx, cancel := context.WithTimeout(b.n.ctx, b.n.cfg.ApplyTimeout)
	defer cancel()
	var results []*rpc.ApplyResult
	var err error
	if leader {
		results, err = b.n.applyBatchLocal(ctx, encoded)
	} else {
		results, err = b.forward(ctx, encoded)
	}
	if err == nil && len(results) != len(batch) {
		err = status.Errorf(codes.Internal, "%d results for %d events", len(results), len(batch))
	}
	for i, w := range batch {
		if err != nil {
			w.err = err
		} else {
			w.resp, w.err = writeOutcome(results[i])
		}
		close(w.done)
	}
}

// admit checks, on the leader, the token behind each write of the batch,
// wherever it was authenticated, and fails the writes whose token the
// leader no longer accepts (revoked, expired, unknown, or another
// subject's). The leader has applied every entry before the one it is
// about to propose, so a revocation acknowledged to anyone is seen here: a
// follower's older view of the tokens never decides who acts. Until the
// leader has applied its predecessors' log its own view may be older
// still, and writes that carry a token wait (a retryable refusal). It
// returns the writes that may go on.
func (b *batcher) admit(batch []*pendingWrite) []*pendingWrite {
	ready := b.n.isLeaderReady()
	kept := batch[:0]
	for _, w := range batch {
		if w.tokenID != "" {
			if err := b.n.checkActingToken(ready, w.actor, w.tokenID); err != nil {
				w.err = err
				close(w.done)
				continue
			}
		}
		kept = append(kept, w)
	}
	return kept
}

// checkActingToken is admit's check of one write.
func (n *Node) checkActingToken(leaderReady bool, actor, tokenID string) error {
	if !leaderReady {
		return status.Error(codes.Unavailable, "leader is still applying its predecessor's log")
	}
	c, err := n.authz.Reauthenticate(tokenID)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, err.Error())
	case err != nil:
		return status.Error(codes.Unavailable, err.Error())
	case c.Subject != actor:
		return status.Errorf(codes.PermissionDenied, "token %s belongs to %s, not to %s", auth.Token{ID: tokenID}, c.Subject, actor)
	}
	return nil
}

// applyResult is one write's outcome as ApplyBatch carries it: a response,
// or the gRPC status the write failed with.
func applyResult(resp *rpc.WriteResponse, err error) *rpc.ApplyResult {
	if err != nil {
		st := status.Convert(err)
		return &rpc.ApplyResult{Code: uint32(st.Code()), Message: st.Message()}
	}
	return &rpc.ApplyResult{Index: resp.GetIndex(), Duplicate: resp.GetDuplicate()}
}

// writeOutcome reads an applyResult back.
func writeOutcome(r *rpc.ApplyResult) (*rpc.WriteResponse, error) {
	if r.GetCode() != uint32(codes.OK) {
		return nil, status.Error(codes.Code(r.GetCode()), r.GetMessage())
	}
	return &rpc.WriteResponse{Index: r.GetIndex(), Duplicate: r.GetDuplicate()}, nil
}

// forward sends a batch to the leader, which proposes it as one entry.
func (b *batcher) forward(ctx context.Context, encoded [][]byte) ([]*rpc.ApplyResult, error) {
	_, addr := b.n.Leader()
	if addr == "" {
		return nil, ErrNoLeader
	}
	conn, err := b.n.peers.get(addr)
	if err != nil {
		return nil, err
	}
	resp, err := rpc.NewInternalClient(conn).ApplyBatch(ctx, &rpc.ApplyBatchRequest{Events: encoded})
	if err != nil {
		return nil, err
	}
	return resp.GetResults(), nil
}

// close refuses new writes and waits for the batches in flight.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.senders.Wait()
}

// applyBatchLocal proposes encoded events, which the caller has built or
// checked with events.Decode, as one Raft entry on this node, which must be
// the leader, and waits for their outcomes. A failure to commit fails the
// whole batch; a rejected event fails only its own result.
func (n *Node) applyBatchLocal(ctx context.Context, encoded [][]byte) ([]*rpc.ApplyResult, error) {
	data, err := events.EncodeBatch(encoded)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := n.raft.Apply(data, timeout)
	if err := commitError(f.Error()); err != nil {
		return nil, err
	}
	res, ok := f.Response().([]fsm.Result)
	if !ok || len(res) != len(encoded) {
		return nil, status.Errorf(codes.Internal, "unexpected apply response %T for %d events", f.Response(), len(encoded))
	}
	out := make([]*rpc.ApplyResult, len(res))
	for i, r := range res {
		if r.Rejected != nil {
			out[i] = applyResult(nil, rejectionStatus(r.Rejected))
			continue
		}
		out[i] = applyResult(&rpc.WriteResponse{Index: r.Index, Duplicate: r.Duplicate}, nil)
	}
	return out, nil
}
