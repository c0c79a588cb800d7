package node_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
)

// raftServers lists the servers of node i's Raft configuration.
func raftServers(t *testing.T, c *nodetest.Cluster, i int) []string {
	t.Helper()
	cf := c.Node(i).Raft().GetConfiguration()
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range cf.Configuration().Servers {
		out = append(out, string(s.ID))
	}
	slices.Sort(out)
	return out
}

// TestRemoveNodeThenReplace follows docs/operations.md "Replace a node": a
// node gone for good is removed, a replacement joins, and the cluster then
// survives losing one more of the original nodes. Had the removal not
// shrunk the configuration, that would leave two of four voters: no quorum.
func TestRemoveNodeThenReplace(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	gone := follower(c)
	goneName := c.Node(gone).Name()
	c.Kill(gone)
	// Through the other follower, which relays to the leader.
	via := -1
	for i := range c.Len() {
		if n := c.Node(i); n != nil && !n.IsLeader() {
			via = i
		}
	}
	cl := c.Client(via)

	if _, err := cl.Cluster.RemoveNode(ctx, &rpc.RemoveNodeRequest{Name: "no-such-node"}); status.Code(err) != codes.NotFound {
		t.Fatalf("remove-node of an unknown node: %v, want NotFound", err)
	}
	if _, err := cl.Cluster.RemoveNode(ctx, &rpc.RemoveNodeRequest{Name: ""}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "name") {
		t.Fatalf("remove-node without a name: %v, want InvalidArgument naming the field", err)
	}
	w, err := cl.Cluster.RemoveNode(ctx, &rpc.RemoveNodeRequest{Name: goneName})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(w.GetIndex())
	ev, err := c.Node(via).State().Event(w.GetIndex())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ev.DecodePayload()
	if nr, ok := p.(*events.NodeRemoved); !ok || nr.GetName() != goneName || ev.GetActor() != "user:admin" {
		t.Fatalf("event at %d = %v by %s, want node_removed %s by user:admin", w.GetIndex(), p, ev.GetActor(), goneName)
	}
	for i := range c.Len() {
		if c.Node(i) == nil {
			continue
		}
		if got := raftServers(t, c, i); len(got) != 2 || slices.Contains(got, goneName) {
			t.Fatalf("node %d's raft configuration after removing %s: %v", i, goneName, got)
		}
	}

	// A write after the removal.
	w2, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "after-remove"})
	if err != nil {
		t.Fatalf("write after remove-node: %v", err)
	}
	if w2.GetIndex() <= w.GetIndex() {
		t.Fatalf("write after remove-node at %d, not after %d", w2.GetIndex(), w.GetIndex())
	}

	// The replacement joins as a voter.
	repl := c.AddNode()
	c.Eventually(20*time.Second, func() error {
		if got := raftServers(t, c, c.WaitLeader()); len(got) != 3 || !slices.Contains(got, c.Node(repl).Name()) {
			return fmt.Errorf("raft configuration %v lacks the replacement", got)
		}
		return nil
	})
	// Lose one more original node: the replacement and the other make a
	// quorum of three.
	viaName := c.Node(via).Name()
	c.Kill(via)
	leader := c.WaitLeader()
	all := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	w3, err := all.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "after-replace"})
	if err != nil {
		t.Fatalf("write after replacing %s and losing %s: %v (leader %d)", goneName, viaName, err, leader)
	}
	c.WaitEvent(w3.GetIndex())
	if names := userNames(t, ctx, c.Client(repl)); !slices.Contains(names, "after-remove") || !slices.Contains(names, "after-replace") {
		t.Fatalf("replacement has users %v", names)
	}
}

// TestCancelStopsARunningJob: cancelling a job while a target runs it ends
// the command on the target and the job as cancelled.
func TestCancelStopsARunningJob(t *testing.T) {
	c := nodetest.Start(t, 1)
	c.StartAgent("a1", nodetest.AgentOptions{})
	c.WaitConnected("a1")
	cl := c.Client(0)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// The shell records its pid and becomes the sleep, so the pid is the
	// command's for as long as it runs.
	script := fmt.Sprintf("echo $$ > %s.tmp && mv %s.tmp %s && exec sleep 120", pidFile, pidFile, pidFile)
	resp := submit(t, cl, &rpc.SubmitJobRequest{Config: []byte(fmt.Sprintf("[[exec]]\nname = \"sleep\"\nscript = %q\n", script)),
		Targets: "a1", TimeoutSeconds: 600, MaxFailures: -1})
	var pid int
	c.Eventually(20*time.Second, func() error {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	w, err := cl.Jobs.Cancel(ctxT(t), &rpc.CancelJobRequest{JobId: resp.GetJobId(), Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if w.GetIndex() == 0 {
		t.Fatal("cancel returned no index")
	}
	info := waitJob(t, c, cl, resp.GetJobId(), 60*time.Second)
	if info.GetJobStatus() != events.JobStatus_JOB_STATUS_CANCELLED {
		t.Fatalf("cancelled job ended %s: %v", info.GetStatus(), targetStatuses(info))
	}
	// The agent reports a run its cancel killed as failed (the command
	// died); only targets still pending become cancelled.
	if st := targetStatuses(info)["a1"]; st != events.TargetStatus_TARGET_STATUS_CANCELLED && st != events.TargetStatus_TARGET_STATUS_FAILED {
		t.Fatalf("target of a cancelled job ended %s", st)
	}
	c.Eventually(20*time.Second, func() error {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("command %d of the cancelled job still exists (%v)", pid, err)
		}
		return nil
	})
	// A finished job cannot be cancelled again, and saying so changes
	// nothing.
	if _, err := cl.Jobs.Cancel(ctxT(t), &rpc.CancelJobRequest{JobId: resp.GetJobId()}); status.Code(err) == codes.OK {
		t.Fatal("a finished job was cancelled again")
	}
	if _, err := cl.Jobs.Cancel(ctxT(t), &rpc.CancelJobRequest{JobId: "j-none"}); status.Code(err) != codes.NotFound {
		t.Fatalf("cancel of an unknown job: %v, want NotFound", err)
	}
}

// TestRemovedAccessIsRefusedEverywhere: removing a user, a grant, a group
// membership or a group takes the access away on every node.
func TestRemovedAccessIsRefusedEverywhere(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	admin := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	must := func(t *testing.T) func(*rpc.WriteResponse, error) *rpc.WriteResponse {
		return func(w *rpc.WriteResponse, err error) *rpc.WriteResponse {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			return w
		}
	}
	// reader makes user name, with view on everything granted directly or
	// through group (if not empty), and returns its token.
	reader := func(t *testing.T, name, group string) string {
		t.Helper()
		must(t)(admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: events.KindUser, Name: name}))
		holder := "user:" + name
		if group != "" {
			must(t)(admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: events.KindGroup, Name: group}))
			must(t)(admin.Identities.AddMember(ctx, &rpc.MemberRequest{Group: group, Member: holder}))
			holder = "group:" + group
		}
		must(t)(admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: holder, Privilege: events.PrivView, Resource: "*"}))
		tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:" + name})
		if err != nil {
			t.Fatal(err)
		}
		return tok.GetToken()
	}
	// onEveryNode checks a read with tok on each node once all have
	// applied the log up to the admin's last write.
	onEveryNode := func(t *testing.T, tok string, want codes.Code) {
		t.Helper()
		c.WaitEvent(admin.LastIndex())
		for i := range c.Len() {
			_, err := c.ClientFor(tok, c.Node(i).Addr()).Identities.List(ctx, &rpc.ListIdentitiesRequest{Kind: events.KindUser})
			if status.Code(err) != want {
				t.Errorf("node %s: read %v, want %v", c.Node(i).Name(), err, want)
			}
		}
	}
	for _, tc := range []struct {
		name, user, group string
		remove            func() (*rpc.WriteResponse, error)
		want              codes.Code
	}{
		{"user", "u-user", "", func() (*rpc.WriteResponse, error) {
			return admin.Identities.Remove(ctx, &rpc.RemoveIdentityRequest{Kind: events.KindUser, Name: "u-user"})
		}, codes.Unauthenticated},
		{"grant", "u-grant", "", func() (*rpc.WriteResponse, error) {
			return admin.Grants.Remove(ctx, &rpc.GrantRequest{Subject: "user:u-grant", Privilege: events.PrivView, Resource: "*"})
		}, codes.PermissionDenied},
		{"membership", "u-member", "g-member", func() (*rpc.WriteResponse, error) {
			return admin.Identities.RemoveMember(ctx, &rpc.MemberRequest{Group: "g-member", Member: "user:u-member"})
		}, codes.PermissionDenied},
		{"group", "u-group", "g-group", func() (*rpc.WriteResponse, error) {
			return admin.Identities.Remove(ctx, &rpc.RemoveIdentityRequest{Kind: events.KindGroup, Name: "g-group"})
		}, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := reader(t, tc.user, tc.group)
			onEveryNode(t, tok, codes.OK)
			w := must(t)(tc.remove())
			if w.GetIndex() == 0 {
				t.Fatal("removal returned no index")
			}
			onEveryNode(t, tok, tc.want)
			// Removing it again is refused and writes nothing.
			before := admin.LastIndex()
			if _, err := tc.remove(); status.Code(err) != codes.NotFound {
				t.Errorf("second removal: %v, want NotFound", err)
			}
			if admin.LastIndex() != before {
				t.Errorf("a refused removal wrote index %d", admin.LastIndex())
			}
		})
	}
}

// TestRetriedJobSubmissionMakesOneJob: a submission retried with the same
// request id, through another node, answers with the first attempt's job.
func TestRetriedJobSubmissionMakesOneJob(t *testing.T) {
	c := nodetest.Start(t, 3)
	c.RegisterTarget("t1", t.TempDir())
	ctx := rpc.WithRequestID(ctxT(t), "submit-once")
	req := &rpc.SubmitJobRequest{Name: "t.toml", Config: countingConfig(t.TempDir(), 0, false), Targets: "t1", TimeoutSeconds: 600}
	first, err := c.Client(follower(c)).Jobs.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Client(c.WaitLeader()).Jobs.Submit(ctx, req)
	if err != nil {
		t.Fatalf("retried submission: %v", err)
	}
	if second.GetJobId() != first.GetJobId() || second.GetIndex() != first.GetIndex() {
		t.Fatalf("retry answered job %s at %d, want job %s at %d", second.GetJobId(), second.GetIndex(), first.GetJobId(), first.GetIndex())
	}
	c.WaitEvent(second.GetIndex())
	n := c.Node(0)
	jobs, err := n.State().Jobs()
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 {
		t.Fatalf("%d jobs after a retried submission, want 1", len(jobs))
	}
	submitted := 0
	for _, ev := range eventsAfter(t, n, 0) {
		if ev.GetType() == events.Type_TYPE_JOB_SUBMITTED {
			submitted++
		}
	}
	if submitted != 1 {
		t.Fatalf("%d job_submitted events, want 1", submitted)
	}
}

// TestTokensListNeverShowsSecrets: listing tokens on any node returns
// neither a secret nor its hash, for node-minted and client-made tokens.
func TestTokensListNeverShowsSecrets(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	admin := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: events.KindMachine, Name: "ci"}); err != nil {
		t.Fatal(err)
	}
	minted, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "machine:ci", Description: "minted"})
	if err != nil {
		t.Fatal(err)
	}
	if minted.GetToken() == "" {
		t.Fatal("node-minted token returned no secret")
	}
	own, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	sum := own.SecretSHA256()
	if _, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "machine:ci", Id: own.ID, SecretSha256: sum[:], Description: "own"}); err != nil {
		t.Fatal(err)
	}
	mintedTok, err := auth.ParseToken(minted.GetToken())
	if err != nil {
		t.Fatal(err)
	}
	mintedSum := mintedTok.SecretSHA256()
	// Use both, so that last-used figures are in the listing too.
	for _, s := range []string{minted.GetToken(), own.Secret()} {
		if _, err := c.ClientFor(s, c.Addrs()...).Cluster.Whoami(ctx, &rpc.WhoamiRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	secrets := map[string][]byte{
		"minted secret": []byte(minted.GetToken()), "own secret": []byte(own.Secret()),
		"minted secret part": []byte(minted.GetToken()[3+auth.IDLen:]), "own secret part": []byte(own.Secret()[3+auth.IDLen:]),
		"minted hash": mintedSum[:], "own hash": sum[:],
		"minted hash hex": []byte(hex.EncodeToString(mintedSum[:])), "own hash hex": []byte(hex.EncodeToString(sum[:])),
		"minted hash base64": []byte(base64.StdEncoding.EncodeToString(mintedSum[:])), "own hash base64": []byte(base64.StdEncoding.EncodeToString(sum[:])),
	}
	c.WaitEvent(admin.LastIndex())
	for i := range c.Len() {
		resp, err := c.Client(i).Tokens.List(ctx, &rpc.ListTokensRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, ti := range resp.GetTokens() {
			ids[ti.GetId()] = true
		}
		if !ids[minted.GetId()] || !ids[own.ID] {
			t.Fatalf("node %d lists tokens %v, want %s and %s", i, ids, minted.GetId(), own.ID)
		}
		wire, err := proto.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		text := []byte(resp.String())
		for what, s := range secrets {
			if bytes.Contains(wire, s) || bytes.Contains(text, s) {
				t.Errorf("node %d: Tokens.List carries the %s", i, what)
			}
		}
	}
}
