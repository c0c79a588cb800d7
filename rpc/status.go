package rpc

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the domain of the ErrorInfo details hpt nodes attach to
// statuses that clients branch on.
const ErrorDomain = "hpt.dev"

// ReasonNoLeader marks an Unavailable status from a node that has no Raft
// leader and has already waited out an election for one: asking it again
// soon will not help, asking another node may.
const ReasonNoLeader = "NO_LEADER"

// NoLeaderError returns the Unavailable status of a node that has no leader,
// with msg as its message.
func NoLeaderError(msg string) error {
	st := status.New(codes.Unavailable, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonNoLeader, Domain: ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// IsNoLeader reports whether err is a node's answer that it has no leader
// (see NoLeaderError).
func IsNoLeader(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain && info.GetReason() == ReasonNoLeader {
			return true
		}
	}
	return false
}
