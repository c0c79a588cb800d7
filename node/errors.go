package node

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
)

// Errors callers branch on. Inside the node, the outcome of a write or a
// read point is a Go error that wraps one of these or is an *fsm.Rejection;
// it becomes a gRPC status only on its way out (errorStatus).
var (
	// ErrNotLeader: this node was asked for leader-only work and does not
	// lead, or lost its leadership before the work committed. A new
	// attempt at the new leader may succeed.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: this node knows no leader, or has not heard from it for
	// an election timeout.
	ErrNoLeader = errors.New("no leader")
	// ErrShutdown: this node is shutting down.
	ErrShutdown = errors.New("node is shutting down")
	// ErrUnavailable: this node cannot serve the call now (the leader is
	// unreachable or not ready, a commit failed, this node is behind); a
	// new attempt, or another node, may succeed.
	ErrUnavailable = errors.New("unavailable")
)

// kindError is an error of one of the kinds above with a message of its
// own: its text is the message alone, so that marking an error with its
// kind changes no text a client reads.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func unavailable(msg string) error { return &kindError{ErrUnavailable, msg} }

// errLeaderNotReady refuses what a new leader can do only once it has
// applied everything committed before its term: consistent reads, and
// writes whose token it must check.
var errLeaderNotReady = unavailable("leader is still applying its predecessor's log")

// leaderlessError is ErrNoLeader from a node that has waited out an
// election for a leader (awaitLeader). It leaves the node with
// rpc.ReasonNoLeader, on which the client stops asking nodes that have no
// leader; a plain ErrNoLeader does not, since a leader may be elected in a
// moment.
type leaderlessError struct{ msg string }

func (e *leaderlessError) Error() string { return e.msg }
func (e *leaderlessError) Unwrap() error { return ErrNoLeader }

// retryable reports whether a write that failed with err may succeed if
// this node tries again, perhaps at a new leader. A refusal is never
// retried, whatever its message says: an *fsm.Rejection wraps only its
// kind.
func retryable(err error) bool {
	if errors.Is(err, ErrShutdown) {
		return false
	}
	return errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrUnavailable)
}

// tolerable reports a rejection of an event that the state has already
// moved past (a job cancelled, a result recorded, a target gone): for the
// node's own bookkeeping writes that is not a failure.
func tolerable(err error) bool {
	return errors.Is(err, fsm.ErrConflict) || errors.Is(err, fsm.ErrNotFound)
}

// errorStatus is the one place where an error inside the node becomes the
// gRPC status a caller sees; the interceptors below apply it to every
// call's answer. A status passes unchanged: a refusal a handler or
// interceptor made (bad input, denied), or a peer's answer relayed. A
// plain error becomes Unknown, as gRPC makes it.
func errorStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	var leaderless *leaderlessError
	var rej *fsm.Rejection
	switch {
	case errors.As(err, &leaderless):
		return rpc.NoLeaderError(err.Error())
	case errors.Is(err, ErrShutdown):
		return rpc.ReasonError(codes.Unavailable, rpc.ReasonShutdown, err.Error())
	case errors.Is(err, ErrNotLeader):
		return rpc.ReasonError(codes.FailedPrecondition, rpc.ReasonNotLeader, err.Error())
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.As(err, &rej):
		return rejectionStatus(rej)
	case errors.Is(err, auth.ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, auth.ErrDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return err
}

// rejectionStatus maps a state machine rejection to a gRPC status.
func rejectionStatus(r *fsm.Rejection) error {
	code := codes.FailedPrecondition
	switch {
	case errors.Is(r, fsm.ErrNotFound):
		code = codes.NotFound
	case errors.Is(r, fsm.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(r, fsm.ErrInvalid):
		code = codes.InvalidArgument
	}
	return status.Error(code, r.Msg)
}

// stateErr maps a read error to a status.
func stateErr(err error) error {
	if errors.Is(err, fsm.ErrNotFound) {
		return status.Error(codes.NotFound, err.Error())
	}
	if errors.Is(err, fsm.ErrClosed) {
		return errorStatus(ErrShutdown)
	}
	return status.Errorf(codes.Internal, "read state: %v", err)
}

// statusUnary and statusStream, the outermost interceptors, apply
// errorStatus to what every call returns.
func statusUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, errorStatus(err)
}

func statusStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return errorStatus(handler(srv, ss))
}
