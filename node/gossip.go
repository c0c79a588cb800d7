package node

import (
	"net"
	"slices"
	"strconv"

	"github.com/hpt-dev/hpt/rpc"
)

func (n *Node) startGossip() error {
	advertise := n.cfg.GossipAdvertise
	if host, _, err := net.SplitHostPort(n.cfg.GossipListen); advertise == "" && err == nil {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			// As for the API address: this host's first non-loopback
			// address, on the bound port.
			advertise = net.JoinHostPort(firstHostIP().String(), "0")
		}
	}
	n.members = &rpc.GossipMembers{Changed: n.nudgeReconcile}
	var err error
	n.gossip, err = rpc.StartGossip(rpc.GossipConfig{
		Name:      n.cfg.Name,
		Listen:    n.cfg.GossipListen,
		Advertise: advertise,
		Key:       n.cfg.GossipKey,
		Meta:      rpc.GossipMeta{Role: rpc.RoleServer, Addr: n.addr},
		Events:    n.members,
		Logger:    n.log,
		Quiet:     &n.quiet,
	})
	if err != nil {
		return err
	}
	if len(n.cfg.Join) > 0 {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			rpc.JoinGossip(n.ctx, n.gossip, n.cfg.Join, n.log)
		}()
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

// gossipServers returns the alive server members: name -> API address.
func (n *Node) gossipServers() map[string]string { return n.members.Servers() }

func (n *Node) nudgeReconcile() {
	select {
	case n.reconcileCh <- struct{}{}:
	default:
	}
}

// sortedNames returns the keys of m in order.
func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
