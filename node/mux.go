package node

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hpt-dev/hpt/rpc/pinned"
)

// mux owns the node's one TCP listener. Its pinned.Acceptor completes the
// TLS handshake of every connection (which is where unknown keys are
// refused) under the limits of pinned.DefaultAcceptLimits; the mux hands each
// handshaken connection to the listener registered for its ALPN protocol:
// gRPC or Raft.
type mux struct {
	acc       *pinned.Acceptor
	tlsConfig *tls.Config
	log       *slog.Logger

	routes map[string]*chanListener

	// byKey holds the open connections of each peer key (by fingerprint),
	// so that a revoked key can be cut off at once, whatever it is doing.
	keysMu sync.Mutex
	byKey  map[string]map[*keyedConn]struct{}

	// serving tracks the accept loop, wg the deliveries it starts: close
	// waits for the loop to end before it waits for them, because the loop
	// adds to wg.
	serving  sync.WaitGroup
	wg       sync.WaitGroup
	closing  chan struct{}
	closeErr sync.Once
}

func newMux(ln net.Listener, cfg *tls.Config, log *slog.Logger, protos ...string) *mux {
	m := &mux{
		acc:       pinned.NewAcceptor(ln, pinned.AcceptConfig{TLS: cfg, Log: log}),
		tlsConfig: cfg, log: log,
		routes:  map[string]*chanListener{},
		byKey:   map[string]map[*keyedConn]struct{}{},
		closing: make(chan struct{}),
	}
	for _, p := range protos {
		m.routes[p] = newChanListener(ln.Addr(), m.closing)
	}
	return m
}

// listener returns the net.Listener that receives connections for proto.
func (m *mux) listener(proto string) *chanListener { return m.routes[proto] }

// start runs the accept loop until close.
func (m *mux) start() {
	m.serving.Add(1)
	go func() {
		defer m.serving.Done()
		m.serve()
	}()
}

func (m *mux) serve() {
	for {
		conn, err := m.acc.Accept()
		if err != nil {
			select {
			case <-m.closing:
			default:
				m.log.Error("accept failed; stopping listener", "err", err)
			}
			return
		}
		// Deliver on its own goroutine: a protocol slow to accept must
		// not hold up the other.
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(conn.(*tls.Conn))
		}()
	}
}

func (m *mux) route(conn *tls.Conn) {
	cs := conn.ConnectionState()
	route := m.routes[cs.NegotiatedProtocol]
	if route == nil {
		// The TLS configuration offers only the routed protocols.
		m.log.Error("no route for negotiated protocol", "proto", cs.NegotiatedProtocol, "remote", conn.RemoteAddr())
		conn.Close()
		return
	}
	var delivered net.Conn = conn
	if pub := pinned.PeerKey(cs); pub != nil {
		delivered = m.track(conn, pinned.Fingerprint(pub))
	}
	if !route.deliver(delivered) {
		delivered.Close()
	}
}

// handshakes returns the acceptor's figures, for metrics.
func (m *mux) handshakes() pinned.AcceptStats { return m.acc.Stats() }

// keyedConn is a connection from a peer that presented a key.
type keyedConn struct {
	*tls.Conn
	m    *mux
	fp   string
	once sync.Once
}

func (c *keyedConn) Close() error {
	c.once.Do(func() {
		c.m.keysMu.Lock()
		delete(c.m.byKey[c.fp], c)
		if len(c.m.byKey[c.fp]) == 0 {
			delete(c.m.byKey, c.fp)
		}
		c.m.keysMu.Unlock()
	})
	return c.Conn.Close()
}

func (m *mux) track(conn *tls.Conn, fp string) *keyedConn {
	kc := &keyedConn{Conn: conn, m: m, fp: fp}
	m.keysMu.Lock()
	if m.byKey[fp] == nil {
		m.byKey[fp] = map[*keyedConn]struct{}{}
	}
	m.byKey[fp][kc] = struct{}{}
	m.keysMu.Unlock()
	return kc
}

// closeKey closes every connection of the peer key with fingerprint fp and
// reports how many there were.
func (m *mux) closeKey(fp string) int {
	m.keysMu.Lock()
	conns := make([]*keyedConn, 0, len(m.byKey[fp]))
	for c := range m.byKey[fp] {
		conns = append(conns, c)
	}
	m.keysMu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

// close stops accepting, cuts the handshakes in flight, waits for
// deliveries and closes the protocol listeners.
func (m *mux) close() error {
	var err error
	m.closeErr.Do(func() {
		close(m.closing)
		err = m.acc.Close()
		m.serving.Wait()
		m.wg.Wait()
	})
	return err
}

// chanListener is a net.Listener fed by the mux.
type chanListener struct {
	addr    net.Addr
	conns   chan net.Conn
	closing <-chan struct{}
	once    sync.Once
	done    chan struct{}
}

func newChanListener(addr net.Addr, closing <-chan struct{}) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closing: closing, done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	case <-l.closing:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.closing:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// raftLayer is raft's StreamLayer on the shared port: accepted connections
// come from the mux (ALPN hpt-raft, client key verified as the cluster key);
// dialled connections present the cluster key and pin it on the other side.
type raftLayer struct {
	*chanListener
	advertise net.Addr
	tlsConfig *tls.Config
	dial      func(context.Context, string) (net.Conn, error)
}

func (r *raftLayer) Addr() net.Addr { return r.advertise }

func (r *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	raw, err := r.dial(ctx, string(address))
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, r.tlsConfig)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}
