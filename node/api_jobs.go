package node

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/internal/secretvars"
	"github.com/hpt-dev/hpt/provconfig"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

type jobsAPI struct {
	rpc.UnimplementedJobsServer
	n *Node
}

type targetsAPI struct {
	rpc.UnimplementedTargetsServer
	n *Node
}

// DefaultJobTimeout bounds one target's run when the job sets none.
const DefaultJobTimeout = 10 * time.Minute

// A bundle and vars at their limits leave at least this much of an event
// for the job's target list and the rest (a compile error if not).
const jobEventSlack = events.MaxEncodedSize - provconfig.MaxBundleSize - provconfig.MaxVarsSize - 2*events.MaxTextLen

var _ [jobEventSlack - 512<<10]struct{}

// matching says which targets a job asked for, in the flags that asked,
// leaving out those not given: ` matching --targets "web-*" and --selector
// role=web`, or "" for every target.
func matching(req *rpc.SubmitJobRequest) string {
	var parts []string
	if req.GetTargets() != "" {
		parts = append(parts, fmt.Sprintf("--targets %q", req.GetTargets()))
	}
	if len(req.GetSelector()) > 0 {
		parts = append(parts, "--selector "+events.FormatLabels(req.GetSelector()))
	}
	if len(parts) == 0 {
		return ""
	}
	return " matching " + strings.Join(parts, " and ")
}

func (a *jobsAPI) Submit(ctx context.Context, req *rpc.SubmitJobRequest) (*rpc.SubmitJobResponse, error) {
	n := a.n
	// Authorization comes first, before the config is parsed or the targets
	// are resolved, so that neither the answer nor its cost depends on
	// what the caller may not see.
	seeAll, err := n.mayViewTargets(ctx)
	if err != nil {
		return nil, err
	}
	if !seeAll {
		// A caller who cannot list the targets must keep to a glob its
		// provision grants cover: otherwise which answer comes back (no
		// match, or denied) would tell it which names exist.
		if err := n.authz.Require(ctx, events.PrivProvision, "targets/"+cmp.Or(req.GetTargets(), "*")); err != nil {
			return nil, err
		}
	}
	if _, err := path.Match(req.GetTargets(), ""); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "targets %q: bad glob: %v", req.GetTargets(), err)
	}
	if err := events.CheckLabels("selector", req.GetSelector()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	// Resolve against state the leader confirms, not whatever this node
	// has applied: a target that just connected or changed labels counts.
	if err := n.syncRead(ctx); err != nil {
		return nil, err
	}
	targets, err := n.resolveTargets(req.GetTargets(), req.GetSelector())
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "no registered, unrevoked target%s", matching(req))
	}
	// Submitting needs the provision privilege on every resolved target.
	for _, t := range targets {
		if err := n.authz.Require(ctx, events.PrivProvision, "targets/"+t); err != nil {
			if !seeAll {
				// Inside a glob its grants cover (a grant for "web-?"
				// covers the glob "web-*", not every name it matches);
				// still name nothing the caller cannot list.
				return nil, status.Errorf(codes.PermissionDenied, "denied: the caller may not provision every target%s", matching(req))
			}
			return nil, err
		}
	}
	if err := checkJobInputs(req); err != nil {
		return nil, err
	}
	if err := n.checkTemplates(req, targets); err != nil {
		return nil, err
	}
	resp := &rpc.SubmitJobResponse{Targets: targets}
	if req.GetPreview() {
		return resp, nil
	}
	timeout := time.Duration(req.GetTimeoutSeconds()) * time.Second
	if timeout == 0 {
		timeout = DefaultJobTimeout
	}
	connect := time.Duration(req.GetConnectTimeoutSeconds()) * time.Second
	if connect == 0 {
		connect = DefaultConnectTimeout
	}
	id, err := newJobID()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	job := &events.JobSubmitted{
		JobId: id, Name: req.GetName(), Config: req.GetConfig(), Files: req.GetFiles(), Targets: targets,
		TargetGlob: req.GetTargets(), Selector: req.GetSelector(), BatchSize: req.GetBatchSize(),
		MaxFailures: req.GetMaxFailures(), TimeoutNanos: int64(timeout), Vars: req.GetVars(), DryRun: req.GetDryRun(),
		ConnectTimeoutNanos: int64(connect),
	}
	secrets := req.GetSecretVars()
	var key []byte
	if len(secrets) > 0 {
		if key, err = secretvars.NewKey(); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		job.SecretVars = &events.JobSecrets{Names: secretvars.Names(secrets), Digest: secretvars.Digest(key, id, secrets)}
	}
	// Every input is within its limit; only a very long target list can
	// still make the event too large. Say so rather than give the size.
	if size := proto.Size(job); size > events.MaxEncodedSize-4<<10 {
		return nil, status.Errorf(codes.InvalidArgument, "job: its %d targets with the bundle make an event of %d bytes, over the %d MiB event limit; split the job with --targets", len(targets), size, events.MaxEncodedSize>>20)
	}
	if len(secrets) > 0 {
		// Before the job exists: whichever node comes to dispatch it, and
		// whichever leads then, finds the values held (secrets.go).
		if err := n.stashSecrets(ctx, id, key, job.SecretVars.Digest, secrets); err != nil {
			return nil, err
		}
	}
	w, err := n.propose(ctx, job)
	if err != nil {
		// The other nodes drop theirs once the job stays unknown.
		n.secrets.drop(id)
		return nil, err
	}
	if w.GetDuplicate() {
		n.secrets.drop(id)
		// A retried submission: answer with the job the first attempt made.
		ev, err := n.fsm.Event(w.GetIndex())
		if err != nil {
			return nil, stateErr(err)
		}
		var first events.JobSubmitted
		if err := proto.Unmarshal(ev.GetPayload(), &first); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		id, resp.Targets = first.GetJobId(), first.GetTargets()
	}
	resp.JobId, resp.Index = id, w.GetIndex()
	return resp, nil
}

// checkJobInputs validates what a submission carries, each input against
// its own limit (docs/operations.md), and parses the config. It runs only
// once the caller is authorized.
func checkJobInputs(req *rpc.SubmitJobRequest) error {
	if req.GetMaxFailures() < -1 {
		return status.Error(codes.InvalidArgument, "max_failures: -1 (no limit) or more")
	}
	if req.GetTimeoutSeconds() < 0 {
		return status.Error(codes.InvalidArgument, "timeout: must not be negative")
	}
	if req.GetConnectTimeoutSeconds() < 0 {
		return status.Error(codes.InvalidArgument, "connect_timeout: must not be negative")
	}
	if err := events.CheckText("name", req.GetName()); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := provconfig.CheckVars(req.GetVars()); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := secretvars.Check(req.GetSecretVars(), req.GetVars()); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	// Parse applies the bundle limit first.
	if _, err := provconfig.Parse(&provconfig.Bundle{Name: req.GetName(), Config: req.GetConfig(), Files: req.GetFiles()}); err != nil {
		return status.Errorf(codes.InvalidArgument, "config: %v", err)
	}
	return nil
}

// mayViewTargets reports whether the caller may list every target (view
// on targets/*, or admin); nodes may. Denials name targets only to such a
// caller.
func (n *Node) mayViewTargets(ctx context.Context) (bool, error) {
	return n.mayView(ctx, "targets/*")
}

func (n *Node) mayView(ctx context.Context, resource string) (bool, error) {
	c, ok := auth.CallerFrom(ctx)
	if !ok {
		return false, status.Error(codes.Unauthenticated, "no authenticated caller")
	}
	if c.Node {
		return true, nil
	}
	d, err := n.authz.Check(c.Subject, events.PrivView, resource)
	if err != nil {
		return false, status.Error(codes.Unavailable, err.Error())
	}
	return d.Allowed, nil
}

// newJobID returns a sortable, unique job id: creation time in base 36 and
// random letters.
func newJobID() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("j-%s-%08x", strconv.FormatInt(time.Now().UnixMilli(), 36), b), nil
}

// resolveTargets returns the registered, unrevoked targets whose name
// matches glob (empty: all) and whose labels include selector. Only the
// labels set at registration count: what an agent claims never selects.
func (n *Node) resolveTargets(glob string, selector map[string]string) ([]string, error) {
	keys, err := n.fsm.TargetKeys()
	if err != nil {
		return nil, stateErr(err)
	}
	var out []string
	for _, k := range keys {
		if k.GetRevoked() {
			continue
		}
		if glob != "" {
			if ok, _ := path.Match(glob, k.GetTarget()); !ok {
				continue
			}
		}
		match := true
		for lk, lv := range selector {
			match = match && k.GetLabels()[lk] == lv
		}
		if match {
			out = append(out, k.GetTarget())
		}
	}
	slices.Sort(out)
	return out, nil
}

// jobInfo describes a job and its targets; keys holds the keys of the
// targets in flight, to say which wait for their agents.
func jobInfo(j *fsm.Job, targets []*fsm.JobTarget, keys map[string]*fsm.TargetKey, blocks bool) *rpc.JobInfo {
	info := &rpc.JobInfo{
		JobId: j.GetId(), Name: j.GetName(), JobStatus: j.GetStatus(), Status: j.GetStatus().Name(), SubmittedBy: j.GetSubmitted().GetActor(),
		SubmittedUnixNano: j.GetSubmitted().GetTimeUnixNano(), SubmittedIndex: j.GetSubmitted().GetIndex(),
		FinishedUnixNano: j.GetFinished().GetTimeUnixNano(), BatchSize: j.GetBatchSize(), MaxFailures: j.GetMaxFailures(),
		TimeoutSeconds: j.GetTimeoutNanos() / int64(time.Second), DryRun: j.GetDryRun(), Counts: j.GetCounts(),
		TargetGlob: j.GetTargetGlob(), Selector: j.GetSelector(),
		ConnectTimeoutSeconds: j.GetConnectTimeoutNanos() / int64(time.Second),
	}
	for _, t := range targets {
		ti := &rpc.JobTargetInfo{
			Target: t.GetTarget(), TargetStatus: t.GetStatus(), Status: t.GetStatus().Name(), Node: t.GetNode(), Batch: t.GetBatch(),
			StartedUnixNano: t.GetStartedUnixNano(), FinishedUnixNano: t.GetFinishedUnixNano(), Error: t.GetError(),
		}
		if blocks {
			ti.Blocks = t.GetBlocks()
		}
		if inFlight(t) {
			away, since := agentAway(keys[t.GetTarget()])
			ti.AgentDisconnected = away
			if away && !since.IsZero() {
				ti.DisconnectedSinceUnixNano = since.UnixNano()
			}
		}
		info.Targets = append(info.Targets, ti)
	}
	return info
}

func (a *jobsAPI) Get(_ context.Context, req *rpc.GetJobRequest) (*rpc.JobInfo, error) {
	j, err := a.n.fsm.Job(req.GetJobId())
	if err != nil {
		return nil, stateErr(err)
	}
	targets, err := a.n.fsm.JobTargets(j.GetId())
	if err != nil {
		return nil, stateErr(err)
	}
	keys, err := flightKeys(a.n.fsm, targets)
	if err != nil {
		return nil, stateErr(err)
	}
	return jobInfo(j, targets, keys, req.GetBlocks()), nil
}

func (a *jobsAPI) List(context.Context, *rpc.ListJobsRequest) (*rpc.ListJobsResponse, error) {
	jobs, err := a.n.fsm.Jobs()
	if err != nil {
		return nil, stateErr(err)
	}
	resp := &rpc.ListJobsResponse{}
	for _, j := range jobs {
		resp.Jobs = append(resp.Jobs, jobInfo(j, nil, nil, false))
	}
	return resp, nil
}

// Cancel needs provision on every target of the job. A caller who may not
// view jobs gets one and the same denial whether the job does not exist or
// it may not cancel it, so that it cannot probe job ids.
func (a *jobsAPI) Cancel(ctx context.Context, req *rpc.CancelJobRequest) (*rpc.WriteResponse, error) {
	n := a.n
	seeJobs, err := n.mayView(ctx, "jobs/*")
	if err != nil {
		return nil, err
	}
	// Look the job up in state the leader confirms: writes carry no min
	// index (see readBarrier), and a job submitted a moment ago through
	// another node must be found here too.
	if err := n.syncRead(ctx); err != nil {
		return nil, err
	}
	denied := func() error {
		c, _ := auth.CallerFrom(ctx)
		return status.Errorf(codes.PermissionDenied, "denied: %s may not cancel job %.80q (needs provision on every target of the job)", c.Subject, req.GetJobId())
	}
	j, err := n.fsm.Job(req.GetJobId())
	if err != nil {
		if !seeJobs && errors.Is(err, fsm.ErrNotFound) {
			return nil, denied()
		}
		return nil, stateErr(err)
	}
	targets, err := n.fsm.JobTargets(j.GetId())
	if err != nil {
		return nil, stateErr(err)
	}
	for _, t := range targets {
		if err := n.authz.Require(ctx, events.PrivProvision, "targets/"+t.GetTarget()); err != nil {
			if !seeJobs && status.Code(err) == codes.PermissionDenied {
				return nil, denied()
			}
			return nil, err
		}
	}
	return n.propose(ctx, &events.JobCancelled{JobId: j.GetId(), Reason: req.GetReason()})
}

// Watch sends the job with its targets whenever it changes, and returns
// once the job is finished.
func (a *jobsAPI) Watch(req *rpc.GetJobRequest, stream grpc.ServerStreamingServer[rpc.JobInfo]) error {
	var last *rpc.JobInfo
	for {
		changed := a.n.fsm.Changed()
		info, err := a.Get(stream.Context(), req)
		if err != nil {
			return err
		}
		if last == nil || !proto.Equal(last, info) {
			if err := stream.Send(info); err != nil {
				return err
			}
			last = info
		}
		if !info.GetJobStatus().Active() {
			return nil
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-a.n.ctx.Done():
			return ErrShutdown
		case <-changed:
		}
	}
}

// List returns every registered target with its connection as the log
// records it and its gossip state as this node sees it.
func (a *targetsAPI) List(context.Context, *rpc.ListTargetsRequest) (*rpc.ListTargetsResponse, error) {
	keys, err := a.n.fsm.TargetKeys()
	if err != nil {
		return nil, stateErr(err)
	}
	gossip := map[string]string{}
	for _, m := range a.n.members.Members() {
		if m.Meta.Role == rpc.RoleAgent {
			gossip[m.Name] = gossipState(m.State)
		}
	}
	now := time.Now().UnixNano()
	resp := &rpc.ListTargetsResponse{}
	for _, k := range keys {
		ti := &rpc.TargetInfo{
			Name: k.GetTarget(), Labels: k.GetLabels(), ClaimedLabels: k.GetClaimedLabels(), Node: k.GetNode(),
			Fingerprint: pinned.Fingerprint(k.GetPublicKey()), LastSeenUnixNano: k.GetLastTransitionUnixNano(),
			Gossip: "unknown", Status: "disconnected",
		}
		if g, ok := gossip[rpc.AgentGossipName(k.GetTarget())]; ok {
			ti.Gossip = g
		}
		switch {
		case k.GetRevoked():
			ti.Status = "revoked"
		case k.GetConnected():
			ti.Status = "connected"
			if s := a.n.fleet.get(k.GetTarget()); s != nil {
				ti.LastSeenUnixNano = s.lastSeen.Load()
			} else {
				ti.LastSeenUnixNano = now
			}
		}
		if !k.GetConnected() {
			ti.Node = ""
		}
		resp.Targets = append(resp.Targets, ti)
	}
	return resp, nil
}

func gossipState(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}
