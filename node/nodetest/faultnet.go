package nodetest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
)

// faultNet sits under every connection the nodes of a Cluster open to each
// other (their Config.Dial) and can partition one node away: its
// connections to and from the others are closed and new dials between them
// are refused, as a firewall that drops a host would. Clients and agents
// reach every node regardless, and gossip (UDP) is not cut.
type faultNet struct {
	mu       sync.Mutex
	addrs    map[string]int // advertised address -> node slot
	isolated int            // -1: none
	conns    []*faultConn
}

type faultConn struct {
	net.Conn
	from int
	addr string
}

func newFaultNet() *faultNet { return &faultNet{addrs: map[string]int{}, isolated: -1} }

// cut reports whether a connection from slot from to addr crosses the
// partition. Call with f.mu held.
func (f *faultNet) cut(from int, addr string) bool {
	to, ok := f.addrs[addr]
	return ok && f.isolated >= 0 && from != to && (from == f.isolated || to == f.isolated)
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
		f.mu.Lock()
		defer f.mu.Unlock()
		// The partition may have begun while dialling.
		if f.cut(from, addr) {
			c.Close()
			return nil, fmt.Errorf("dial %s: %w (partitioned)", addr, syscall.ECONNREFUSED)
		}
		fc := &faultConn{Conn: c, from: from, addr: addr}
		f.conns = append(f.conns, fc)
		return fc, nil
	}
}

func (f *faultNet) register(i int, addr string) {
	f.mu.Lock()
	f.addrs[addr] = i
	f.mu.Unlock()
}

// isolate partitions slot i from the others, closing what crosses.
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
