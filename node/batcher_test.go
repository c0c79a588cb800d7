package node_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// Concurrent writes on every node share Raft entries, and every write still
// gets its own index, which names the entry that carries it, on every node.
func TestConcurrentWritesShareEntries(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	c.WaitLeader()
	const writers, perWriter = 48, 10
	clients := make([]*rpc.Client, c.Len())
	for i := range clients {
		clients[i] = c.Client(i)
	}
	var mu sync.Mutex
	written := map[uint64]string{} // index -> machine name
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				name := fmt.Sprintf("m%d-%d", w, i)
				resp, err := clients[w%len(clients)].Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "machine", Name: name})
				if err != nil {
					errs <- fmt.Errorf("add %s: %w", name, err)
					return
				}
				mu.Lock()
				if prev, dup := written[resp.GetIndex()]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("%s and %s both got index %d", prev, name, resp.GetIndex())
					return
				}
				written[resp.GetIndex()] = name
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	entries := map[uint64]int{}
	var last uint64
	for idx := range written {
		entries[events.EntryOf(idx)]++
		last = max(last, idx)
	}
	if len(entries) >= len(written) {
		t.Fatalf("%d writes took %d entries: concurrent writes were not batched", len(written), len(entries))
	}
	t.Logf("%d writes in %d entries", len(written), len(entries))
	c.WaitEvent(last)
	for _, n := range c.Running() {
		for idx, name := range written {
			ev, err := n.State().Event(idx)
			if err != nil {
				t.Fatalf("%s: event %d (%s): %v", n.Name(), idx, name, err)
			}
			p, err := ev.DecodePayload()
			if err != nil {
				t.Fatal(err)
			}
			if got := p.(*events.MachineAdded).GetName(); got != name {
				t.Fatalf("%s: event %d adds %s, want %s", n.Name(), idx, got, name)
			}
		}
	}
}

// A follower's batch reaches the leader as one request; an event in it that
// does not decode is refused alone, and the others commit together.
func TestForwardedBatchRefusesOnlyTheBadEvent(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	leader := c.WaitLeader()
	c.WaitBootstrapped()
	encode := func(name string) []byte {
		ev, err := events.New("node:n1", "batch-"+name, time.Now(), &events.MachineAdded{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		b, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	req := &rpc.ApplyBatchRequest{Events: [][]byte{encode("first"), {0xff, 0x01}, encode("second")}}

	if _, err := rpc.NewInternalClient(c.NodeClient(follower(c))).ApplyBatch(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ApplyBatch on a follower: %v, want FailedPrecondition", err)
	}
	resp, err := rpc.NewInternalClient(c.NodeClient(leader)).ApplyBatch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	rs := resp.GetResults()
	if len(rs) != 3 {
		t.Fatalf("%d results for 3 events", len(rs))
	}
	if codes.Code(rs[1].GetCode()) != codes.InvalidArgument || rs[1].GetIndex() != 0 {
		t.Fatalf("undecodable event: %+v, want InvalidArgument and no index", rs[1])
	}
	first, second := rs[0], rs[2]
	if first.GetCode() != 0 || second.GetCode() != 0 {
		t.Fatalf("good events refused: %+v, %+v", first, second)
	}
	if events.EntryOf(first.GetIndex()) != events.EntryOf(second.GetIndex()) || second.GetIndex() != first.GetIndex()+1 {
		t.Fatalf("good events at %d and %d: want consecutive indexes in one entry", first.GetIndex(), second.GetIndex())
	}
	// Sent again (a retry after a lost answer), the batch is applied once.
	again, err := rpc.NewInternalClient(c.NodeClient(leader)).ApplyBatch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range again.GetResults() {
		if i == 1 {
			continue
		}
		if !r.GetDuplicate() || r.GetIndex() != rs[i].GetIndex() {
			t.Fatalf("retried event %d: %+v, want a duplicate of %d", i, r, rs[i].GetIndex())
		}
	}
	c.WaitEvent(second.GetIndex())
	ev, err := c.Node(leader).State().Event(second.GetIndex())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := events.Decode(req.Events[2])
	want.Index = second.GetIndex()
	if !proto.Equal(ev, want) {
		t.Fatalf("archived %v, want %v", ev, want)
	}
}
