package node_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// faultNet sits under every connection the nodes open to each other (their
// Config.Dial) and can partition one node away: its connections to and
// from the others are closed and new dials between them are refused, as a
// firewall that drops a host would. Clients reach every node regardless.
type faultNet struct {
	mu       sync.Mutex
	addrs    map[string]int // advertised address -> node
	isolated int            // -1: none
	conns    []*netConn
}

type netConn struct {
	net.Conn
	from int
	addr string
}

func newFaultNet() *faultNet { return &faultNet{addrs: map[string]int{}, isolated: -1} }

// owner returns the node at addr, or -1.
func (f *faultNet) owner(addr string) int {
	if i, ok := f.addrs[addr]; ok {
		return i
	}
	return -1
}

func (f *faultNet) cut(from int, addr string) bool {
	to := f.owner(addr)
	return f.isolated >= 0 && to >= 0 && from != to && (from == f.isolated || to == f.isolated)
}

func (f *faultNet) dialer(from int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		f.mu.Lock()
		refused := f.cut(from, addr)
		f.mu.Unlock()
		if refused {
			return nil, fmt.Errorf("dial %s: %w (partitioned)", addr, syscall.ECONNREFUSED)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		nc := &netConn{Conn: c, from: from, addr: addr}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.cut(from, addr) {
			c.Close()
			return nil, fmt.Errorf("dial %s: %w (partitioned)", addr, syscall.ECONNREFUSED)
		}
		f.conns = append(f.conns, nc)
		return nc, nil
	}
}

func (f *faultNet) register(i int, addr string) {
	f.mu.Lock()
	f.addrs[addr] = i
	f.mu.Unlock()
}

// isolate partitions node i from the others.
func (f *faultNet) isolate(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.isolated = i
	kept := f.conns[:0]
	for _, c := range f.conns {
		if f.cut(c.from, c.addr) {
			c.Close()
			continue
		}
		kept = append(kept, c)
	}
	f.conns = kept
}

func (f *faultNet) heal() {
	f.mu.Lock()
	f.isolated = -1
	f.mu.Unlock()
}

// TestPartitionedLeaderAcceptsNoWrite isolates the leader: the minority
// side acknowledges no write, the majority elects a leader and goes on,
// and after the partition heals every node holds the same log.
func TestPartitionedLeaderAcceptsNoWrite(t *testing.T) {
	fn := newFaultNet()
	c := nodetest.Start(t, 3, nodetest.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Dial = fn.dialer(i)
	}})
	for i := range c.Len() {
		fn.register(i, c.Node(i).Addr())
	}
	ctx := ctxT(t)
	old := c.WaitLeader()
	if _, err := c.Client(old).Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "before"}); err != nil {
		t.Fatal(err)
	}

	fn.isolate(old)
	minority := c.ClientFor(c.Admin.Secret(), c.Node(old).Addr())
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := minority.Identities.Add(wctx, &rpc.AddIdentityRequest{Kind: "user", Name: "minority"})
	cancel()
	if err == nil {
		t.Fatal("the isolated old leader acknowledged a write")
	}
	t.Logf("write on the minority side: %v", err)

	var majority []int
	for i := range c.Len() {
		if i != old {
			majority = append(majority, i)
		}
	}
	var w *rpc.WriteResponse
	c.Eventually(15*time.Second, func() error {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		w, err = c.Client(majority[0]).Identities.Add(wctx, &rpc.AddIdentityRequest{Kind: "user", Name: "majority"})
		return err
	})
	if got := c.Node(old).State().AppliedIndex(); got >= events.EntryOf(w.GetIndex()) {
		t.Fatalf("isolated node applied index %d, at or past the majority's write %d", got, w.GetIndex())
	}
	if c.Node(old).IsLeader() {
		t.Fatal("the isolated node still believes it leads")
	}

	fn.heal()
	c.WaitEvent(w.GetIndex())
	logOf := func(i int) []string {
		var out []string
		if err := c.Node(i).State().Events(0, func(ev *events.Event) bool {
			out = append(out, fmt.Sprintf("%d %s %s", ev.GetIndex(), events.Name(ev.GetType()), ev.GetRequestId()))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// The rejoined node may apply entries after w; compare up to w.
	upTo := func(l []string) []string {
		for i, e := range l {
			var idx uint64
			fmt.Sscan(e, &idx)
			if idx > w.GetIndex() {
				return l[:i]
			}
		}
		return l
	}
	want := upTo(logOf(majority[0]))
	for i := range c.Len() {
		got := upTo(logOf(i))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("node %d log after healing:\n%v\nwant\n%v", i, got, want)
		}
	}
}
