package rpc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/hpt-dev/hpt/internal/logs"
)

// GossipConfig is the memberlist set-up that nodes and agents share.
type GossipConfig struct {
	// Name is the member's name, unique in the cluster.
	Name string
	// Listen is the UDP and TCP address; an empty host binds every
	// interface and port 0 picks a free port.
	Listen string
	// Advertise, if set, is the host:port other members reach this one
	// at; port 0 there means the bound port. Default: the bound address,
	// or with every interface bound, a private address of this host
	// (memberlist's choice).
	Advertise string
	// Key is the 32-byte gossip encryption key.
	Key []byte
	// Meta is announced to the other members.
	Meta GossipMeta
	// Events, if set, hears of members joining, leaving and updating.
	Events memberlist.EventDelegate
	// Logger receives memberlist's lines; Quiet (may be nil) demotes them
	// once the owner stops (logs.Quiet).
	Logger *slog.Logger
	Quiet  *logs.Quiet
}

// StartGossip starts a memberlist member. The caller owns it: Leave and
// Shutdown stop it.
func StartGossip(cfg GossipConfig) (*memberlist.Memberlist, error) {
	host, port, err := splitPort("gossip address", cfg.Listen)
	if err != nil {
		return nil, err
	}
	if host == "" {
		host = "0.0.0.0"
	}
	meta, err := cfg.Meta.Encode()
	if err != nil {
		return nil, err
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = host
	mc.BindPort = port
	// DefaultLANConfig advertises port 7946 whatever the bind port, once
	// an address is given: advertise the bound port unless told otherwise.
	mc.AdvertisePort = port
	if cfg.Advertise != "" {
		ah, ap, err := splitPort("gossip advertise address", cfg.Advertise)
		if err != nil {
			return nil, err
		}
		mc.AdvertiseAddr = ah
		if ap != 0 {
			mc.AdvertisePort = ap
		}
	}
	mc.SecretKey = cfg.Key
	mc.Delegate = staticMeta(meta)
	if cfg.Events != nil {
		mc.Events = cfg.Events
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mc.Logger = logs.Std(cfg.Logger, "gossip", cfg.Quiet)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Listen, err)
	}
	return ml, nil
}

func splitPort(field, addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %w", field, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s %q: bad port %q", field, addr, p)
	}
	return host, port, nil
}

// JoinGossip joins ml to the cluster through seeds, retrying with backoff
// (200ms, doubling to 10s) until one answers or ctx ends: members of a new
// cluster start in any order. It blocks; callers run it on a goroutine
// they wait for.
func JoinGossip(ctx context.Context, ml *memberlist.Memberlist, seeds []string, log *slog.Logger) {
	delay := 200 * time.Millisecond
	for ctx.Err() == nil {
		joined, err := ml.Join(seeds)
		if joined > 0 {
			log.Info("joined gossip", "contacted", joined)
			return
		}
		log.Warn("gossip join failed; retrying", "seeds", seeds, "err", err, "in", delay)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// staticMeta is a memberlist delegate that only announces metadata.
type staticMeta []byte

func (m staticMeta) NodeMeta(limit int) []byte {
	if len(m) > limit {
		return nil
	}
	return m
}
func (staticMeta) NotifyMsg([]byte)                {}
func (staticMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (staticMeta) LocalState(bool) []byte          { return nil }
func (staticMeta) MergeRemoteState([]byte, bool)   {}
