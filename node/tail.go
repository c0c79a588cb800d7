package node

import (
	"crypto/ed25519"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// tailLoop follows the events this node applies and reacts to the ones
// that concern its agent streams: a revoked key's stream is closed (within
// a second of the commit: applying is all it waits for), a cancelled job's
// runs are cancelled, and the scheduler is woken for job and connection
// changes.
func (n *Node) tailLoop() {
	defer n.wg.Done()
	next := events.IndexOf(n.fsm.AppliedIndex()+1, 0)
	react := func(ev *events.Event) error {
		n.react(ev)
		return nil
	}
	for {
		// Taken before the follow so that, after an error, the retry
		// waits for an apply it cannot have missed.
		changed := n.fsm.Changed()
		var err error
		next, err = followEvents(n.ctx, n.fsm, next, true, concernsAgents, react)
		if n.ctx.Err() != nil {
			return
		}
		n.log.Warn("follow events", "err", err)
		select {
		case <-n.ctx.Done():
			return
		case <-changed:
		}
	}
}

// concernsAgents tells the events tailLoop reacts to.
func concernsAgents(ev *events.Event) bool {
	switch ev.GetType() {
	case events.Type_TYPE_TARGET_KEY_REVOKED, events.Type_TYPE_JOB_CANCELLED,
		events.Type_TYPE_JOB_SUBMITTED, events.Type_TYPE_JOB_TARGET_FINISHED,
		events.Type_TYPE_JOB_TARGET_DISPATCHED, events.Type_TYPE_JOB_BATCH_STARTED,
		events.Type_TYPE_TARGET_CONNECTED:
		return true
	}
	return concernsConnectors(ev.GetType())
}

func (n *Node) react(ev *events.Event) {
	if concernsConnectors(ev.GetType()) {
		n.nudgeSSHAccess()
		if ev.GetType() != events.Type_TYPE_TARGET_KEY_REVOKED {
			return // nothing for the scheduler
		}
	}
	p, err := ev.DecodePayload()
	if err != nil {
		return
	}
	switch p := p.(type) {
	case *events.TargetKeyRevoked:
		// Cut every connection of the key, not only its stream: the
		// handshake refuses it from now on, and nothing it opened before
		// stays open.
		// The cluster key is never a target's (Keys.Register refuses it),
		// but a log from before that check may hold it as one: cutting
		// its connections would cut Raft and forwarding between nodes.
		if tk, err := n.fsm.TargetKey(p.GetTarget()); err == nil && !n.clusterPub.Equal(ed25519.PublicKey(tk.GetPublicKey())) {
			if cut := n.mux.closeKey(pinned.Fingerprint(tk.GetPublicKey())); cut > 0 {
				n.log.Info("cut connections of revoked target", "target", p.GetTarget(), "connections", cut)
			}
		}
		n.nudgeScheduler()
	case *events.JobCancelled:
		n.cancelRuns(p.GetJobId())
		n.nudgeScheduler()
	default:
		n.nudgeScheduler()
	}
}

// cancelRuns tells agents on this node that run the job to stop.
func (n *Node) cancelRuns(jobID string) {
	targets, err := n.fsm.JobTargets(jobID)
	if err != nil {
		return
	}
	for _, t := range targets {
		if t.GetStatus().InFlight() {
			n.fleet.push(t.GetTarget(), &rpc.NodeMessage{Msg: &rpc.NodeMessage_Cancel{Cancel: &rpc.JobCancel{JobId: jobID}}})
		}
	}
}
