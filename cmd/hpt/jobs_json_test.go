package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
)

// The JSON of `hpt job status` and `hpt job list` (SPEC section 10) names
// statuses as it always has, whether the node is of this build (enums and
// names) or of one before the enums (names alone); so does the recap.
func TestJobJSONStatusNames(t *testing.T) {
	info := func(withEnums bool) *rpc.JobInfo {
		j := &rpc.JobInfo{JobId: "j1", Name: "site.toml", Status: "failed", SubmittedBy: "user:admin", SubmittedUnixNano: 1,
			BatchSize: 2, MaxFailures: -1, Counts: map[string]uint32{"changed": 1, "unreachable": 1},
			Targets: []*rpc.JobTargetInfo{{Target: "web-1", Status: "changed", Node: "n1"}, {Target: "web-2", Status: "unreachable", Error: "no answer"}}}
		if withEnums {
			j.JobStatus = events.JobStatus_JOB_STATUS_FAILED
			j.Targets[0].TargetStatus = events.TargetStatus_TARGET_STATUS_CHANGED
			j.Targets[1].TargetStatus = events.TargetStatus_TARGET_STATUS_UNREACHABLE
		}
		return j
	}
	const want = `{"job_id":"j1","name":"site.toml","status":"failed","submitted_by":"user:admin","submitted":"1970-01-01T00:00:00.000000001Z",` +
		`"dry_run":false,"batch_size":2,"max_failures":-1,"targets":[` +
		`{"target":"web-1","status":"changed","node":"n1","blocks":[]},` +
		`{"target":"web-2","status":"unreachable","error":"no answer","blocks":[]}],"totals":{"changed":1,"unreachable":1}}`
	// The recap prints the same names whether the node sent enums or only
	// the names a build before the enums sends.
	const wantRecap = "\nRECAP job j1: failed\n" +
		"blocks per target:\n" +
		"TARGET  STATUS       OK  CHANGED  FAILED  SKIPPED  NODE  ERROR\n" +
		"web-1   changed      0   0        0       0        n1    -\n" +
		"web-2   unreachable  0   0        0       0        -     no answer\n" +
		"\ntargets: ok=0 changed=1 failed=0 unreachable=1 refused=0 skipped=0 cancelled=0\n" +
		"each target's changes, output and errors: hpt job logs j1\n"
	for _, withEnums := range []bool{true, false} {
		b, err := json.Marshal(toJobJSON(info(withEnums)))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("enums %v: job JSON\n%s\nwant\n%s", withEnums, b, want)
		}
		var out bytes.Buffer
		(&app{stdout: &out}).printRecap(info(withEnums))
		if out.String() != wantRecap {
			t.Errorf("enums %v: recap\n%s\nwant\n%s", withEnums, out.String(), wantRecap)
		}
		if err := jobExit(info(withEnums)); err == nil {
			t.Errorf("enums %v: a job with an unreachable target exits 0", withEnums)
		}
	}
}
