package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// peerPool keeps one gRPC connection per other node, dialled lazily.
type peerPool struct {
	tls     *tls.Config
	maxSize int
	dial    func(context.Context, string) (net.Conn, error)

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerPool(cfg *tls.Config, maxSize int, dial func(context.Context, string) (net.Conn, error)) *peerPool {
	return &peerPool{tls: cfg, maxSize: maxSize, dial: dial, conns: map[string]*grpc.ClientConn{}}
}

// get returns the connection to the node at addr; ErrShutdown once the
// pool is closed.
func (p *peerPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	if p.conns == nil {
		return nil, ErrShutdown
	}
	c, err := grpc.NewClient("passthrough:///"+addr, append(rpc.FlowDialOptions(),
		grpc.WithTransportCredentials(pinned.ClientCredentials(p.tls)),
		grpc.WithContextDialer(p.dial),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.maxSize), grpc.MaxCallSendMsgSize(p.maxSize)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("dial node %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// leaderClient returns the leader's Internal service and address, for the
// work a follower hands to the leader (forwarded writes, read indexes,
// removing a server, restoring a snapshot). It fails with ErrNoLeader
// while this node knows no leader, ErrShutdown once it is shutting down,
// and an ErrUnavailable error when it cannot connect.
func (n *Node) leaderClient() (rpc.InternalClient, string, error) {
	_, addr := n.Leader()
	if addr == "" {
		return nil, "", ErrNoLeader
	}
	conn, err := n.peers.get(addr)
	if err != nil {
		if errors.Is(err, ErrShutdown) {
			return nil, addr, err
		}
		return nil, addr, unavailable(fmt.Sprintf("reach leader: %v", err))
	}
	return rpc.NewInternalClient(conn), addr, nil
}

// peerCallError reads the error of a call to another node's Internal
// service back into the node's own errors: the peer's ErrorInfo reason
// says not leader or shutting down; a call that did not reach the peer, or
// that it could not serve now, is ErrUnavailable. Any other status (the
// peer refused the call) passes on as it is.
func peerCallError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return unavailable(err.Error())
	}
	switch rpc.Reason(err) {
	case rpc.ReasonNotLeader:
		return &kindError{ErrNotLeader, st.Message()}
	case rpc.ReasonShutdown:
		return &kindError{ErrShutdown, st.Message()}
	case rpc.ReasonNoLeader:
		return &kindError{ErrNoLeader, st.Message()}
	}
	switch f := legacyFailure(st.Code(), st.Message()); {
	case f == rpc.ApplyFailure_APPLY_FAILURE_NOT_LEADER:
		return &kindError{ErrNotLeader, st.Message()}
	case f == rpc.ApplyFailure_APPLY_FAILURE_SHUTDOWN:
		return &kindError{ErrShutdown, st.Message()}
	case st.Code() == codes.Unavailable:
		return unavailable(err.Error())
	}
	return err
}
