package node

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/hpt-dev/hpt/internal/logs"
	"github.com/hpt-dev/hpt/rpc"
)

func (n *Node) startGossip() error {
	host, portStr, err := net.SplitHostPort(n.cfg.GossipListen)
	if err != nil {
		return fmt.Errorf("gossip address %q: %w", n.cfg.GossipListen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("gossip port %q: %w", portStr, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	meta, err := rpc.GossipMeta{Role: rpc.RoleServer, Addr: n.addr}.Encode()
	if err != nil {
		return err
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.cfg.Name
	mc.BindAddr = host
	mc.BindPort = port
	if n.cfg.GossipAdvertise != "" {
		ah, ap, err := net.SplitHostPort(n.cfg.GossipAdvertise)
		if err != nil {
			return fmt.Errorf("gossip advertise address %q: %w", n.cfg.GossipAdvertise, err)
		}
		mc.AdvertiseAddr = ah
		if mc.AdvertisePort, err = strconv.Atoi(ap); err != nil {
			return fmt.Errorf("gossip advertise port %q: %w", ap, err)
		}
	} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		mc.AdvertiseAddr = firstHostIP().String()
	}
	mc.SecretKey = n.cfg.GossipKey
	mc.Delegate = &gossipDelegate{meta: meta}
	n.members = &rpc.GossipMembers{Changed: n.nudgeReconcile}
	mc.Events = n.members
	mc.Logger = logs.Std(n.log, "gossip")
	n.gossip, err = memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start gossip on %s: %w", n.cfg.GossipListen, err)
	}
	if len(n.cfg.Join) > 0 {
		n.wg.Add(1)
		go n.joinLoop()
	}
	return nil
}

// GossipAddr is the advertised gossip address.
func (n *Node) GossipAddr() string {
	if n.gossip == nil {
		return ""
	}
	ln := n.gossip.LocalNode()
	return net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
}

// joinLoop joins the configured seeds, retrying with backoff until one
// answers: nodes of a new cluster start in any order.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	delay := 200 * time.Millisecond
	for {
		joined, err := n.gossip.Join(n.cfg.Join)
		if joined > 0 {
			n.log.Info("joined gossip", "contacted", joined)
			return
		}
		n.log.Warn("gossip join failed; retrying", "seeds", n.cfg.Join, "err", err, "in", delay)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// gossipServers returns the alive server members: name -> API address.
func (n *Node) gossipServers() map[string]string { return n.members.Servers() }

func (n *Node) nudgeReconcile() {
	select {
	case n.reconcileCh <- struct{}{}:
	default:
	}
}

type gossipDelegate struct{ meta []byte }

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return nil
	}
	return d.meta
}
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// sortedNames returns the keys of m in order.
func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
