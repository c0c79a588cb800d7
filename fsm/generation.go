package fsm

import "github.com/hpt-dev/hpt/events"

// AccessGeneration changes whenever an applied event may change what
// authorization reads (identities, groups, memberships, tokens, grants), and
// when a snapshot replaces the state. It changes before AppliedIndex
// reaches the event, so a cache of access state that is tagged with the
// generation it was read under, and dropped when the generation moves, is
// never staler than the applied index.
func (f *FSM) AccessGeneration() uint64 { return f.accessGen.Load() }

// leavesAccessAlone reports event types that never touch access state: the
// frequent ones. Anything else, including types added later, moves the
// generation, so forgetting to list a new type costs a cache miss, never a
// stale decision.
func leavesAccessAlone(t events.Type) bool {
	switch t {
	case events.Type_TYPE_BENCH_WRITE,
		events.Type_TYPE_JOB_SUBMITTED, events.Type_TYPE_JOB_BATCH_STARTED,
		events.Type_TYPE_JOB_TARGET_DISPATCHED, events.Type_TYPE_JOB_TARGET_FINISHED,
		events.Type_TYPE_JOB_FINISHED, events.Type_TYPE_JOB_CANCELLED,
		events.Type_TYPE_TARGET_CONNECTED, events.Type_TYPE_TARGET_DISCONNECTED,
		events.Type_TYPE_TARGET_KEY_REGISTERED, events.Type_TYPE_TARGET_KEY_REVOKED,
		events.Type_TYPE_NODE_JOINED, events.Type_TYPE_NODE_REMOVED,
		events.Type_TYPE_LEADER_ELECTED:
		return true
	}
	return false
}
