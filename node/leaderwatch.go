package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// patience is how long a call waits on this node, for a leader during an
// election or for this node to apply an index the call needs, before it
// answers Unavailable so that the client tries another node. Two election
// timeouts ride out a normal election and a healthy follower's apply lag;
// a node that is partitioned away, slow or out of disk is not worth
// waiting for longer while other nodes can serve. Never more than
// ApplyTimeout.
func (n *Node) patience() time.Duration {
	return min(2*n.cfg.Raft.ElectionTimeout, n.cfg.ApplyTimeout)
}

// leaderWatch holds since when a node has had no leader, in Unix
// nanoseconds; 0 while it has one.
type leaderWatch struct{ since atomic.Int64 }

// watchLeader keeps n.leaderGone up to date from raft's leader
// observations until the node stops.
func (n *Node) watchLeader() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	n.noteLeader()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-ch:
			// Read the leader again rather than trust the observation: an
			// observation dropped from a full channel then costs nothing.
			n.noteLeader()
		}
	}
}

func (n *Node) noteLeader() {
	if _, addr := n.Leader(); addr != "" {
		n.leaderGone.since.Store(0)
		return
	}
	n.leaderGone.since.CompareAndSwap(0, time.Now().UnixNano())
}

// leaderlessSince reports whether this node knows it has no leader, and
// since when: it is not the leader and knows none, or, as a follower, it
// has heard nothing from the leader it knows for longer than an election
// timeout (raft's LastContact), which is how a partition from the leader
// looks before raft starts an election of its own. A leader cut off from
// its quorum steps down after its lease, and is leaderless from then on.
func (n *Node) leaderlessSince() (time.Time, bool) {
	if n.IsLeader() {
		return time.Time{}, false
	}
	if _, addr := n.Leader(); addr == "" {
		if s := n.leaderGone.since.Load(); s != 0 {
			return time.Unix(0, s), true
		}
		// watchLeader has not seen it yet.
		return time.Now(), true
	}
	if lc := n.raft.LastContact(); !lc.IsZero() && time.Since(lc) > n.cfg.Raft.ElectionTimeout {
		return lc, true
	}
	return time.Time{}, false
}

func (n *Node) leaderless() bool {
	_, none := n.leaderlessSince()
	return none
}

// awaitLeader returns nil once this node leads or is in contact with a
// leader, waiting for an election to end until the node has been without
// a leader for patience. Then it gives up with a leaderlessError, which
// leaves the node as Unavailable "no leader" with rpc.ReasonNoLeader: the
// client takes that to another node, or to its caller once no node it
// knows has a leader. A node that has been without a leader for longer
// refuses at once, so that calls fail over from a partitioned node without
// waiting on it each time.
func (n *Node) awaitLeader(ctx context.Context) error {
	since, none := n.leaderlessSince()
	if !none {
		return nil
	}
	noLeader := &leaderlessError{fmt.Sprintf("node %s: %v (no contact with a leader; try another node)", n.cfg.Name, ErrNoLeader)}
	wait := time.Until(since.Add(n.patience()))
	if wait <= 0 {
		return noLeader
	}
	giveUp := time.NewTimer(wait)
	defer giveUp.Stop()
	poll := time.NewTicker(max(n.cfg.Raft.ElectionTimeout/20, time.Millisecond))
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrShutdown
		case <-giveUp.C:
			if !n.leaderless() {
				return nil
			}
			return noLeader
		case <-poll.C:
			if !n.leaderless() {
				return nil
			}
		}
	}
}
