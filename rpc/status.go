package rpc

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the domain of the ErrorInfo details hpt nodes attach to
// statuses that clients branch on.
const ErrorDomain = "hpt.dev"

// ErrorInfo reasons. Clients and nodes branch on these, never on a
// status's message.
const (
	// ReasonNoLeader marks an Unavailable status from a node that has no
	// Raft leader and has already waited out an election for one: asking
	// it again soon will not help, asking another node may.
	ReasonNoLeader = "NO_LEADER"
	// ReasonNotLeader marks a FailedPrecondition status from a node that
	// was asked for leader-only work (Internal) and does not lead.
	ReasonNotLeader = "NOT_LEADER"
	// ReasonShutdown marks an Unavailable status from a node that is
	// shutting down.
	ReasonShutdown = "SHUTTING_DOWN"
)

// ReasonError returns a status of code with msg as its message and an
// ErrorInfo of reason in hpt's domain.
func ReasonError(code codes.Code, reason, msg string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// Reason returns the ErrorInfo reason in hpt's domain that err's status
// carries, or "".
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// NoLeaderError returns the Unavailable status of a node that has no leader,
// with msg as its message.
func NoLeaderError(msg string) error {
	return ReasonError(codes.Unavailable, ReasonNoLeader, msg)
}

// IsNoLeader reports whether err is a node's answer that it has no leader
// (see NoLeaderError).
func IsNoLeader(err error) bool {
	return status.Code(err) == codes.Unavailable && Reason(err) == ReasonNoLeader
}
