package events

import (
	"fmt"
	"strings"
	"sync"
)

// The names of job and target statuses are what scripts read (SPEC section
// 10: "ok", "changed", "unreachable", ...): the lower-case suffix of each
// enum value, so the enums in events.proto stay the one declaration.

// Name returns the status's name ("running", "done"); "job_status_N" for a
// value this binary does not know.
func (s JobStatus) Name() string { return statusName(JobStatus_name, "JOB_STATUS_", int32(s)) }

// Name returns the status's name ("ok", "changed", "unreachable");
// "target_status_N" for a value this binary does not know.
func (s TargetStatus) Name() string {
	return statusName(TargetStatus_name, "TARGET_STATUS_", int32(s))
}

func statusName(names map[int32]string, prefix string, v int32) string {
	if s, ok := names[v]; ok {
		return strings.ToLower(strings.TrimPrefix(s, prefix))
	}
	return fmt.Sprintf("%s%d", strings.ToLower(prefix), v)
}

var (
	jobStatusByName = sync.OnceValue(func() map[string]JobStatus {
		return byName(JobStatus_name, func(v int32) JobStatus { return JobStatus(v) })
	})
	targetStatusByName = sync.OnceValue(func() map[string]TargetStatus {
		return byName(TargetStatus_name, func(v int32) TargetStatus { return TargetStatus(v) })
	})
)

func byName[S interface{ Name() string }](names map[int32]string, conv func(int32) S) map[string]S {
	m := make(map[string]S, len(names))
	for v := range names {
		if v != 0 {
			m[conv(v).Name()] = conv(v)
		}
	}
	return m
}

// ParseJobStatus returns the job status named name; "unknown" and names of
// no status are refused.
func ParseJobStatus(name string) (JobStatus, error) {
	if s, ok := jobStatusByName()[name]; ok {
		return s, nil
	}
	return JobStatus_JOB_STATUS_UNKNOWN, fmt.Errorf("%q is not a job status", name)
}

// ParseTargetStatus returns the target status named name; "unknown" and
// names of no status are refused.
func ParseTargetStatus(name string) (TargetStatus, error) {
	if s, ok := targetStatusByName()[name]; ok {
		return s, nil
	}
	return TargetStatus_TARGET_STATUS_UNKNOWN, fmt.Errorf("%q is not a target status", name)
}

// JobStatusOf returns s, or when s is unknown the status named name: how a
// message from a build before the enums is read, which carried the name
// alone. A name of no status gives unknown.
func JobStatusOf(s JobStatus, name string) JobStatus {
	if s != JobStatus_JOB_STATUS_UNKNOWN || name == "" {
		return s
	}
	s, _ = ParseJobStatus(name)
	return s
}

// TargetStatusOf is JobStatusOf for target statuses.
func TargetStatusOf(s TargetStatus, name string) TargetStatus {
	if s != TargetStatus_TARGET_STATUS_UNKNOWN || name == "" {
		return s
	}
	s, _ = ParseTargetStatus(name)
	return s
}

// Active reports whether the scheduler still has work for a job in s:
// running or cancelling.
func (s JobStatus) Active() bool {
	return s == JobStatus_JOB_STATUS_RUNNING || s == JobStatus_JOB_STATUS_CANCELLING
}

// Outcome reports whether s is how a job ends (job_finished).
func (s JobStatus) Outcome() bool {
	switch s {
	case JobStatus_JOB_STATUS_DONE, JobStatus_JOB_STATUS_FAILED, JobStatus_JOB_STATUS_STOPPED, JobStatus_JOB_STATUS_CANCELLED:
		return true
	}
	return false
}

// Final reports whether s is an outcome: the target will not change again.
func (s TargetStatus) Final() bool {
	switch s {
	case TargetStatus_TARGET_STATUS_OK, TargetStatus_TARGET_STATUS_CHANGED, TargetStatus_TARGET_STATUS_FAILED,
		TargetStatus_TARGET_STATUS_UNREACHABLE, TargetStatus_TARGET_STATUS_REFUSED,
		TargetStatus_TARGET_STATUS_CANCELLED, TargetStatus_TARGET_STATUS_SKIPPED:
		return true
	}
	return false
}

// Failure reports whether the outcome s counts against a job's
// max_failures.
func (s TargetStatus) Failure() bool {
	return s == TargetStatus_TARGET_STATUS_FAILED || s == TargetStatus_TARGET_STATUS_UNREACHABLE ||
		s == TargetStatus_TARGET_STATUS_REFUSED
}

// InFlight reports whether a target in s is released and not yet finished.
func (s TargetStatus) InFlight() bool {
	return s == TargetStatus_TARGET_STATUS_DISPATCHED || s == TargetStatus_TARGET_STATUS_RUNNING
}

// writeLegacyStatus sets the status names of a payload from its enums, for
// nodes of builds before the enums that read the names alone. New calls it
// on every payload it encodes.
func writeLegacyStatus(m any) {
	switch p := m.(type) {
	case *JobTargetFinished:
		if p.TargetStatus != nil {
			p.Status = p.GetTargetStatus().Name()
		}
	case *JobFinished:
		if p.JobStatus != nil {
			p.Status = p.GetJobStatus().Name()
		}
	}
}

// readLegacyStatus fills the status enums of a payload written before them
// from their names, and refuses a payload whose enum and name disagree
// (no node writes one). A name of no status, and an enum value newer than
// this binary, are left for the state machine to refuse, as it refuses any
// status that is not an outcome.
func readLegacyStatus(m any) error {
	switch p := m.(type) {
	case *JobTargetFinished:
		if p.TargetStatus == nil {
			if s := TargetStatusOf(0, p.GetStatus()); s != TargetStatus_TARGET_STATUS_UNKNOWN {
				p.TargetStatus = s.Enum()
			}
		} else if known(TargetStatus_name, int32(p.GetTargetStatus())) && p.GetStatus() != "" && p.GetStatus() != p.GetTargetStatus().Name() {
			return fmt.Errorf("%w: job_target_finished: status %q and target_status %s disagree", ErrMalformed, p.GetStatus(), p.GetTargetStatus().Name())
		}
	case *JobFinished:
		if p.JobStatus == nil {
			if s := JobStatusOf(0, p.GetStatus()); s != JobStatus_JOB_STATUS_UNKNOWN {
				p.JobStatus = s.Enum()
			}
		} else if known(JobStatus_name, int32(p.GetJobStatus())) && p.GetStatus() != "" && p.GetStatus() != p.GetJobStatus().Name() {
			return fmt.Errorf("%w: job_finished: status %q and job_status %s disagree", ErrMalformed, p.GetStatus(), p.GetJobStatus().Name())
		}
	}
	return nil
}

func known(names map[int32]string, v int32) bool {
	_, ok := names[v]
	return ok
}

// jsonStatus leaves a payload's statuses for its JSON form as they were
// before the enums: the name in status, the enum left out.
func jsonStatus(m any) {
	writeLegacyStatus(m)
	switch p := m.(type) {
	case *JobTargetFinished:
		p.TargetStatus = nil
	case *JobFinished:
		p.JobStatus = nil
	}
}
