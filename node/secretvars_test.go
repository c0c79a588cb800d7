package node_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/agent"
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/secretvars"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/export"
	"github.com/hpt-dev/hpt/node/export/exporttest"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

func randomWord(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// secretConfig writes a file and runs a script that both use the secret
// var db_password and the plain var user.
func secretConfig(path string) []byte {
	return fmt.Appendf(nil, "[[file]]\npath = %q\ncontent = \"user={{ .Vars.user }}\\npassword={{ .Vars.db_password }}\\n\"\ntemplate = true\n\n[[exec]]\nname = \"echo\"\nscript = \"echo connecting as {{ .Vars.user }} with {{ .Vars.db_password }}\"\n", path)
}

// needles are word and its base64 encodings at each of the three
// alignments (the characters word alone determines): the agent's journal
// keeps results as base64 in JSON.
func needles(word []byte) [][]byte {
	out := [][]byte{word}
	for k := range 3 {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, k), word...))
		out = append(out, []byte(enc[(8*k+5)/6:8*(k+len(word))/6]))
	}
	return out
}

// scanDir reports the files under dir whose raw bytes contain word, as it
// is or in base64.
func scanDir(t *testing.T, dir string, word []byte) []string {
	t.Helper()
	find := needles(word)
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed while walking (a compaction)
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, w := range find {
			if bytes.Contains(b, w) {
				hits = append(hits, p)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// A job's secret var reaches the target's templates, and its value is in
// no event, no result, no snapshot, no file of any node, of the agent or
// of the NATS export; the plain var next to it is in all of those, which
// shows that the scans find what is there. The nodes drop the values once
// the job is over. A name in both vars and secret vars, and oversized
// secret vars, are refused, naming the field, and record nothing.
func TestJobSecretVars(t *testing.T) {
	js := exporttest.Start(t)
	c := nodetest.Start(t, 3, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.Export = &export.Config{URL: js.URL()}
	}})
	agentDir := t.TempDir()
	c.StartAgent("web-1", nodetest.AgentOptions{Dir: agentDir})
	c.WaitConnected("web-1")
	ctx := ctxT(t)
	secret, plain := randomWord(t, "pw-"), randomWord(t, "user-")
	out := filepath.Join(t.TempDir(), "db.conf")

	// Through a follower: the values must reach the node holding the
	// agent's stream, whichever it is, and the leader never needs them.
	cl := c.ClientFor(c.Admin.Secret(), c.Node(follower(c)).Addr())
	resp := submit(t, cl, &rpc.SubmitJobRequest{
		Config: secretConfig(out), Targets: "web-1", TimeoutSeconds: 60,
		Vars: map[string]string{"user": plain}, SecretVars: map[string]string{"db_password": secret},
	})
	info := waitJob(t, c, cl, resp.GetJobId(), 60*time.Second)
	if info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE {
		t.Fatalf("job %s: %v", info.GetStatus(), info.GetTargets())
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "user="+plain+"\npassword="+secret+"\n" {
		t.Fatalf("the target rendered %q (%v)", b, err)
	}

	// The result says where the secret was, not what it is.
	b, err := proto.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(secret)) {
		t.Errorf("job status carries the secret value: %v", info)
	}
	var output string
	for _, blk := range info.GetTargets()[0].GetBlocks() {
		if blk.GetName() == "echo" {
			output = blk.GetOutput()
		}
	}
	if want := "connecting as " + plain + " with [secret db_password]"; !strings.Contains(output, want) {
		t.Errorf("exec output %q, want it to say %q", output, want)
	}

	// Every archived event, byte for byte.
	stream, err := cl.Events.List(atIndex(ctx, cl.LastIndex()), &rpc.ListEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var submitted *events.JobSubmitted
	plainSeen := false
	for n := 0; ; n++ {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		raw, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("event %d (%s) carries the secret value", ev.GetIndex(), ev.GetType())
		}
		plainSeen = plainSeen || bytes.Contains(raw, []byte(plain))
		if ev.GetType() == events.Type_TYPE_JOB_SUBMITTED {
			submitted = new(events.JobSubmitted)
			if err := proto.Unmarshal(ev.GetPayload(), submitted); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !plainSeen {
		t.Fatal("no event carries the plain var: the scan proves nothing")
	}
	if sv := submitted.GetSecretVars(); !slices.Equal(sv.GetNames(), []string{"db_password"}) || len(sv.GetDigest()) != 32 {
		t.Errorf("job_submitted records secret vars %v, want the name and a 32-byte digest", sv)
	}

	// A snapshot of the whole state.
	snap, err := cl.Cluster.SnapshotSave(ctx, &rpc.SnapshotSaveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var backup []byte
	for {
		chunk, err := snap.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		backup = append(backup, chunk.GetData()...)
	}
	if bytes.Contains(backup, []byte(secret)) {
		t.Error("the snapshot carries the secret value")
	}

	// The nodes forget the values once the job is over.
	c.Eventually(20*time.Second, func() error {
		for _, n := range c.Running() {
			if k := n.HeldSecretJobs(); k != 0 {
				return fmt.Errorf("node %s still holds secret vars of %d jobs", n.Name(), k)
			}
		}
		return nil
	})

	// Bad secret vars are refused before anything is recorded.
	before := cl.LastIndex()
	for name, tc := range map[string]struct {
		req  *rpc.SubmitJobRequest
		want string
	}{
		"in both": {&rpc.SubmitJobRequest{Vars: map[string]string{"db_password": "x", "user": "u"}, SecretVars: map[string]string{"db_password": secret}},
			"secret_vars[db_password]: also set in vars"},
		"oversized": {&rpc.SubmitJobRequest{Vars: map[string]string{"user": "u"}, SecretVars: map[string]string{"db_password": strings.Repeat(secret, secretvars.MaxSize/len(secret)+1)}},
			"secret_vars have"},
		"bad name": {&rpc.SubmitJobRequest{Vars: map[string]string{"user": "u"}, SecretVars: map[string]string{"db_password": secret, "a-b": secret}},
			`secret_vars: name "a-b"`},
	} {
		req := tc.req
		req.Name, req.Config, req.Targets = "secret.toml", secretConfig(out), "web-1"
		_, err := cl.Jobs.Submit(ctx, req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument saying %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error carries the secret value", name)
		}
	}
	jobs, err := cl.Jobs.List(ctx, &rpc.ListJobsRequest{})
	if err != nil || len(jobs.GetJobs()) != 1 || cl.LastIndex() != before {
		t.Errorf("refused submissions recorded something: %d jobs (%v), index %d, was %d", len(jobs.GetJobs()), err, cl.LastIndex(), before)
	}

	// The export caught up, then the disks: every file of every node, of
	// the agent (its journal) and of NATS's stream store. (Pebble may
	// compress its tables; the raft log and the WAL it scans are not.)
	last := cl.LastIndex()
	c.Eventually(30*time.Second, func() error {
		st, err := cl.Cluster.Status(ctx, &rpc.StatusRequest{})
		if err != nil {
			return err
		}
		for _, m := range st.GetMembers() {
			if m.GetName() == st.GetLeader() {
				if e := m.GetExport(); e.GetExportedIndex() < last {
					return fmt.Errorf("export at %d, want %d", e.GetExportedIndex(), last)
				}
				return nil
			}
		}
		return fmt.Errorf("no leader in %v", st)
	})
	for _, dir := range []string{c.Dir, agentDir, js.Dir()} {
		if hits := scanDir(t, dir, []byte(secret)); len(hits) > 0 {
			t.Errorf("the secret value is on disk in %v", hits)
		}
		if hits := scanDir(t, dir, []byte(plain)); len(hits) == 0 {
			t.Errorf("the plain var is nowhere under %s: the scan proves nothing", dir)
		}
	}
}

// A node that must dispatch a job's target but lacks its secret vars
// (restarted since the submission, or out of reach at submission) ends the
// target failed, saying why, and the config does not run.
//
// First, the other way round: every member holds the values, so a job
// submitted before the leader fails runs with them after.
func TestJobSecretVarsNotHeld(t *testing.T) {
	c := nodetest.Start(t, 3)
	dir := t.TempDir()
	keystore := c.RegisterTarget("web-1", dir)
	keystore3 := c.RegisterTarget("web-3", t.TempDir())
	out := filepath.Join(t.TempDir(), "db.conf")
	cl := c.ClientFor(c.Admin.Secret(), c.Addrs()...)

	failover := filepath.Join(t.TempDir(), "db.conf")
	first := submit(t, cl, &rpc.SubmitJobRequest{
		Config: secretConfig(failover), Targets: "web-3", TimeoutSeconds: 60, ConnectTimeoutSeconds: 120,
		Vars: map[string]string{"user": "u"}, SecretVars: map[string]string{"db_password": "after-failover"},
	})
	l := c.WaitLeader()
	c.Kill(l)
	c.WaitLeader()
	var alive []string
	for _, n := range c.Running() {
		alive = append(alive, n.Addr())
	}
	a3, err := agent.New(agent.Config{Keystore: keystore3, Listen: "127.0.0.1:0", GossipListen: "127.0.0.1:0", Servers: alive})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a3.Close() })
	cl = c.ClientFor(c.Admin.Secret(), alive...)
	if info := waitJob(t, c, cl, first.GetJobId(), 60*time.Second); info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE {
		t.Fatalf("job across the failover: %s, %v", info.GetStatus(), info.GetTargets())
	}
	if b, err := os.ReadFile(failover); err != nil || !strings.Contains(string(b), "password=after-failover\n") {
		t.Fatalf("job across the failover rendered %q, %v", b, err)
	}
	c.Restart(l)
	c.WaitLeader()
	cl = c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	// The agent is not connected yet: the target waits for it.
	resp := submit(t, cl, &rpc.SubmitJobRequest{
		Config: secretConfig(out), Targets: "web-1", TimeoutSeconds: 60, ConnectTimeoutSeconds: 120,
		Vars: map[string]string{"user": "u"}, SecretVars: map[string]string{"db_password": "hunter2-secret"},
	})
	f := follower(c)
	c.Kill(f)
	n := c.Restart(f)
	if k := n.HeldSecretJobs(); k != 0 {
		t.Fatalf("restarted node holds secret vars of %d jobs", k)
	}
	c.Eventually(30*time.Second, func() error {
		_, err := n.State().Job(resp.GetJobId())
		return err
	})
	// The agent reaches only the restarted node.
	a, err := agent.New(agent.Config{Keystore: keystore, Listen: "127.0.0.1:0", GossipListen: "127.0.0.1:0", Servers: []string{n.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })

	info := waitJob(t, c, cl, resp.GetJobId(), 60*time.Second)
	jt := info.GetTargets()[0]
	want := fmt.Sprintf("secret vars of job %s are not held by node %s (restarted since submission?); resubmit", resp.GetJobId(), n.Name())
	if jt.GetTargetStatus() != events.TargetStatus_TARGET_STATUS_FAILED || jt.GetError() != want || jt.GetNode() != "" && jt.GetNode() != n.Name() {
		t.Fatalf("target %s (%s) on node %q, want failed with %q", jt.GetStatus(), jt.GetError(), jt.GetNode(), want)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("the config ran without its secret vars: %s: %v", out, err)
	}

	// A member out of reach at submission: a quorum holds the values, so
	// the job is accepted; the member, once back, lacks them and fails the
	// target whose agent it holds.
	keystore2 := c.RegisterTarget("web-2", t.TempDir())
	p := follower(c)
	c.Partition(p)
	lc := c.ClientFor(c.Admin.Secret(), c.Node(c.WaitLeader()).Addr())
	resp = submit(t, lc, &rpc.SubmitJobRequest{
		Config: secretConfig(out), Targets: "web-2", TimeoutSeconds: 60, ConnectTimeoutSeconds: 120,
		Vars: map[string]string{"user": "u"}, SecretVars: map[string]string{"db_password": "hunter2-secret"},
	})
	c.Heal()
	pn := c.Node(p)
	c.Eventually(30*time.Second, func() error {
		_, err := pn.State().Job(resp.GetJobId())
		return err
	})
	a2, err := agent.New(agent.Config{Keystore: keystore2, Listen: "127.0.0.1:0", GossipListen: "127.0.0.1:0", Servers: []string{pn.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a2.Close() })
	info = waitJob(t, c, lc, resp.GetJobId(), 60*time.Second)
	jt = info.GetTargets()[0]
	want = fmt.Sprintf("secret vars of job %s are not held by node %s (restarted since submission?); resubmit", resp.GetJobId(), pn.Name())
	if jt.GetTargetStatus() != events.TargetStatus_TARGET_STATUS_FAILED || jt.GetError() != want {
		t.Fatalf("target %s (%s), want failed with %q", jt.GetStatus(), jt.GetError(), want)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("the config ran without its secret vars: %s: %v", out, err)
	}
}
