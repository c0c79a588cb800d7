package fsm

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/secretvars"
)

// Short names for the statuses of events.proto, the one declaration.
const (
	jobRunning    = events.JobStatus_JOB_STATUS_RUNNING
	jobCancelling = events.JobStatus_JOB_STATUS_CANCELLING

	targetPending    = events.TargetStatus_TARGET_STATUS_PENDING
	targetDispatched = events.TargetStatus_TARGET_STATUS_DISPATCHED
	targetRunning    = events.TargetStatus_TARGET_STATUS_RUNNING
	targetCancelled  = events.TargetStatus_TARGET_STATUS_CANCELLED
	targetSkipped    = events.TargetStatus_TARGET_STATUS_SKIPPED
)

// Key layout for jobs:
//
//	j <job id>                 -> Job
//	J <job id> 0x00 <target>   -> JobTarget
//	A <job id>                 -> empty (the job is active)
const (
	tagJob       = 'j'
	tagJobTarget = 'J'
	tagActiveJob = 'A'
)

// upgradeRecord brings a record written before the status enums to the
// current form: the status read from its name, the name dropped, so that
// the record is rewritten without it. The names were always valid
// statuses; one that was not would read as unknown.
func upgradeRecord(m proto.Message) {
	switch r := m.(type) {
	case *Job:
		r.Status = events.JobStatusOf(r.GetStatus(), r.GetLegacyStatus())
		r.LegacyStatus = ""
	case *JobTarget:
		r.Status = events.TargetStatusOf(r.GetStatus(), r.GetLegacyStatus())
		r.LegacyStatus = ""
	}
}

func (t *txn) applyJob(p proto.Message) *Rejection {
	switch p := p.(type) {
	case *events.JobSubmitted:
		return t.submitJob(p)
	case *events.JobBatchStarted:
		return t.releaseTargets(p)
	case *events.JobTargetDispatched:
		return t.targetStarted(p)
	case *events.JobTargetFinished:
		return t.targetFinished(p)
	case *events.JobFinished:
		return t.finishJob(p)
	case *events.JobCancelled:
		return t.cancelJob(p)
	}
	return t.reject(ErrInvalid, "not a job event")
}

func (t *txn) job(id string) (*Job, *Rejection) {
	var j Job
	if !t.get(key(tagJob, id), &j) {
		return nil, t.reject(ErrNotFound, "job %q does not exist", id)
	}
	return &j, nil
}

func (t *txn) jobTarget(job, target string) (*JobTarget, *Rejection) {
	var jt JobTarget
	if !t.get(key(tagJobTarget, job, target), &jt) {
		return nil, t.reject(ErrNotFound, "target %q is not part of job %q", target, job)
	}
	return &jt, nil
}

// Count returns how many of j's targets are in status s.
func (j *Job) Count(s events.TargetStatus) uint32 { return j.GetCounts()[s.Name()] }

// setTargetStatus moves a target to status, keeping the job's counts.
func (t *txn) setTargetStatus(j *Job, jt *JobTarget, status events.TargetStatus) {
	if j.Counts == nil {
		j.Counts = map[string]uint32{}
	}
	from := jt.GetStatus().Name()
	if j.Counts[from] > 0 {
		j.Counts[from]--
	}
	if j.Counts[from] == 0 {
		delete(j.Counts, from)
	}
	j.Counts[status.Name()]++
	jt.Status = status
	t.put(key(tagJobTarget, jt.JobId, jt.Target), jt)
}

func (t *txn) submitJob(p *events.JobSubmitted) *Rejection {
	if err := events.CheckName("job", p.GetJobId()); err != nil {
		return t.reject(ErrInvalid, "%v", err)
	}
	if t.has(key(tagJob, p.GetJobId())) {
		return t.reject(ErrExists, "job %q already exists", p.GetJobId())
	}
	if len(p.GetConfig()) == 0 {
		return t.reject(ErrInvalid, "job %q: config is empty", p.GetJobId())
	}
	if len(p.GetTargets()) == 0 {
		return t.reject(ErrInvalid, "job %q: no targets", p.GetJobId())
	}
	if p.GetTimeoutNanos() <= 0 {
		return t.reject(ErrInvalid, "job %q: timeout must be positive", p.GetJobId())
	}
	if p.GetMaxFailures() < -1 {
		return t.reject(ErrInvalid, "job %q: max_failures must be -1 (no limit) or more", p.GetJobId())
	}
	if p.GetConnectTimeoutNanos() < 0 {
		return t.reject(ErrInvalid, "job %q: connect_timeout must not be negative", p.GetJobId())
	}
	if sv := p.GetSecretVars(); sv != nil {
		if err := secretvars.CheckNames(sv.GetNames()); err != nil {
			return t.reject(ErrInvalid, "job %q: %v", p.GetJobId(), err)
		}
		if len(sv.GetNames()) == 0 || len(sv.GetDigest()) != sha256.Size {
			return t.reject(ErrInvalid, "job %q: secret_vars: want names and a %d-byte digest", p.GetJobId(), sha256.Size)
		}
	}
	seen := map[string]bool{}
	for _, name := range p.GetTargets() {
		if seen[name] {
			return t.reject(ErrInvalid, "job %q: target %q listed twice", p.GetJobId(), name)
		}
		seen[name] = true
		var tk TargetKey
		if !t.get(key(tagTarget, name), &tk) {
			return t.reject(ErrNotFound, "job %q: target %q has no key", p.GetJobId(), name)
		}
		if tk.GetRevoked() {
			return t.reject(ErrConflict, "job %q: target %q is revoked", p.GetJobId(), name)
		}
	}
	batch := p.GetBatchSize()
	if batch == 0 || int(batch) > len(p.GetTargets()) {
		batch = uint32(len(p.GetTargets()))
	}
	j := &Job{
		Id: p.GetJobId(), Name: p.GetName(), Submitted: t.origin(), Config: p.GetConfig(), Files: p.GetFiles(),
		TargetGlob: p.GetTargetGlob(), Selector: p.GetSelector(), BatchSize: batch,
		MaxFailures: p.GetMaxFailures(), TimeoutNanos: p.GetTimeoutNanos(), Vars: p.GetVars(), DryRun: p.GetDryRun(),
		ConnectTimeoutNanos: p.GetConnectTimeoutNanos(), SecretVars: p.GetSecretVars(), Status: jobRunning, Counts: map[string]uint32{targetPending.Name(): uint32(len(p.GetTargets()))},
	}
	for i, name := range p.GetTargets() {
		t.put(key(tagJobTarget, j.Id, name), &JobTarget{JobId: j.Id, Target: name, Status: targetPending, Position: uint32(i)})
	}
	t.put(key(tagJob, j.Id), j)
	t.jobActive(j.Id, true)
	return nil
}

// jobActive notes a job entering or leaving the active set: its key in the
// state, and the in-memory set once the batch is committed.
func (t *txn) jobActive(id string, active bool) {
	if active {
		t.set(key(tagActiveJob, id), nil)
	} else {
		t.del(key(tagActiveJob, id))
	}
	if t.jobs != nil {
		*t.jobs = append(*t.jobs, jobChange{id: id, active: active})
	}
}

func (t *txn) releaseTargets(p *events.JobBatchStarted) *Rejection {
	j, rej := t.job(p.GetJobId())
	if rej != nil {
		return rej
	}
	if j.GetStatus() != jobRunning {
		return t.reject(ErrConflict, "job %q is %s", j.GetId(), j.GetStatus().Name())
	}
	if len(p.GetTargets()) == 0 {
		return t.reject(ErrInvalid, "job %q: batch %d releases no targets", j.GetId(), p.GetBatch())
	}
	var jts []*JobTarget
	for _, name := range p.GetTargets() {
		jt, rej := t.jobTarget(j.GetId(), name)
		if rej != nil {
			return rej
		}
		if jt.GetStatus() != targetPending {
			return t.reject(ErrConflict, "job %q: target %q is %s, not pending", j.GetId(), name, jt.GetStatus().Name())
		}
		jts = append(jts, jt)
	}
	inFlight := j.Count(targetDispatched) + j.Count(targetRunning)
	if inFlight+uint32(len(jts)) > j.GetBatchSize() {
		return t.reject(ErrConflict, "job %q: releasing %d targets would put %d in flight, over the batch size %d", j.GetId(), len(jts), inFlight+uint32(len(jts)), j.GetBatchSize())
	}
	for _, jt := range jts {
		jt.Batch = p.GetBatch()
		jt.ReleasedUnixNano = t.ev.GetTimeUnixNano()
		t.setTargetStatus(j, jt, targetDispatched)
	}
	j.Batches = max(j.Batches, p.GetBatch())
	t.put(key(tagJob, j.Id), j)
	return nil
}

func (t *txn) targetStarted(p *events.JobTargetDispatched) *Rejection {
	j, rej := t.job(p.GetJobId())
	if rej != nil {
		return rej
	}
	jt, rej := t.jobTarget(p.GetJobId(), p.GetTarget())
	if rej != nil {
		return rej
	}
	// Only a running job starts targets: after job_cancelled nothing of the
	// job starts, whatever a node or agent that had not seen the cancel yet
	// sent. Every replica refuses the same start.
	if j.GetStatus() != jobRunning {
		return t.reject(ErrConflict, "job %q is %s: target %q not started", j.GetId(), j.GetStatus().Name(), jt.GetTarget())
	}
	if jt.GetStatus() != targetDispatched {
		return t.reject(ErrConflict, "job %q: target %q is %s, not dispatched", j.GetId(), jt.GetTarget(), jt.GetStatus().Name())
	}
	jt.Node = p.GetNode()
	jt.StartedUnixNano = t.ev.GetTimeUnixNano()
	t.setTargetStatus(j, jt, targetRunning)
	t.put(key(tagJob, j.Id), j)
	return nil
}

func (t *txn) targetFinished(p *events.JobTargetFinished) *Rejection {
	if !p.GetTargetStatus().Final() {
		return t.reject(ErrInvalid, "job %q: %q is not a target outcome", p.GetJobId(), statusWritten(p.GetTargetStatus(), p.GetStatus()))
	}
	j, rej := t.job(p.GetJobId())
	if rej != nil {
		return rej
	}
	jt, rej := t.jobTarget(p.GetJobId(), p.GetTarget())
	if rej != nil {
		return rej
	}
	if jt.GetStatus().Final() {
		// The first outcome stands: a late result after a timeout, or a
		// result reported again after a reconnect, changes nothing.
		return t.reject(ErrConflict, "job %q: target %q already finished (%s)", j.GetId(), jt.GetTarget(), jt.GetStatus().Name())
	}
	jt.Blocks = p.GetBlocks()
	jt.Error = p.GetError()
	jt.FinishedUnixNano = t.ev.GetTimeUnixNano()
	t.setTargetStatus(j, jt, p.GetTargetStatus())
	t.put(key(tagJob, j.Id), j)
	return nil
}

// statusWritten is how a refused status reads in the rejection: the name
// an event from before the enums carried, or the enum's name.
func statusWritten[S interface{ Name() string }](s S, name string) string {
	if name != "" {
		return name
	}
	return s.Name()
}

func (t *txn) finishJob(p *events.JobFinished) *Rejection {
	if !p.GetJobStatus().Outcome() {
		return t.reject(ErrInvalid, "job %q: %q is not a job outcome", p.GetJobId(), statusWritten(p.GetJobStatus(), p.GetStatus()))
	}
	j, rej := t.job(p.GetJobId())
	if rej != nil {
		return rej
	}
	if !j.GetStatus().Active() {
		return t.reject(ErrConflict, "job %q is already %s", j.GetId(), j.GetStatus().Name())
	}
	if n := j.Count(targetDispatched) + j.Count(targetRunning); n > 0 {
		return t.reject(ErrConflict, "job %q still has %d targets in flight", j.GetId(), n)
	}
	for _, k := range t.keysWithPrefix(key(tagJobTarget, j.GetId(), "")) {
		var jt JobTarget
		if t.get(k, &jt) && jt.GetStatus() == targetPending {
			t.setTargetStatus(j, &jt, targetSkipped)
		}
	}
	j.Status = p.GetJobStatus()
	j.Finished = t.origin()
	t.put(key(tagJob, j.Id), j)
	t.jobActive(j.Id, false)
	return nil
}

func (t *txn) cancelJob(p *events.JobCancelled) *Rejection {
	j, rej := t.job(p.GetJobId())
	if rej != nil {
		return rej
	}
	if j.GetStatus() != jobRunning {
		return t.reject(ErrConflict, "job %q is %s", j.GetId(), j.GetStatus().Name())
	}
	// Targets that have not started end here: pending ones, and released
	// ones whose start (job_target_dispatched) is not in the log. The log
	// refuses their start from now on, and agents run a job only once its
	// start is recorded, so none of them runs. Running targets finish
	// with their results (their agents are told to stop) or time out.
	for _, k := range t.keysWithPrefix(key(tagJobTarget, j.GetId(), "")) {
		var jt JobTarget
		if t.get(k, &jt) && (jt.GetStatus() == targetPending || jt.GetStatus() == targetDispatched) {
			t.setTargetStatus(j, &jt, targetCancelled)
		}
	}
	j.Status = jobCancelling
	j.CancelReason = p.GetReason()
	t.put(key(tagJob, j.Id), j)
	return nil
}

// Job returns a job.
func (f *FSM) Job(id string) (*Job, error) {
	var j Job
	found, err := f.getRecord(key(tagJob, id), &j)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return &j, nil
}

// Jobs lists every job, oldest first.
func (f *FSM) Jobs() ([]*Job, error) {
	jobs, err := scanRecords[Job](f, []byte{tagJob})
	if err != nil {
		return nil, err
	}
	sortJobs(jobs)
	return jobs, nil
}

// sortJobs orders jobs oldest first.
func sortJobs(jobs []*Job) {
	slices.SortFunc(jobs, func(a, b *Job) int {
		return cmp.Compare(a.GetSubmitted().GetIndex(), b.GetSubmitted().GetIndex())
	})
}

// JobTargets lists a job's targets in name order.
func (f *FSM) JobTargets(id string) ([]*JobTarget, error) {
	return scanRecords[JobTarget](f, key(tagJobTarget, id, ""))
}

// SortBySubmission orders a job's targets as they were submitted.
func SortBySubmission(targets []*JobTarget) {
	slices.SortStableFunc(targets, func(a, b *JobTarget) int { return cmp.Compare(a.GetPosition(), b.GetPosition()) })
}
