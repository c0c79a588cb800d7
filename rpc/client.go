package rpc

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/rpc/pinned"
)

// ClientConfig says how to reach a cluster.
type ClientConfig struct {
	// Addrs of any nodes; calls fail over between them.
	Addrs []string
	// Token is the API token (sk_...).
	Token string
	// ClusterKey is the pinned cluster key fingerprint ("SHA256:...").
	ClusterKey string
	// Verify, if set, replaces pinning by ClusterKey (used by `hpt login`
	// to learn the key on first contact).
	Verify pinned.VerifyFunc
	// Cert, if set, is presented to the node (agents, nodes).
	Cert *tls.Certificate
	// Consistent asks every read for leader-confirmed state.
	Consistent bool
	// MaxMessageSize bounds messages; default 8 MiB.
	MaxMessageSize int
	// DialTimeout bounds how long a call waits for a connection to any
	// node, and a unary call's retries; default 15 s (DefaultDialTimeout),
	// or the call's own deadline.
	DialTimeout time.Duration
	// Waiting, if set, is called once a call has waited WaitingAfter for
	// a connection without getting one, with the addresses being tried:
	// the CLI says on stderr that it is still trying rather than stay
	// silent until DialTimeout.
	Waiting func(addrs []string, waited time.Duration)
}

// DefaultDialTimeout is ClientConfig.DialTimeout's default.
const DefaultDialTimeout = 15 * time.Second

// WaitingAfter is how long a call waits for a connection before
// ClientConfig.Waiting is told.
const WaitingAfter = 2 * time.Second

// probeTimeout bounds each address's probe when no node could be reached:
// long enough for a TLS handshake across a slow link, short enough to
// add little to a failure that has already waited DialTimeout.
const probeTimeout = 2 * time.Second

// Client is a connection to a cluster, with the API's service clients. It
// adds to every call: the bearer token; a request id that stays the same
// across the call's retries (writes are deduplicated by it); the highest
// index this client has written, which nodes honour on reads only
// (read-your-writes on any node), and, if configured, consistency.
type Client struct {
	conn *grpc.ClientConn
	cfg  ClientConfig
	// lastIndex is the highest write index this client has seen.
	lastIndex atomic.Uint64
	// keyRefused is whether the last handshake found a node key the pin
	// refuses: that does not heal by waiting, so calls are not retried.
	keyRefused atomic.Bool
	// pin checks a node's key, as the connection's handshakes do; probes
	// use it without touching keyRefused.
	pin pinned.VerifyFunc

	Cluster    ClusterClient
	Events     EventsClient
	Identities IdentitiesClient
	Tokens     TokensClient
	Grants     GrantsClient
	Keys       KeysClient
	Bench      BenchClient
	Jobs       JobsClient
	Targets    TargetsClient
	// Destinations is the access engine's endpoints (SPEC section 11).
	Destinations DestinationsClient
	// Credentials issues and lists short-lived credentials (SPEC section 11).
	Credentials CredentialsClient
}

// noLeaderAnswers bounds the "no leader" answers a call takes, per
// address, before it gives up (see unary).
const noLeaderAnswers = 3

// Metadata keys (see api.proto).
const (
	mdRequestID  = "hpt-request-id"
	mdMinIndex   = "hpt-min-index"
	mdConsistent = "hpt-consistent"
)

// Dial connects lazily; the first call dials.
func Dial(cfg ClientConfig) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("no node address: set --addr or HPT_ADDR")
	}
	for _, a := range cfg.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("node address %q: want host:port", a)
		}
	}
	verify := cfg.Verify
	if verify == nil {
		if cfg.ClusterKey == "" {
			return nil, errors.New("no cluster key pinned: run `hpt login ADDR`, or set --cluster-key or HPT_CLUSTER_KEY")
		}
		fp, err := pinned.ParseFingerprint(cfg.ClusterKey)
		if err != nil {
			return nil, err
		}
		verify = pinned.Pin("cluster", fp)
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 8 << 20
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	r := manual.NewBuilderWithScheme("hpt")
	var addrs []resolver.Address
	for _, a := range cfg.Addrs {
		addrs = append(addrs, resolver.Address{Addr: a})
	}
	r.InitialState(resolver.State{Addresses: addrs})
	pin := verify
	c := &Client{cfg: cfg, pin: pin}
	verify = func(pub ed25519.PublicKey, proto string) error {
		err := pin(pub, proto)
		c.keyRefused.Store(err != nil)
		return err
	}
	opts := []grpc.DialOption{
		grpc.WithResolvers(r),
		// Spread calls over every node given, and route around one that is
		// down: any node can serve any call.
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(pinned.ClientCredentials(pinned.ClientConfig(cfg.Cert, verify, pinned.ProtoGRPC))),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxMessageSize), grpc.MaxCallSendMsgSize(cfg.MaxMessageSize)),
		grpc.WithChainUnaryInterceptor(c.unary),
		grpc.WithChainStreamInterceptor(c.stream),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	opts = append(opts, FlowDialOptions()...)
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(cfg.Token)))
	}
	conn, err := grpc.NewClient(r.Scheme()+":///cluster", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c.conn = conn
	c.Cluster = NewClusterClient(conn)
	c.Events = NewEventsClient(conn)
	c.Identities = NewIdentitiesClient(conn)
	c.Tokens = NewTokensClient(conn)
	c.Grants = NewGrantsClient(conn)
	c.Keys = NewKeysClient(conn)
	c.Bench = NewBenchClient(conn)
	c.Jobs = NewJobsClient(conn)
	c.Targets = NewTargetsClient(conn)
	c.Destinations = NewDestinationsClient(conn)
	c.Credentials = NewCredentialsClient(conn)
	return c, nil
}

// Conn is the underlying connection, for services outside this file.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// LastIndex is the highest index this client has written.
func (c *Client) LastIndex() uint64 { return c.lastIndex.Load() }

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

var _ credentials.PerRPCCredentials = bearer("")

// NewRequestID returns a new request id: 32 hex digits, the first 12 the
// Unix time in milliseconds, the rest random. Ids that grow with time keep
// the state's request-id index (which every write looks up) close to
// append-only: a new id sorts after those stored, so the lookup ends at the
// tail of each level instead of probing a table in each, and the tables
// Pebble flushes do not overlap older ones, so compacting them moves more
// than it rewrites (docs/benchmarks.md). Any string of up to 128 bytes is
// a valid request id; this is the default of hpt's own clients and nodes.
func NewRequestID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}

// WithRequestID fixes the request id of the writes made with ctx, so that a
// caller's own retries are deduplicated too.
func WithRequestID(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, mdRequestID, id)
}

func (c *Client) outgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	var kv []string
	if len(md.Get(mdRequestID)) == 0 {
		kv = append(kv, mdRequestID, NewRequestID())
	}
	if idx := c.lastIndex.Load(); idx > 0 && len(md.Get(mdMinIndex)) == 0 {
		kv = append(kv, mdMinIndex, strconv.FormatUint(idx, 10))
	}
	if c.cfg.Consistent {
		kv = append(kv, mdConsistent, "1")
	}
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func (c *Client) observe(reply any) {
	var idx uint64
	switch r := reply.(type) {
	case *WriteResponse:
		idx = r.GetIndex()
	case *CreateTokenResponse:
		idx = r.GetIndex()
	case *SubmitJobResponse:
		// So that following the job just submitted finds it on a node
		// that has not applied it yet.
		idx = r.GetIndex()
	case *SnapshotRestoreResponse:
		idx = r.GetIndex()
	}
	for {
		cur := c.lastIndex.Load()
		if idx <= cur || c.lastIndex.CompareAndSwap(cur, idx) {
			return
		}
	}
}

// unary waits for a connection (see connected), then retries calls that
// failed because the node could not serve them right now (a leader
// election, a node going away or behind), with the same request id, for
// up to DialTimeout or the caller's deadline; not when the
// node's key was refused, which waiting does not change. Each attempt goes
// to the next node (round robin), so a node that answers Unavailable is a
// failover, not a wait. A node that answers "no leader" has already waited
// out an election, so the call fails instead of retrying into the deadline
// once every address has said so, or, when some cannot be reached, after
// noLeaderAnswers times as many such answers as there are addresses (time
// for the connections to the others to come up).
func (c *Client) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx = c.outgoing(ctx)
	deadline := c.deadline(ctx)
	backoff := 50 * time.Millisecond
	var answered peer.Peer
	opts = append(opts, grpc.Peer(&answered))
	noLeader, noLeaderFrom := 0, map[string]bool{}
	for {
		if err := c.connected(ctx, deadline); err != nil {
			return err
		}
		answered = peer.Peer{}
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil {
			c.observe(reply)
			return nil
		}
		if status.Code(err) != codes.Unavailable || c.keyRefused.Load() || time.Now().Add(backoff).After(deadline) {
			return err
		}
		if IsNoLeader(err) {
			noLeader++
			if answered.Addr != nil {
				noLeaderFrom[answered.Addr.String()] = true
			}
			if len(noLeaderFrom) >= len(c.cfg.Addrs) || noLeader >= noLeaderAnswers*len(c.cfg.Addrs) {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// stream waits for a connection as unary does, then opens the stream; a
// stream is not retried (its caller knows what it has already received).
func (c *Client) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if err := c.connected(ctx, c.deadline(ctx)); err != nil {
		return nil, err
	}
	return streamer(c.outgoing(ctx), desc, cc, method, opts...)
}

// deadline is when a call made with ctx stops waiting for a connection.
func (c *Client) deadline(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(c.cfg.DialTimeout)
}

// connected waits until the connection to some node is ready, telling
// cfg.Waiting once it has waited WaitingAfter. Without this wait, a call
// with no deadline of its own would block for as long as gRPC's
// handshake timeout (20 s) on an address that accepts TCP but never
// answers TLS, and fail naming only one address. When deadline passes
// with no node ready, it returns an *UnreachableError naming every
// address and what is wrong there. A refused node key ends the wait at
// once: the call then fails with the handshake's reason, which waiting
// does not change.
func (c *Client) connected(ctx context.Context, deadline time.Time) error {
	st := c.conn.GetState()
	if st == connectivity.Ready {
		return nil
	}
	c.conn.Connect()
	wait, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	start := time.Now()
	told := c.cfg.Waiting == nil
	for st = c.conn.GetState(); st != connectivity.Ready; st = c.conn.GetState() {
		if c.keyRefused.Load() || st == connectivity.Shutdown {
			return nil
		}
		var changed bool
		if told {
			changed = c.conn.WaitForStateChange(wait, st)
		} else {
			step, stop := context.WithDeadline(wait, start.Add(WaitingAfter))
			changed = c.conn.WaitForStateChange(step, st)
			stop()
		}
		if changed {
			continue
		}
		if wait.Err() == nil {
			told = true
			c.cfg.Waiting(c.cfg.Addrs, time.Since(start))
			continue
		}
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		return c.unreachable(ctx, time.Since(start))
	}
	return nil
}

// UnreachableError is the error of a call that found no node ready to
// answer it within its time: every address, with what is wrong there.
// Its gRPC code is Unavailable.
type UnreachableError struct {
	Waited time.Duration
	Addrs  []AddrError
}

// AddrError is what a probe of one address found.
type AddrError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no node reachable after %s:", e.Waited.Round(100*time.Millisecond))
	for _, a := range e.Addrs {
		fmt.Fprintf(&b, "\n  %s: %v", a.Addr, a.Err)
	}
	return b.String()
}

// GRPCStatus makes status.Code(err) Unavailable, as a failed call's is.
func (e *UnreachableError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

// unreachable probes every address at once, each for up to probeTimeout,
// because gRPC keeps no error per address.
func (c *Client) unreachable(ctx context.Context, waited time.Duration) error {
	e := &UnreachableError{Waited: waited, Addrs: make([]AddrError, len(c.cfg.Addrs))}
	done := make(chan struct{})
	for i, addr := range c.cfg.Addrs {
		go func() {
			defer func() { done <- struct{}{} }()
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			e.Addrs[i] = AddrError{Addr: addr, Err: c.probe(pctx, addr)}
		}()
	}
	for range c.cfg.Addrs {
		<-done
	}
	return e
}

// probe dials addr and shakes hands as the connection would, and says
// which step failed. A probe that succeeds means the node became
// reachable just now.
func (c *Client) probe(ctx context.Context, addr string) error {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err // without "dial tcp ADDR:", which the line names
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no TCP connection within %s", probeTimeout)
		}
		return err
	}
	defer raw.Close()
	conn := tls.Client(raw, pinned.ClientConfig(c.cfg.Cert, c.pin, pinned.ProtoGRPC))
	if err := conn.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("accepts TCP but no TLS handshake within %s (is it an hpt node's API port?)", probeTimeout)
		}
		return fmt.Errorf("TLS handshake: %w", err)
	}
	return errors.New("reachable now, but not in time for the call")
}

// FetchClusterKey connects to addr without pinning and returns the key the
// node presents, for `hpt login` to show before trusting it (as ssh does).
func FetchClusterKey(ctx context.Context, addr string) (ed25519.PublicKey, error) {
	var seen ed25519.PublicKey
	cfg := pinned.ClientConfig(nil, func(pub ed25519.PublicKey, _ string) error {
		seen = pub
		return nil
	}, pinned.ProtoGRPC)
	d := &tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	conn.Close()
	if seen == nil {
		return nil, fmt.Errorf("%s presented no key", addr)
	}
	return seen, nil
}

// SplitAddrs splits a comma-separated address list, adding the default port
// where none is given.
func SplitAddrs(s string, defaultPort int) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, strconv.Itoa(defaultPort))
		}
		out = append(out, a)
	}
	return out
}
