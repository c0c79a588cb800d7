package node_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// followJob reads a job's Watch stream to its end and returns the last
// state sent.
func followJob(t *testing.T, cl *rpc.Client, id string) (*rpc.JobInfo, error) {
	t.Helper()
	stream, err := cl.Jobs.Watch(ctxT(t), &rpc.GetJobRequest{JobId: id})
	if err != nil {
		return nil, err
	}
	var last *rpc.JobInfo
	for range 10000 {
		info, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return last, nil
		}
		if err != nil {
			return nil, err
		}
		last = info
	}
	t.Fatalf("job %s: the watch never ended", id)
	return nil, nil
}

// Whoever submitted a job may read, follow and cancel it with no view
// grant (the quickstart's provision-only token); another caller with the
// same provision grants may not read it, and cannot tell it from a job
// that does not exist.
func TestSubmitterFollowsOwnJob(t *testing.T) {
	c := nodetest.Start(t, 3)
	c.StartAgent("web-1", nodetest.AgentOptions{})
	c.StartAgent("web-2", nodetest.AgentOptions{})
	c.WaitConnected("web-1", "web-2")
	admin := c.Client(0)
	// Alice works through a follower: her reads after her submission must
	// find the job although the follower may not have applied it when her
	// call is authorized.
	userClient(t, c, admin, "alice", "provision", "targets/web-*")
	tok, err := admin.Tokens.Create(ctxT(t), &rpc.CreateTokenRequest{Subject: "user:alice"})
	if err != nil {
		t.Fatal(err)
	}
	alice := c.ClientFor(tok.GetToken(), c.Addrs()[follower(c)])
	bob := userClient(t, c, admin, "bob", "provision", "targets/web-*")
	dir := t.TempDir()

	done := submit(t, alice, &rpc.SubmitJobRequest{Config: countingConfig(dir, 0, false), Targets: "web-*"})
	last, err := followJob(t, alice, done.GetJobId())
	if err != nil {
		t.Fatalf("alice following her job: %v", err)
	}
	if last.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE || last.GetSubmittedBy() != "user:alice" {
		t.Fatalf("alice's job ended %s, submitted by %s; want done by user:alice", last.GetStatus(), last.GetSubmittedBy())
	}
	info, err := alice.Jobs.Get(ctxT(t), &rpc.GetJobRequest{JobId: done.GetJobId(), Blocks: true})
	if err != nil {
		t.Fatalf("alice reading her job's logs: %v", err)
	}
	for _, ti := range info.GetTargets() {
		if len(ti.GetBlocks()) == 0 {
			t.Errorf("alice's job: %s has no block results", ti.GetTarget())
		}
	}

	running := submit(t, alice, &rpc.SubmitJobRequest{Config: countingConfig(dir, 60*time.Second, false), Targets: "web-*", TimeoutSeconds: 120})
	if _, err := alice.Jobs.Cancel(ctxT(t), &rpc.CancelJobRequest{JobId: running.GetJobId(), Reason: "test"}); err != nil {
		t.Fatalf("alice cancelling her job: %v", err)
	}
	last, err = followJob(t, alice, running.GetJobId())
	if err != nil || last.GetJobStatus() != events.JobStatus_JOB_STATUS_CANCELLED {
		t.Fatalf("alice following her cancelled job: %s, %v; want cancelled", last.GetStatus(), err)
	}

	// Listing every job still needs view.
	if _, err := alice.Jobs.List(ctxT(t), &rpc.ListJobsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("alice listing jobs: %v, want PermissionDenied", err)
	}

	// Bob may not read alice's job, and is told the same for a job that
	// does not exist.
	const missing = "j-00000000-deadbeef"
	reads := map[string]func(id string) error{
		"get": func(id string) error {
			_, err := bob.Jobs.Get(ctxT(t), &rpc.GetJobRequest{JobId: id, Blocks: true})
			return err
		},
		"watch": func(id string) error {
			_, err := followJob(t, bob, id)
			return err
		},
	}
	for name, read := range reads {
		var msgs []string
		for _, id := range []string{done.GetJobId(), missing} {
			err := read(id)
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("bob %s %s: %v, want PermissionDenied", name, id, err)
			}
			msgs = append(msgs, strings.ReplaceAll(status.Convert(err).Message(), id, "ID"))
		}
		if msgs[0] != msgs[1] {
			t.Errorf("bob %s: denials differ between an existing and a missing job:\n%s\n%s", name, msgs[0], msgs[1])
		}
	}
	// Whoever may view jobs still learns that a job does not exist.
	if _, err := admin.Jobs.Get(ctxT(t), &rpc.GetJobRequest{JobId: missing}); status.Code(err) != codes.NotFound {
		t.Errorf("admin reading a missing job: %v, want NotFound", err)
	}
	if _, err := followJob(t, admin, missing); status.Code(err) != codes.NotFound {
		t.Errorf("admin watching a missing job: %v, want NotFound", err)
	}
}

// Anyone may check their own grants, groups included; checking another
// subject needs view on grants/*.
func TestCheckOwnGrants(t *testing.T) {
	c := nodetest.Start(t, 1)
	admin := c.Client(0)
	alice := userClient(t, c, admin, "alice", "provision", "targets/web-*")
	userClient(t, c, admin, "bob")
	ctx := ctxT(t)
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "group", Name: "db"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Identities.AddMember(ctx, &rpc.MemberRequest{Group: "db", Member: "user:alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "group:db", Privilege: "provision", Resource: "targets/db-*"}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		resource string
		allowed  bool
		via      string
	}{
		{"targets/web-1", true, ""},
		{"targets/db-1", true, "group:db"},
		{"targets/mail-1", false, ""},
	} {
		resp, err := alice.Grants.Check(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "provision", Resource: tc.resource})
		if err != nil {
			t.Errorf("alice checking herself on %s: %v", tc.resource, err)
			continue
		}
		if resp.GetAllowed() != tc.allowed || resp.GetVia() != tc.via {
			t.Errorf("alice on %s: allowed %v via %q, want %v via %q", tc.resource, resp.GetAllowed(), resp.GetVia(), tc.allowed, tc.via)
		}
	}
	for _, subject := range []string{"user:bob", "group:db", "user:nobody"} {
		_, err := alice.Grants.Check(ctx, &rpc.GrantRequest{Subject: subject, Privilege: "provision", Resource: "targets/web-1"})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "view on grants/*") {
			t.Errorf("alice checking %s: %v, want PermissionDenied for view on grants/*", subject, err)
		}
	}
}
