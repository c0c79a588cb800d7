package pinned

import (
	"container/list"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// AcceptLimits bound the TLS handshakes an Acceptor runs at once, so that
// connections that never authenticate cannot delay those that do. Zero
// fields take the defaults named on each.
type AcceptLimits struct {
	// FirstByte is how long a new connection has to send the first byte
	// of its ClientHello. Default 2 s.
	FirstByte time.Duration
	// Handshake is how long the whole handshake may take from accept.
	// Default 10 s.
	Handshake time.Duration
	// MaxPending is how many connections may be in handshake at once.
	// Default 256.
	MaxPending int
	// MaxPendingPerSource is how many of them may come from one source:
	// one IPv4 address, or one IPv6 /64. Default 32.
	MaxPendingPerSource int
	// LogInterval: the first refusal of each kind per key (or source) is
	// logged at once, later ones are counted and summarised in one line
	// per interval. Default 1 minute.
	LogInterval time.Duration
}

// DefaultAcceptLimits are the limits of every hpt listener
// (docs/security.md, "Connection limits").
func DefaultAcceptLimits() AcceptLimits {
	return AcceptLimits{
		FirstByte:           2 * time.Second,
		Handshake:           10 * time.Second,
		MaxPending:          256,
		MaxPendingPerSource: 32,
		LogInterval:         time.Minute,
	}
}

func (l AcceptLimits) withDefaults() AcceptLimits {
	d := DefaultAcceptLimits()
	if l.FirstByte <= 0 {
		l.FirstByte = d.FirstByte
	}
	if l.Handshake <= 0 {
		l.Handshake = d.Handshake
	}
	l.FirstByte = min(l.FirstByte, l.Handshake)
	if l.MaxPending <= 0 {
		l.MaxPending = d.MaxPending
	}
	if l.MaxPendingPerSource <= 0 {
		l.MaxPendingPerSource = d.MaxPendingPerSource
	}
	l.MaxPendingPerSource = min(l.MaxPendingPerSource, l.MaxPending)
	if l.LogInterval <= 0 {
		l.LogInterval = d.LogInterval
	}
	return l
}

// Reasons a handshake is refused, as counted in AcceptStats and logged.
const (
	// RefusedKey: the peer's key (or the lack of one) was refused.
	RefusedKey = "key"
	// RefusedTimeout: no first byte within FirstByte, or no complete
	// handshake within Handshake.
	RefusedTimeout = "timeout"
	// RefusedShed: closed to make room for a newer connection while the
	// handshake pool, or the source's share of it, was full.
	RefusedShed = "shed"
	// RefusedProtocol: the client asked for no ALPN protocol we serve.
	RefusedProtocol = "protocol"
	// RefusedTLS: anything else (not TLS, bad version, client gave up).
	RefusedTLS = "tls"
)

// refusalReasons lists every reason, in a fixed order.
var refusalReasons = [...]string{RefusedKey, RefusedTimeout, RefusedShed, RefusedProtocol, RefusedTLS}

// AcceptStats are an Acceptor's figures since it started.
type AcceptStats struct {
	// Pending is the number of connections in handshake now.
	Pending int
	// Refused counts refused handshakes by reason (every reason present).
	Refused map[string]uint64
}

// AcceptConfig configures an Acceptor.
type AcceptConfig struct {
	// TLS is the server configuration (from ServerConfig).
	TLS *tls.Config
	// Log receives refusals, aggregated per LogInterval; nil discards.
	Log    *slog.Logger
	Limits AcceptLimits
}

// Acceptor is a net.Listener whose Accept returns connections with their TLS
// handshake complete (*tls.Conn, a HandshakenConn), so that a peer's key has
// been checked before anyone reads a byte from it.
//
// Accept never waits for handshake capacity: each handshake runs in its own
// goroutine under a deadline, and when the pool of pending handshakes (or
// one source's share of it) is full, the oldest pending connection that has
// not sent a byte yet is closed to make room (else the oldest pending one).
// A client that starts its handshake at once is thus never pushed out by
// connections that sit idle, however many there are and however fast they
// come back.
type Acceptor struct {
	ln     net.Listener
	tls    *tls.Config
	limits AcceptLimits
	refuse *refusalLog

	conns   chan *tls.Conn
	closing chan struct{}
	// done is closed when the accept loop has ended; acceptErr says why.
	done      chan struct{}
	acceptErr error
	closeOnce sync.Once

	// mu guards the pending handshakes: in accept order, and counted by
	// source.
	mu       sync.Mutex
	pending  *list.List // of *pendingConn
	bySource map[string]int

	// wg tracks the accept loop, the handshakes and the log flusher.
	wg sync.WaitGroup
}

// NewAcceptor starts accepting on ln and handshaking with cfg.TLS. Close
// stops it and closes ln.
func NewAcceptor(ln net.Listener, cfg AcceptConfig) *Acceptor {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Acceptor{
		ln: ln, tls: cfg.TLS, limits: cfg.Limits.withDefaults(),
		conns:    make(chan *tls.Conn),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		pending:  list.New(),
		bySource: map[string]int{},
	}
	a.refuse = newRefusalLog(log, a.limits.LogInterval)
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		defer close(a.done)
		a.acceptErr = a.acceptLoop()
	}()
	go func() {
		defer a.wg.Done()
		a.refuse.run(a.closing)
	}()
	return a
}

// Accept returns the next connection whose handshake succeeded.
func (a *Acceptor) Accept() (net.Conn, error) {
	select {
	case c := <-a.conns:
		return c, nil
	case <-a.closing:
		return nil, net.ErrClosed
	case <-a.done:
		return nil, a.acceptErr
	}
}

// Addr is the listener's address.
func (a *Acceptor) Addr() net.Addr { return a.ln.Addr() }

// Close stops accepting, cuts the handshakes in progress, logs the pending
// refusal summaries and waits for its goroutines. It is safe to call more
// than once.
func (a *Acceptor) Close() error {
	var err error
	a.closeOnce.Do(func() {
		close(a.closing)
		err = a.ln.Close()
		a.mu.Lock()
		for e := a.pending.Front(); e != nil; e = e.Next() {
			p := e.Value.(*pendingConn)
			p.cut.Store(true)
			p.Close()
		}
		a.mu.Unlock()
		a.wg.Wait()
		a.refuse.flush()
	})
	return err
}

// Stats returns the acceptor's figures.
func (a *Acceptor) Stats() AcceptStats {
	a.mu.Lock()
	pending := a.pending.Len()
	a.mu.Unlock()
	return AcceptStats{Pending: pending, Refused: a.refuse.counts()}
}

func (a *Acceptor) acceptLoop() error {
	var backoff time.Duration
	for {
		raw, err := a.ln.Accept()
		if err != nil {
			select {
			case <-a.closing:
				return net.ErrClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does, rather than give up the port.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
				a.refuse.log.Error("accept failed; retrying", "err", err)
			} else {
				backoff = min(2*backoff, time.Second)
			}
			select {
			case <-time.After(backoff):
			case <-a.closing:
				return net.ErrClosed
			}
			continue
		}
		backoff = 0
		p := a.admit(raw)
		if p == nil {
			return net.ErrClosed
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.handshake(p)
		}()
	}
}

// admit records raw as pending, first making room if the pool or the
// source's share of it is full. It returns nil once Close has begun.
func (a *Acceptor) admit(raw net.Conn) *pendingConn {
	now := time.Now()
	p := &pendingConn{Conn: raw, source: sourceOf(raw.RemoteAddr()), handshakeBy: now.Add(a.limits.Handshake)}
	raw.SetReadDeadline(now.Add(a.limits.FirstByte))
	raw.SetWriteDeadline(p.handshakeBy)
	var shed []*pendingConn
	a.mu.Lock()
	select {
	case <-a.closing:
		// Close has already cut the pending handshakes; do not add one.
		a.mu.Unlock()
		raw.Close()
		return nil
	default:
	}
	if a.bySource[p.source] >= a.limits.MaxPendingPerSource {
		shed = append(shed, a.evictLocked(p.source))
	}
	if a.pending.Len() >= a.limits.MaxPending {
		shed = append(shed, a.evictLocked(""))
	}
	p.elem = a.pending.PushBack(p)
	a.bySource[p.source]++
	a.mu.Unlock()
	for _, v := range shed {
		if v != nil {
			v.Close()
		}
	}
	return p
}

// evictLocked removes and returns the oldest pending connection from source
// (any source if "") that has sent nothing yet, else the oldest one.
//
// "Sent nothing" asks the kernel, not only whether the handshake goroutine
// has read yet: under a flood that reconnects as fast as it is shed, the
// pool turns over in milliseconds, and a client whose ClientHello has
// arrived but not yet been read would otherwise be shed like the idle ones.
func (a *Acceptor) evictLocked(source string) *pendingConn {
	var oldest *pendingConn
	for e := a.pending.Front(); e != nil; e = e.Next() {
		p := e.Value.(*pendingConn)
		if source != "" && p.source != source {
			continue
		}
		if oldest == nil {
			oldest = p
		}
		if !p.started.Load() && !p.sent.Load() {
			if !hasUnreadData(p.Conn) {
				oldest = p
				break
			}
			p.sent.Store(true)
		}
	}
	if oldest != nil {
		oldest.shed.Store(true)
		a.removeLocked(oldest)
	}
	return oldest
}

func (a *Acceptor) removeLocked(p *pendingConn) {
	if p.elem == nil {
		return
	}
	a.pending.Remove(p.elem)
	p.elem = nil
	if a.bySource[p.source]--; a.bySource[p.source] <= 0 {
		delete(a.bySource, p.source)
	}
}

func (a *Acceptor) handshake(p *pendingConn) {
	conn := tls.Server(p, a.tls)
	err := conn.Handshake()
	a.mu.Lock()
	a.removeLocked(p)
	a.mu.Unlock()
	if err == nil && len(a.tls.NextProtos) > 0 && conn.ConnectionState().NegotiatedProtocol == "" {
		err = errNoProtocol
	}
	if err != nil {
		conn.Close()
		// A handshake cut by Close was not refused; one that failed on its
		// own just before Close cut it (the peer may already have its
		// refusal) was.
		if !p.cut.Load() || !errors.Is(err, net.ErrClosed) {
			a.refuse.record(p, err)
		}
		return
	}
	// From here on the connection belongs to whoever accepts it; it sets
	// its own deadlines.
	p.SetDeadline(time.Time{})
	select {
	case a.conns <- conn:
	case <-a.closing:
		conn.Close()
	}
}

var errNoProtocol = errors.New("client offered no ALPN protocol")

// pendingConn is an accepted connection during its handshake. It moves the
// read deadline from FirstByte to Handshake once the first byte arrives.
type pendingConn struct {
	net.Conn
	source      string
	handshakeBy time.Time
	// started is set once the handshake has read a byte (and moved the
	// read deadline); sent once eviction found bytes not yet read; shed
	// once the acceptor closed the connection to make room; cut once
	// Close did.
	started, sent, shed, cut atomic.Bool
	// elem is its place in Acceptor.pending, nil once removed (under
	// Acceptor.mu).
	elem *list.Element
}

func (c *pendingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	// Reads are serialised by tls.Conn, so the first byte is seen once.
	if n > 0 && !c.started.Load() {
		c.started.Store(true)
		c.Conn.SetReadDeadline(c.handshakeBy)
	}
	return n, err
}

// sourceOf is the key of the per-source limit: the IPv4 address, or the
// IPv6 /64 (one host commonly holds a whole /64).
func sourceOf(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	if ip4 := tcp.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return (&net.IPNet{IP: tcp.IP.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

func reasonOf(p *pendingConn, err error) string {
	var ke *KeyError
	var ne net.Error
	switch {
	case p.shed.Load():
		return RefusedShed
	case errors.As(err, &ke):
		return RefusedKey
	case errors.Is(err, errNoProtocol):
		return RefusedProtocol
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return RefusedTimeout
	default:
		return RefusedTLS
	}
}

// maxTrackedRefusers bounds the refusal log's memory: beyond it, further
// keys or sources share one "others" line per reason.
const maxTrackedRefusers = 1024

// refusalLog logs refused handshakes: the first per reason and key (the
// fingerprint the peer presented, else its source) at once, then one
// summary line per interval while refusals continue. It counts them all.
type refusalLog struct {
	log      *slog.Logger
	interval time.Duration
	refused  [len(refusalReasons)]atomic.Uint64 // by index in refusalReasons

	mu sync.Mutex
	// since holds the refusals logged or counted in the current interval,
	// with how many were not logged.
	since map[refuser]uint64
}

type refuser struct {
	reason string
	// kind names who: "fingerprint" (SHA256:...), "source" (192.0.2.1,
	// 2001:db8::/64) or "others" past maxTrackedRefusers.
	kind, who string
}

func newRefusalLog(log *slog.Logger, interval time.Duration) *refusalLog {
	return &refusalLog{log: log, interval: interval, since: map[refuser]uint64{}}
}

func (r *refusalLog) record(p *pendingConn, err error) {
	reason := reasonOf(p, err)
	for i, name := range refusalReasons {
		if name == reason {
			r.refused[i].Add(1)
		}
	}
	k := refuser{reason: reason, kind: "source", who: p.source}
	if ke := (*KeyError)(nil); errors.As(err, &ke) && ke.Fingerprint != "" {
		k.kind, k.who = "fingerprint", ke.Fingerprint
	}
	r.mu.Lock()
	suppressed, seen := r.since[k]
	if !seen && len(r.since) >= maxTrackedRefusers {
		k.kind, k.who = "others", "(too many to track)"
		suppressed, seen = r.since[k]
	}
	if seen {
		r.since[k] = suppressed + 1
	} else {
		r.since[k] = 0
	}
	r.mu.Unlock()
	if !seen {
		r.log.Warn("tls handshake refused", "reason", reason, "remote", p.RemoteAddr().String(), "err", err,
			"then", fmt.Sprintf("more like this are counted and summarised every %s", r.interval))
	}
}

// flush logs a summary for every refuser refused more than once in the
// interval and forgets those that were quiet, whose next refusal is then
// logged at once again.
func (r *refusalLog) flush() {
	type line struct {
		k refuser
		n uint64
	}
	var lines []line
	r.mu.Lock()
	for k, n := range r.since {
		if n == 0 {
			delete(r.since, k)
			continue
		}
		lines = append(lines, line{k, n})
		r.since[k] = 0
	}
	r.mu.Unlock()
	for _, l := range lines {
		r.log.Warn("tls handshakes refused", "reason", l.k.reason, l.k.kind, l.k.who, "count", l.n, "in", r.interval)
	}
}

// run flushes every interval until stop closes.
func (r *refusalLog) run(stop <-chan struct{}) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.flush()
		case <-stop:
			return
		}
	}
}

func (r *refusalLog) counts() map[string]uint64 {
	out := make(map[string]uint64, len(refusalReasons))
	for i, name := range refusalReasons {
		out[name] = r.refused[i].Load()
	}
	return out
}
