package node

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/rpc"
)

// Forwarding limits: batches in flight to the leader at once, and events
// per batch.
const (
	maxForwardInflight = 2
	maxForwardBatch    = 256
)

// forwarder sends the writes a follower receives to the leader in batches.
// A write joins the queue; while fewer than maxForwardInflight batches are
// in flight a sender takes the whole queue, so under load the writes that
// arrive during one round trip share the next, and an idle node sends each
// write at once. This is what etcd gets from forwarding proposals in Raft
// messages: the per-write cost of the hop disappears.
type forwarder struct {
	n *Node

	mu       sync.Mutex
	queue    []*forwarded
	inflight int
	closed   bool
	senders  sync.WaitGroup
}

type forwarded struct {
	data []byte
	done chan struct{}
	resp *rpc.WriteResponse
	err  error
}

// forward proposes data on the leader and waits for the outcome or ctx.
// The errors are those of applyLocal on the leader, so apply's retry loop
// treats both alike.
func (f *forwarder) forward(ctx context.Context, data []byte) (*rpc.WriteResponse, error) {
	w := &forwarded{data: data, done: make(chan struct{})}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, status.Error(codes.Unavailable, ErrShutdown.Error())
	}
	f.queue = append(f.queue, w)
	start := f.inflight < maxForwardInflight
	if start {
		f.inflight++
		f.senders.Add(1)
	}
	f.mu.Unlock()
	if start {
		go f.send()
	}
	select {
	case <-w.done:
		return w.resp, w.err
	case <-ctx.Done():
		// The write may still commit; its request id makes a retry safe.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// send forwards batches until the queue is empty.
func (f *forwarder) send() {
	defer f.senders.Done()
	for {
		f.mu.Lock()
		if len(f.queue) == 0 {
			f.inflight--
			f.mu.Unlock()
			return
		}
		n := min(len(f.queue), maxForwardBatch)
		batch := make([]*forwarded, n)
		copy(batch, f.queue)
		f.queue = append(f.queue[:0], f.queue[n:]...)
		f.mu.Unlock()
		f.sendBatch(batch)
	}
}

func (f *forwarder) sendBatch(batch []*forwarded) {
	fail := func(err error) {
		for _, w := range batch {
			w.err = err
			close(w.done)
		}
	}
	_, addr := f.n.Leader()
	if addr == "" {
		fail(ErrNoLeader)
		return
	}
	conn, err := f.n.peers.get(addr)
	if err != nil {
		fail(err)
		return
	}
	req := &rpc.ApplyBatchRequest{Events: make([][]byte, len(batch))}
	for i, w := range batch {
		req.Events[i] = w.data
	}
	ctx, cancel := context.WithTimeout(f.n.ctx, f.n.cfg.ApplyTimeout)
	defer cancel()
	resp, err := rpc.NewInternalClient(conn).ApplyBatch(ctx, req)
	if err == nil && len(resp.GetResults()) != len(batch) {
		err = status.Errorf(codes.Internal, "leader answered %d results for %d events", len(resp.GetResults()), len(batch))
	}
	if err != nil {
		fail(err)
		return
	}
	for i, r := range resp.GetResults() {
		w := batch[i]
		if r.GetCode() != uint32(codes.OK) {
			w.err = status.Error(codes.Code(r.GetCode()), r.GetMessage())
		} else {
			w.resp = &rpc.WriteResponse{Index: r.GetIndex(), Duplicate: r.GetDuplicate()}
		}
		close(w.done)
	}
}

// close refuses new writes and waits for the batches in flight.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.senders.Wait()
}
