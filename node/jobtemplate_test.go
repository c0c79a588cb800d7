package node_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// The optional-label idiom the docs recommend renders on every target, with
// the label or without it; a plain reference to a var nobody set is refused
// at submission, naming the var, the block, the line and the targets, and
// nothing is submitted or run.
func TestJobTemplatesOptionalAndMissing(t *testing.T) {
	c := nodetest.Start(t, 1)
	c.StartAgent("web-1", nodetest.AgentOptions{Labels: map[string]string{"role": "web"}})
	c.StartAgent("db-1", nodetest.AgentOptions{})
	c.WaitConnected("web-1", "db-1")
	cl := c.Client(0)
	dir := t.TempDir()

	optional := fmt.Sprintf("[[exec]]\nscript = %q\n",
		"printf %s '{{ with .Target.Labels.role }}{{ . }}{{ else }}none{{ end }}' > "+dir+"/{{ .Target.Name }}.role")
	resp := submit(t, cl, &rpc.SubmitJobRequest{Config: []byte(optional), Targets: "*", TimeoutSeconds: 60})
	info := waitJob(t, c, cl, resp.GetJobId(), 60*time.Second)
	if info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE {
		t.Fatalf("optional-label job %s: %v", info.GetStatus(), info.GetTargets())
	}
	for target, want := range map[string]string{"web-1": "web", "db-1": "none"} {
		b, err := os.ReadFile(filepath.Join(dir, target+".role"))
		if err != nil || string(b) != want {
			t.Errorf("%s rendered %q (%v), want %q", target, b, err, want)
		}
	}

	before, err := cl.Jobs.List(ctxT(t), &rpc.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	plain := fmt.Sprintf("[[exec]]\nname = \"ok\"\nscript = \"true\"\n\n[[exec]]\nname = \"port\"\nscript = \"\"\"\necho {{ .Target.Name }}\necho {{ .Vars.missing }} > %s/ran\n\"\"\"\n", dir)
	for _, preview := range []bool{true, false} {
		_, err := cl.Jobs.Submit(ctxT(t), &rpc.SubmitJobRequest{Name: "plain.toml", Config: []byte(plain), Targets: "*", Preview: preview})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("preview %v: plain reference to a missing var: %v, want InvalidArgument", preview, err)
		}
		for _, want := range []string{`targets db-1, web-1: plain.toml:5: exec[2].script: template: line 2: {{ .Vars.missing }}: var "missing" is not set`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("preview %v: error %q does not say %q", preview, err, want)
			}
		}
	}
	after, err := cl.Jobs.List(ctxT(t), &rpc.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.GetJobs()) != len(before.GetJobs()) {
		t.Errorf("a refused job was recorded: %d jobs, were %d", len(after.GetJobs()), len(before.GetJobs()))
	}
	// With the var set by the job it is accepted and runs.
	resp = submit(t, cl, &rpc.SubmitJobRequest{Name: "plain.toml", Config: []byte(plain), Targets: "web-1", Vars: map[string]string{"missing": "set"}, TimeoutSeconds: 60})
	if info := waitJob(t, c, cl, resp.GetJobId(), 60*time.Second); info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE {
		t.Fatalf("job with the var set: %s, %v", info.GetStatus(), info.GetTargets())
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ran")); err != nil || string(b) != "set\n" {
		t.Fatalf("the job with the var set wrote %q, %v", b, err)
	}
}
