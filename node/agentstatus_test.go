package node

import (
	"testing"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
)

// An agent of a build before the status enum (or its journal, resent after
// an upgrade) names the status; one of this build sends both. Each writes
// the same event; a status an agent may not report is a failure.
func TestAgentResultStatusOldAndNew(t *testing.T) {
	for _, tc := range []struct {
		result *rpc.JobResult
		want   events.TargetStatus
	}{
		{&rpc.JobResult{JobId: "j1", Status: "changed"}, events.TargetStatus_TARGET_STATUS_CHANGED},
		{&rpc.JobResult{JobId: "j1", Status: "changed", TargetStatus: events.TargetStatus_TARGET_STATUS_CHANGED}, events.TargetStatus_TARGET_STATUS_CHANGED},
		{&rpc.JobResult{JobId: "j1", Status: "ok"}, events.TargetStatus_TARGET_STATUS_OK},
		{&rpc.JobResult{JobId: "j1", TargetStatus: events.TargetStatus_TARGET_STATUS_OK}, events.TargetStatus_TARGET_STATUS_OK},
		{&rpc.JobResult{JobId: "j1", Status: "failed"}, events.TargetStatus_TARGET_STATUS_FAILED},
		{&rpc.JobResult{JobId: "j1", Status: "ok!"}, events.TargetStatus_TARGET_STATUS_FAILED},
		{&rpc.JobResult{JobId: "j1", Status: "skipped"}, events.TargetStatus_TARGET_STATUS_FAILED},
		{&rpc.JobResult{JobId: "j1", TargetStatus: events.TargetStatus_TARGET_STATUS_CANCELLED}, events.TargetStatus_TARGET_STATUS_FAILED},
		{&rpc.JobResult{JobId: "j1"}, events.TargetStatus_TARGET_STATUS_FAILED},
	} {
		ev, _, err := agentEvent("n1", "web-1", &rpc.AgentMessage{Msg: &rpc.AgentMessage_Result{Result: tc.result}})
		if err != nil {
			t.Fatal(err)
		}
		if got := ev.(*events.JobTargetFinished).GetTargetStatus(); got != tc.want {
			t.Errorf("%v writes %s, want %s", tc.result, got.Name(), tc.want.Name())
		}
	}
}

// A node answers with each status as an enum and by name, which is all a
// CLI of a build before the enums reads.
func TestJobInfoCarriesStatusNames(t *testing.T) {
	j := &fsm.Job{Id: "j1", Status: events.JobStatus_JOB_STATUS_STOPPED}
	jts := []*fsm.JobTarget{{JobId: "j1", Target: "web-1", Status: events.TargetStatus_TARGET_STATUS_UNREACHABLE}}
	info := jobInfo(j, jts, nil, false)
	if info.GetJobStatus() != events.JobStatus_JOB_STATUS_STOPPED || info.GetStatus() != "stopped" { //nolint:staticcheck // the name older CLIs read
		t.Fatalf("job status %s, name %q", info.GetJobStatus().Name(), info.GetStatus()) //nolint:staticcheck // as above
	}
	ti := info.GetTargets()[0]
	if ti.GetTargetStatus() != events.TargetStatus_TARGET_STATUS_UNREACHABLE || ti.GetStatus() != "unreachable" { //nolint:staticcheck // as above
		t.Fatalf("target status %s, name %q", ti.GetTargetStatus().Name(), ti.GetStatus()) //nolint:staticcheck // as above
	}
}
