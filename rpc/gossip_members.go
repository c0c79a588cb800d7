package rpc

import (
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/memberlist"
)

// GossipMember is a copy of what memberlist knows of one member.
type GossipMember struct {
	Name string
	// Addr and Port are the member's gossip address.
	Addr net.IP
	Port uint16
	// Meta is the member's metadata, decoded; a member whose metadata
	// does not decode has the zero GossipMeta.
	Meta  GossipMeta
	State memberlist.NodeStateType
}

// GossipMembers is a memberlist.EventDelegate that keeps a copy of the live
// members. memberlist's own Members returns pointers into its table, which
// gossip updates under a lock the caller cannot take, so reading their
// fields races with it; events are delivered under that lock, so copying
// there is safe.
type GossipMembers struct {
	// Keep, if set, decides which members are kept (an agent needs only the
	// servers, not the whole fleet).
	Keep func(GossipMember) bool
	// Changed, if set, is called after each event; it must not block.
	Changed func()

	mu      sync.Mutex
	members map[string]GossipMember
}

var _ memberlist.EventDelegate = (*GossipMembers)(nil)

func (g *GossipMembers) NotifyJoin(n *memberlist.Node)   { g.update(n, true) }
func (g *GossipMembers) NotifyUpdate(n *memberlist.Node) { g.update(n, true) }

// NotifyLeave forgets a member that died or left: memberlist's Members
// does not list those either, and one that comes back joins again.
func (g *GossipMembers) NotifyLeave(n *memberlist.Node) { g.update(n, false) }

func (g *GossipMembers) update(n *memberlist.Node, alive bool) {
	m := GossipMember{Name: n.Name, Addr: slices.Clone(n.Addr), Port: n.Port, State: n.State}
	m.Meta, _ = DecodeGossipMeta(n.Meta)
	keep := alive && (g.Keep == nil || g.Keep(m))
	g.mu.Lock()
	if g.members == nil {
		g.members = map[string]GossipMember{}
	}
	if keep {
		g.members[n.Name] = m
	} else {
		delete(g.members, n.Name)
	}
	g.mu.Unlock()
	if g.Changed != nil {
		g.Changed()
	}
}

// Members returns the members kept, by name.
func (g *GossipMembers) Members() []GossipMember {
	g.mu.Lock()
	out := make([]GossipMember, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, m)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b GossipMember) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Servers returns the API addresses of the alive servers, by member name.
func (g *GossipMembers) Servers() map[string]string {
	out := map[string]string{}
	for _, m := range g.Members() {
		if m.State == memberlist.StateAlive && m.Meta.Role == RoleServer && m.Meta.Addr != "" {
			out[m.Name] = m.Meta.Addr
		}
	}
	return out
}
