package node

import (
	"context"
	"errors"
	"fmt"
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
//
// Its outcomes are the node's errors (ErrNotLeader, ErrNoLeader,
// ErrShutdown, ErrUnavailable, *fsm.Rejection), the same whether this node
// committed the batch or forwarded it, so apply's retry loop treats both
// alike.
type batcher struct {
	ctx          context.Context // ends with the node
	applyTimeout time.Duration
	heartbeat    time.Duration // raft's; how often write looks at the leader
	node         batchNode

	mu       sync.Mutex
	queue    []*pendingWrite
	inflight int
	closed   bool
	senders  sync.WaitGroup
}

// batchNode is what the batcher needs of its node.
type batchNode interface {
	IsLeader() bool
	leaderless() bool
	// checkActingToken fails a write whose token the leader does not
	// accept now (admit).
	checkActingToken(actor, tokenID string) error
	// applyBatchLocal proposes encoded events as one Raft entry on this
	// node, the leader.
	applyBatchLocal(ctx context.Context, encoded [][]byte) ([]fsm.Result, error)
	// forwardBatch sends encoded events to the leader in one request.
	forwardBatch(ctx context.Context, encoded [][]byte) ([]*rpc.ApplyResult, error)
}

func newBatcher(ctx context.Context, cfg Config, node batchNode) *batcher {
	return &batcher{ctx: ctx, applyTimeout: cfg.ApplyTimeout, heartbeat: cfg.Raft.HeartbeatTimeout, node: node}
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
// for its outcome, for ctx, or until this node has lost its leader.
func (b *batcher) write(ctx context.Context, ev *events.Event, data []byte) (*rpc.WriteResponse, error) {
	w := newPendingWrite(ev, data)
	if err := b.enqueue(w); err != nil {
		return nil, err
	}
	// A batch forwarded to a leader behind a partition that drops packets
	// hangs until its timeout; look at the leader now and then, so that a
	// node that knows it has lost its leader stops waiting for it.
	check := time.NewTicker(b.heartbeat)
	defer check.Stop()
	for {
		select {
		case <-w.done:
			return w.resp, w.err
		case <-ctx.Done():
			// The write may still commit; its request id makes a retry safe.
			return nil, ctx.Err()
		case <-check.C:
			if b.node.leaderless() {
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
	if b.node.IsLeader() {
		limit = maxProposalsInflight
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrShutdown
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

// propose commits a batch (on the leader) or forwards it (elsewhere) and
// completes its writes. A failure to commit or to forward fails the whole
// batch; a rejected event fails only its own write.
func (b *batcher) propose(batch []*pendingWrite) {
	leader := b.node.IsLeader()
	if leader {
		if batch = b.admit(batch); len(batch) == 0 {
			return
		}
	}
	encoded := make([][]byte, len(batch))
	for i, w := range batch {
		encoded[i] = w.data
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.applyTimeout)
	defer cancel()
	var err error
	if leader {
		err = b.commit(ctx, batch, encoded)
	} else {
		err = b.forward(ctx, batch, encoded)
	}
	for _, w := range batch {
		if err != nil {
			w.resp, w.err = nil, err
		}
		close(w.done)
	}
}

// commit proposes the batch as one Raft entry on this node, the leader,
// and records each write's outcome.
func (b *batcher) commit(ctx context.Context, batch []*pendingWrite, encoded [][]byte) error {
	results, err := b.node.applyBatchLocal(ctx, encoded)
	if err != nil {
		return err
	}
	for i, r := range results {
		if r.Rejected != nil {
			batch[i].err = r.Rejected
			continue
		}
		batch[i].resp = &rpc.WriteResponse{Index: r.Index, Duplicate: r.Duplicate}
	}
	return nil
}

// forward sends the batch to the leader, which proposes it with its own
// queue, and records each write's outcome as the leader reports it.
func (b *batcher) forward(ctx context.Context, batch []*pendingWrite, encoded [][]byte) error {
	results, err := b.node.forwardBatch(ctx, encoded)
	if err != nil {
		return err
	}
	if len(results) != len(batch) {
		return status.Errorf(codes.Internal, "%d results for %d events", len(results), len(batch))
	}
	for i, r := range results {
		batch[i].resp, batch[i].err = decodeResult(r)
	}
	return nil
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
	kept := batch[:0]
	for _, w := range batch {
		if w.tokenID != "" {
			if err := b.node.checkActingToken(w.actor, w.tokenID); err != nil {
				w.err = err
				close(w.done)
				continue
			}
		}
		kept = append(kept, w)
	}
	return kept
}

// close refuses new writes and waits for the batches in flight.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.senders.Wait()
}

// checkActingToken is admit's check of one write (batchNode).
func (n *Node) checkActingToken(actor, tokenID string) error {
	if !n.isLeaderReady() {
		return errLeaderNotReady
	}
	c, err := n.authz.Reauthenticate(tokenID)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return err
	case err != nil:
		return unavailable(err.Error())
	case c.Subject != actor:
		return &kindError{auth.ErrDenied, fmt.Sprintf("token %s belongs to %s, not to %s", auth.Token{ID: tokenID}, c.Subject, actor)}
	}
	return nil
}

// applyBatchLocal proposes encoded events, which the caller has built or
// checked with events.Decode, as one Raft entry on this node, which must be
// the leader, and waits for their outcomes, one per event (batchNode).
func (n *Node) applyBatchLocal(ctx context.Context, encoded [][]byte) ([]fsm.Result, error) {
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
	return res, nil
}

// forwardBatch sends encoded events to the leader's Internal.ApplyBatch
// (batchNode).
func (n *Node) forwardBatch(ctx context.Context, encoded [][]byte) ([]*rpc.ApplyResult, error) {
	leader, _, err := n.leaderClient()
	if err != nil {
		return nil, err
	}
	resp, err := leader.ApplyBatch(ctx, &rpc.ApplyBatchRequest{Events: encoded})
	if err != nil {
		return nil, peerCallError(err)
	}
	return resp.GetResults(), nil
}
