package node

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
)

const (
	// grantReapPeriod is how often the leader looks for expired grants.
	// An expired grant allows nothing from its expiry on, on every node
	// (authorization reads the node's clock); removing it is bookkeeping
	// that ends its credentials and shows in the log, so a second is soon
	// enough.
	grantReapPeriod = time.Second
	// grantReapBatch bounds the removals one pass proposes; the rest wait
	// for the next pass.
	grantReapBatch = 64
)

// runGrantReaper removes expired grants until ctx ends (leadership lost or
// shutdown). It runs on the leader only, started and stopped with the
// leadership by leaderLoop.
func (n *Node) runGrantReaper(ctx context.Context) {
	clock := n.cfg.Clock
	if clock == nil {
		clock = realClock{}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-clock.After(grantReapPeriod):
		}
		// Expired by the wall clock, not clock.Now: the removal carries the
		// proposer's wall-clock time (proposeAs), and the state refuses a
		// removal whose time is before the expiry. A test clock that runs
		// ahead would only propose removals that are refused.
		n.reapExpiredGrants(ctx, time.Now())
	}
}

// reapExpiredGrants proposes grant_removed{reason: expired} for up to
// grantReapBatch grants whose expiry is at or before now. A removal that
// another leader already made (not found) or that the state refuses
// because the grant was extended meanwhile (conflict) is no failure, and
// the fixed request id of each (grant, expiry) makes two leaders' removals
// of the same grant one event.
func (n *Node) reapExpiredGrants(ctx context.Context, now time.Time) {
	grants, err := n.fsm.ExpiredGrants(now, grantReapBatch)
	if err != nil {
		n.log.Warn("read expired grants", "err", err)
		return
	}
	for _, g := range grants {
		if ctx.Err() != nil {
			return
		}
		_, err := n.proposeTolerant(ctx, n.nodeActor(), grantExpiryRequestID(g), &events.GrantRemoved{
			Subject: g.GetSubject(), Privilege: g.GetPrivilege(), Resource: g.GetResource(), Reason: events.GrantExpired,
		})
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("remove expired grant", "subject", g.GetSubject(), "privilege", g.GetPrivilege(), "resource", g.GetResource(), "err", err)
			}
			return
		}
		n.log.Info("removed expired grant", "subject", g.GetSubject(), "privilege", g.GetPrivilege(), "resource", g.GetResource())
	}
}

// grantExpiryRequestID names the removal of g at its current expiry.
func grantExpiryRequestID(g *fsm.Grant) string {
	h := sha256.New()
	for _, s := range []string{g.GetSubject(), g.GetPrivilege(), g.GetResource()} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(g.GetExpiresUnixNano())))
	return "grant-expired-" + hex.EncodeToString(h.Sum(nil)[:16])
}
