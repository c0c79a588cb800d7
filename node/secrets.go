package node

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hashicorp/raft"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/internal/secretvars"
	"github.com/hpt-dev/hpt/rpc"
)

// Secret vars (hpt job run --secret-var) never enter the log, so the log
// cannot carry them from the node that accepts a job to the node that
// dispatches it (the one holding the target's stream, told by whichever
// node leads at the time). The accepting node therefore hands them, before
// it proposes job_submitted, to every member of the Raft configuration
// over node-to-node TLS (Internal.StashSecrets), and the submission fails
// unless a quorum of voters holds them. Each node keeps them in memory
// only, in its secretStash, checked against their digest, until the job
// is final (secretsLoop). A node that lacks them when it must dispatch (it
// restarted since, joined later, or was unreachable at submission) ends
// the target failed rather than run it without them (docs/architecture.md).

const (
	// maxStashBytes bounds the secret vars a node holds for all jobs
	// together; a submission that would pass it is refused.
	maxStashBytes = 32 << 20
	// stashOrphanAfter is how long secret vars of a job the state does not
	// know are kept: the submission that stashed them failed after, or was
	// a retry answered with the first attempt's job.
	stashOrphanAfter = 10 * time.Minute
	// stashTimeout bounds handing secret vars to the members.
	stashTimeout = 5 * time.Second
	// stashGrace is how much longer a submission waits for the members
	// that have not answered once a quorum holds its secret vars.
	stashGrace = 500 * time.Millisecond
	// secretsSweep is how often finished jobs' secret vars are dropped at
	// the latest.
	secretsSweep = 2 * time.Second
)

// errStashFull: this node holds as many secret vars as it may.
var errStashFull = errors.New("secret vars store full")

// stashed is one job's secret vars as a node holds them.
type stashed struct {
	key, digest []byte
	values      map[string]string
	size        int
	at          time.Time
}

// secretStash holds jobs' secret vars in memory, by job id.
type secretStash struct {
	mu   sync.Mutex
	jobs map[string]*stashed
	size int
	max  int
}

func newSecretStash(max int) *secretStash {
	return &secretStash{jobs: map[string]*stashed{}, max: max}
}

// put stores a job's secret vars after checking them and their digest; a
// second put of the same job replaces the first.
func (s *secretStash) put(job string, key, digest []byte, values map[string]string, now time.Time) error {
	if err := events.CheckName("job", job); err != nil {
		return err
	}
	if err := secretvars.Check(values, nil); err != nil {
		return err
	}
	if len(values) == 0 {
		return fmt.Errorf("%w: secret_vars: none", secretvars.ErrInvalid)
	}
	if !secretvars.Verify(key, job, values, digest) {
		return fmt.Errorf("%w: secret_vars of job %s do not match their digest", secretvars.ErrInvalid, job)
	}
	size := len(key) + len(digest)
	for k, v := range values {
		size += len(k) + len(v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.jobs[job]
	if old != nil {
		s.size -= old.size
	}
	if s.size+size > s.max {
		if old != nil {
			s.size += old.size
		}
		return fmt.Errorf("%w: %d bytes held, at most %d", errStashFull, s.size, s.max)
	}
	s.jobs[job] = &stashed{key: key, digest: digest, values: values, size: size, at: now}
	s.size += size
	return nil
}

func (s *secretStash) get(job string) *stashed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[job]
}

func (s *secretStash) drop(job string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.jobs[job]; st != nil {
		s.size -= st.size
		delete(s.jobs, job)
	}
}

// held returns the ids of the jobs held and when each was stashed.
func (s *secretStash) held() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time, len(s.jobs))
	for id, st := range s.jobs {
		out[id] = st.at
	}
	return out
}

// HeldSecretJobs returns how many jobs' secret vars this node holds in
// memory (for tests and metrics; never the values).
func (n *Node) HeldSecretJobs() int { return len(n.secrets.held()) }

// sweep drops the secret vars of jobs that are final, and of jobs the
// state has not known for stashOrphanAfter.
func (n *Node) sweepSecrets(now time.Time) {
	for id, at := range n.secrets.held() {
		j, err := n.fsm.Job(id)
		switch {
		case errors.Is(err, fsm.ErrNotFound):
			if now.Sub(at) > stashOrphanAfter {
				n.secrets.drop(id)
			}
		case err != nil:
			// Try again on the next sweep.
		case !j.GetStatus().Active():
			n.secrets.drop(id)
		}
	}
}

// secretsLoop sweeps the stash on state changes (at most once a sweep
// period) and every period, until the node stops.
func (n *Node) secretsLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(secretsSweep)
	defer tick.Stop()
	for {
		changed := n.fsm.Changed()
		select {
		case <-n.ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
		if len(n.secrets.held()) > 0 {
			n.sweepSecrets(time.Now())
		}
		// Rate limit: a busy log changes the state all the time.
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// stashSecrets hands a job's secret vars to every member of the Raft
// configuration, this node included, and succeeds once a quorum of voters
// holds them. Nothing here puts a value into an error.
func (n *Node) stashSecrets(ctx context.Context, job string, key, digest []byte, values map[string]string) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return unavailable(fmt.Sprintf("secret vars: read the configuration: %v", err))
	}
	servers := cf.Configuration().Servers
	voters := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	// The calls outlive the submission by up to stashTimeout: once a
	// quorum holds the values the submission waits only stashGrace more,
	// so that a dead member costs it little, while a slow one still gets
	// them. Each call ends by stashTimeout or the node's stop.
	cctx, cancel := context.WithTimeout(n.ctx, stashTimeout)
	type result struct {
		name  string
		voter bool
		err   error
	}
	results := make(chan result, len(servers))
	var calls sync.WaitGroup
	req := &rpc.StashSecretsRequest{JobId: job, Key: key, Digest: digest, Values: values}
	for _, s := range servers {
		calls.Add(1)
		go func() {
			defer calls.Done()
			r := result{name: string(s.ID), voter: s.Suffrage == raft.Voter}
			if string(s.ID) == n.cfg.Name {
				r.err = n.secrets.put(job, key, digest, values, time.Now())
			} else if conn, err := n.peers.get(string(s.Address)); err != nil {
				r.err = err
			} else {
				_, r.err = rpc.NewInternalClient(conn).StashSecrets(cctx, req)
			}
			results <- r
		}()
	}
	go func() {
		calls.Wait()
		cancel()
	}()
	held, quorum := 0, voters/2+1
	var failed []string
	var grace <-chan time.Time
wait:
	for range servers {
		select {
		case r := <-results:
			switch {
			case r.err == nil && r.voter:
				held++
			case r.err != nil:
				if errors.Is(r.err, errStashFull) || status.Code(r.err) == codes.ResourceExhausted {
					return status.Errorf(codes.ResourceExhausted, "secret vars: node %s holds as many secret vars of running jobs as it may (%d MiB); wait for jobs to end", r.name, maxStashBytes>>20)
				}
				failed = append(failed, fmt.Sprintf("%s: %v", r.name, status.Convert(r.err).Message()))
			}
			if held >= quorum && grace == nil {
				grace = time.After(stashGrace)
			}
		case <-grace:
			failed = append(failed, "others: no answer yet")
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	if len(failed) > 0 {
		n.log.Warn("secret vars not handed to every node; targets whose agents are connected there will fail", "job", job, "failed", failed)
	}
	if held < quorum {
		n.secrets.drop(job)
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		return unavailable(fmt.Sprintf("secret vars: %d of %d voters hold them, %d needed: %v", held, voters, quorum, failed))
	}
	return nil
}

// StashSecrets keeps a job's secret vars in memory, for a dispatch of the
// job that this node may be asked to make.
func (s *internalServer) StashSecrets(_ context.Context, req *rpc.StashSecretsRequest) (*rpc.StashSecretsResponse, error) {
	err := s.n.secrets.put(req.GetJobId(), req.GetKey(), req.GetDigest(), req.GetValues(), time.Now())
	switch {
	case errors.Is(err, errStashFull):
		return nil, status.Error(codes.ResourceExhausted, err.Error())
	case err != nil:
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &rpc.StashSecretsResponse{}, nil
}

// dispatchSecrets returns what a dispatch of job j to target carries of
// its secret vars: nil if it has none; names and digest, with the values
// when this node holds them. held reports whether it does.
func (n *Node) dispatchSecrets(j *fsm.Job) (sv *rpc.SecretVars, held bool) {
	js := j.GetSecretVars()
	if len(js.GetNames()) == 0 {
		return nil, true
	}
	sv = &rpc.SecretVars{Names: js.GetNames(), Digest: js.GetDigest()}
	st := n.secrets.get(j.GetId())
	if st == nil || !hmac.Equal(st.digest, js.GetDigest()) {
		return sv, false
	}
	sv.Key, sv.Values = st.key, st.values
	return sv, true
}

// failNoSecrets ends a target that has not started failed, because this
// node, which must dispatch it, lacks the job's secret vars.
func (n *Node) failNoSecrets(ctx context.Context, jobID, target string) error {
	msg := fmt.Sprintf("secret vars of job %s are not held by node %s (restarted since submission?); resubmit", jobID, n.cfg.Name)
	n.log.Warn("target failed: secret vars not held", "job", jobID, "target", target)
	_, err := n.proposeTolerant(ctx, n.nodeActor(), "nosecrets/"+jobID+"/"+target, &events.JobTargetFinished{
		JobId: jobID, Target: target, TargetStatus: events.TargetStatus_TARGET_STATUS_FAILED.Enum(), Error: msg,
	})
	return err
}

// redactResult takes the values of a job's secret vars out of a target's
// result, if this node holds them: the agent does so too, and this is for
// an agent that did not.
func (n *Node) redactResult(ev *events.JobTargetFinished) {
	st := n.secrets.get(ev.GetJobId())
	if st == nil {
		return
	}
	r := secretvars.NewRedactor(st.values)
	r.Blocks(ev.GetBlocks())
	ev.Error = r.String(ev.GetError())
}
