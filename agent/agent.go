// Package agent is the target side of hpt (`hpt serve`): it holds the
// target's keystore, accepts direct provisioning from trusted clients on its
// own port, and runs the provisioning engine (agent/provision).
//
// Trust comes from the target keystore alone: a peer may provision this
// host only if its key is in the keystore with role client or cluster, and
// the agent presents its own key, which clients pin.
package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/hpt-dev/hpt/agent/provision"
	"github.com/hpt-dev/hpt/agent/sshaccess"
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/internal/logs"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// Default ports: direct provisioning (upstream hpt's) and gossip.
const (
	DefaultPort       = 6632
	DefaultGossipPort = 7402
)

// Config configures an Agent. Zero fields take the defaults given on them
// (DefaultConfig holds them all).
type Config struct {
	// Keystore is the target keystore file (from gen-target-keys).
	Keystore string
	// Listen is the direct provisioning address; port 0 picks a free port.
	// Default ":6632".
	Listen string
	// Listener, if set, is used instead of Listen (systemd socket
	// activation hands one over).
	Listener net.Listener
	// NoDirect turns the direct provisioning port off: the agent takes jobs
	// from the cluster only (many agents in one benchmark process).
	NoDirect bool
	// Labels describe the target to templates and, in cluster mode, to
	// target selection.
	Labels map[string]string
	// Logger defaults to discarding everything.
	Logger *slog.Logger
	// Provision is the template for every run's options (DryRun, Facts and
	// Vars are set per run); tests set Runner and system paths here.
	Provision provision.Options
	// MaxMessageSize bounds a received config with its files. Default 64 MiB.
	MaxMessageSize int

	// Cluster mode: the keystore must trust a cluster key and hold the
	// gossip key. Join lists gossip addresses (default: the keystore's
	// seeds); Servers, if set, are node API addresses dialled directly
	// without gossip (tests and benchmarks with many agents).
	Join    []string
	Servers []string
	// GossipListen is the agent's memberlist address. Default ":7402"; use
	// port 0 when several agents share a host.
	GossipListen string
	// Journal is the file recording which jobs ran here. Default: the
	// keystore's path with ".journal" appended.
	Journal string
	// SSHD, when set, makes this agent keep the host's sshd trusting the
	// cluster, as a destination's connector (agent/sshaccess; `hpt serve
	// --manage-sshd`): it reports sshd's host keys on every stream and
	// applies each SSHAccess a node sends. Nil (the default): an SSHAccess
	// is ignored, logged once, and nothing under /etc/ssh is touched.
	SSHD *sshaccess.Config
}

// DefaultConfig returns a Config with every default filled in; callers set
// Keystore, and for cluster mode Join or Servers.
func DefaultConfig() Config {
	return Config{
		Listen:         fmt.Sprintf(":%d", DefaultPort),
		GossipListen:   fmt.Sprintf(":%d", DefaultGossipPort),
		MaxMessageSize: provision.MaxBundleSize + 1<<20,
	}
}

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.GossipListen == "" {
		c.GossipListen = d.GossipListen
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = d.MaxMessageSize
	}
	if c.Journal == "" && c.Keystore != "" {
		c.Journal = c.Keystore + ".journal"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate rejects a config that cannot work, naming the field. Zero
// fields that have defaults are accepted.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Keystore == "" {
		add("keystore", "required")
	}
	addr := func(field, a string) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			add(field, "%q: %v", a, err)
		}
	}
	if c.Listen != "" && c.Listener == nil && !c.NoDirect {
		addr("listen address", c.Listen)
	}
	if c.GossipListen != "" {
		addr("gossip address", c.GossipListen)
	}
	for _, j := range c.Join {
		addr("join address", j)
	}
	for _, s := range c.Servers {
		addr("server address", s)
	}
	if c.MaxMessageSize < 0 {
		add("max message size", "%d: must not be negative", c.MaxMessageSize)
	}
	if err := events.CheckLabels("labels", c.Labels); err != nil {
		errs = append(errs, err)
	}
	if c.SSHD != nil {
		if err := c.SSHD.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Version is reported to nodes in the agent's hello.
const Version = "0.1.0"

// Agent is a running `hpt serve`.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	name    string
	pub     ed25519.PublicKey
	trusted map[string]keystore.Key // by fingerprint

	ln   net.Listener
	grpc *grpc.Server
	link *clusterLink

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// quiet is raised by Close: gossip's complaints are then debug.
	quiet logs.Quiet

	// runMu serializes provisioning runs: two configs applied to one host at
	// once would race on the same files and packages.
	runMu sync.Mutex

	// sshd applies SSH access state (nil: sshd is not managed here);
	// sshdIgnored logs once that a node sent some anyway.
	sshd        *sshdApplier
	sshdIgnored sync.Once
}

// ErrUntrusted is wrapped when a peer's key is not trusted by the keystore.
var ErrUntrusted = errors.New("key not trusted by this target's keystore")

// New loads the keystore and starts serving.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	cfg = cfg.withDefaults()
	a := &Agent{cfg: cfg, trusted: map[string]keystore.Key{}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	priv, cluster, err := a.loadKeystore()
	if err != nil {
		return nil, err
	}
	a.log = cfg.Logger.With("target", a.name)
	if cfg.SSHD != nil {
		sc := *cfg.SSHD
		if sc.Logger == nil {
			sc.Logger = a.log
		}
		m, err := sshaccess.New(sc)
		if err != nil {
			return nil, fmt.Errorf("agent config: %w", err)
		}
		a.sshd = newSSHDApplier(m, a.log)
	}
	cert, err := pinned.Certificate(priv)
	if err != nil {
		return nil, err
	}
	if !cfg.NoDirect {
		if err := a.serveDirect(cert); err != nil {
			return nil, err
		}
	}
	if a.sshd != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.sshd.run(a.ctx)
		}()
	}
	if len(cfg.Join) > 0 || len(cfg.Servers) > 0 || (cluster.key != nil && len(cluster.seeds) > 0) {
		if err := a.joinCluster(cert, cluster); err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
}

// serveDirect starts the direct provisioning port.
func (a *Agent) serveDirect(cert tls.Certificate) error {
	ln := a.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", a.cfg.Listen); err != nil {
			return fmt.Errorf("listen on %s: %w", a.cfg.Listen, err)
		}
	}
	tlsCfg := pinned.ServerConfig(cert, a.verifyClient, pinned.ProtoGRPC)
	// Handshakes happen in the acceptor, under the same limits as a node's
	// port, so that idle or refused connections cannot crowd out a client
	// and refusals are logged in summary; gRPC gets handshaken connections.
	a.ln = pinned.NewAcceptor(ln, pinned.AcceptConfig{TLS: tlsCfg, Log: a.log})
	a.grpc = grpc.NewServer(
		grpc.Creds(pinned.ServerCredentials(tlsCfg)),
		grpc.MaxRecvMsgSize(a.cfg.MaxMessageSize),
	)
	rpc.RegisterAgentServer(a.grpc, &directServer{a: a})
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.grpc.Serve(a.ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			a.log.Error("direct provisioning server stopped", "err", err)
		}
	}()
	a.log.Info("agent serving", "addr", a.ln.Addr().String(), "key", pinned.Fingerprint(a.pub))
	return nil
}

// clusterSettings is what a target keystore holds for cluster mode.
type clusterSettings struct {
	key       ed25519.PublicKey
	gossipKey []byte
	seeds     []string
}

// joinCluster starts gossip (unless Servers are given) and the stream to a
// node.
func (a *Agent) joinCluster(cert tls.Certificate, cs clusterSettings) error {
	if cs.key == nil {
		return fmt.Errorf("%s trusts no cluster key: it was not made by `hpt gen-target-keys` against a cluster", a.cfg.Keystore)
	}
	j, err := openJournal(a.cfg.Journal)
	if err != nil {
		return err
	}
	a.link = &clusterLink{a: a, cert: cert, clusterKey: cs.key, journal: j, running: map[string]context.CancelFunc{}}
	if len(a.cfg.Servers) == 0 {
		join := a.cfg.Join
		if len(join) == 0 {
			join = cs.seeds
		}
		if len(cs.gossipKey) == 0 {
			return fmt.Errorf("%s holds no gossip key", a.cfg.Keystore)
		}
		if err := a.link.startGossip(a.cfg.GossipListen, cs.gossipKey, join); err != nil {
			return err
		}
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.link.connectLoop(a.ctx)
	}()
	return nil
}

// Node returns the name of the node the agent's stream is attached to, or
// "" when it has none.
func (a *Agent) Node() string {
	if a.link == nil {
		return ""
	}
	a.link.nodeMu.Lock()
	defer a.link.nodeMu.Unlock()
	return a.link.node
}

// loadKeystore reads identity, name, trusted keys and cluster settings,
// then closes the file so that the CLI can use it while the agent runs.
func (a *Agent) loadKeystore() (ed25519.PrivateKey, clusterSettings, error) {
	var cs clusterSettings
	ks, err := keystore.Open(a.cfg.Keystore)
	if err != nil {
		return nil, cs, err
	}
	defer ks.Close()
	if ks.Kind() != keystore.KindTarget {
		return nil, cs, fmt.Errorf("%s is a %s keystore; `hpt serve` needs a target keystore from `hpt gen-target-keys`", a.cfg.Keystore, ks.Kind())
	}
	priv, err := ks.Identity()
	if err != nil {
		return nil, cs, err
	}
	a.pub = priv.Public().(ed25519.PublicKey)
	if a.name, err = ks.Name(); err != nil {
		return nil, cs, err
	}
	keys, err := ks.Keys()
	if err != nil {
		return nil, cs, err
	}
	for _, k := range keys {
		if k.Role == keystore.RoleClient || k.Role == keystore.RoleCluster {
			a.trusted[pinned.Fingerprint(k.Public)] = k
		}
		if k.Role == keystore.RoleCluster {
			cs.key = k.Public
		}
	}
	if len(a.trusted) == 0 {
		return nil, cs, fmt.Errorf("%s trusts no client or cluster key: nobody could provision this target", a.cfg.Keystore)
	}
	if cs.gossipKey, err = ks.GossipKey(); err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, cs, err
	}
	if cs.seeds, err = ks.Seeds(); err != nil {
		return nil, cs, err
	}
	return priv, cs, nil
}

// verifyClient admits only keys the keystore trusts for provisioning.
func (a *Agent) verifyClient(pub ed25519.PublicKey, _ string) error {
	if pub == nil {
		return &pinned.KeyError{Peer: "client"}
	}
	if _, ok := a.trusted[pinned.Fingerprint(pub)]; !ok {
		// Logged by the acceptor, which throttles it.
		return &pinned.KeyError{Peer: "client", Fingerprint: pinned.Fingerprint(pub)}
	}
	return nil
}

// Name is the target's name from its keystore.
func (a *Agent) Name() string { return a.name }

// Addr is the direct provisioning address ("" with NoDirect).
func (a *Agent) Addr() string {
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// GossipMembers is the number of alive members this agent's gossip sees
// (0 without gossip).
func (a *Agent) GossipMembers() int {
	if a.link == nil || a.link.gossip == nil {
		return 0
	}
	return a.link.gossip.NumMembers()
}

// PublicKey is the target's key.
func (a *Agent) PublicKey() ed25519.PublicKey { return a.pub }

// Close leaves the cluster, stops serving and waits for running calls and
// jobs to end.
func (a *Agent) Close() error {
	a.quiet.Raise()
	a.cancel()
	if a.link != nil && a.link.gossip != nil {
		a.link.gossip.Leave(time.Second)
		a.link.gossip.Shutdown()
	}
	if a.grpc != nil {
		a.grpc.GracefulStop()
	}
	a.wg.Wait()
	if a.link != nil {
		return a.link.journal.close()
	}
	return nil
}

// run applies one bundle on this host, one run at a time.
func (a *Agent) run(ctx context.Context, b *provision.Bundle, dryRun bool, vars map[string]string, onBlock func(provision.BlockResult)) (*provision.Report, error) {
	cfg, err := provision.Parse(b)
	if err != nil {
		return nil, err
	}
	a.runMu.Lock()
	defer a.runMu.Unlock()
	opts := a.cfg.Provision
	opts.DryRun = dryRun
	opts.Facts = provision.Facts{Name: a.name, Labels: a.cfg.Labels}
	opts.Vars = vars
	opts.OnResult = onBlock
	return provision.Apply(ctx, cfg, opts)
}

// BlockToEvent converts an engine result to its wire form.
func BlockToEvent(b provision.BlockResult) *events.BlockResult {
	out := &events.BlockResult{Kind: b.Kind, Name: b.Name, Outcome: string(b.Outcome), Output: b.Output, Error: b.Error, DurationMs: b.DurationMS}
	for _, c := range b.Changes {
		out.Changes = append(out.Changes, &events.Change{Field: c.Field, Old: c.Old, New: c.New, Diff: c.Diff})
	}
	return out
}

// BlockFromEvent converts a wire result back to the engine's type.
func BlockFromEvent(e *events.BlockResult) provision.BlockResult {
	out := provision.BlockResult{Kind: e.GetKind(), Name: e.GetName(), Outcome: provision.Outcome(e.GetOutcome()), Output: e.GetOutput(), Error: e.GetError(), DurationMS: e.GetDurationMs(), Changes: []provision.Change{}}
	for _, c := range e.GetChanges() {
		out.Changes = append(out.Changes, provision.Change{Field: c.GetField(), Old: c.GetOld(), New: c.GetNew(), Diff: c.GetDiff()})
	}
	return out
}
