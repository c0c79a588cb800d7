package node

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
)

// A refusal by the state machine is never retried, whatever its message
// says: not on the leader, and not on a follower that the leader told
// through Internal.ApplyBatch. (Retries used to be decided by comparing a
// status's message with "not the leader".)
func TestRefusalReadingNotLeaderIsNotRetried(t *testing.T) {
	rej := &fsm.Rejection{Kind: fsm.ErrConflict, Msg: ErrNotLeader.Error()}
	if retryable(rej) {
		t.Fatal("a rejection reading \"not the leader\" is retried on the leader")
	}
	_, forwarded := decodeResult(encodeResult(nil, rej))
	if retryable(forwarded) {
		t.Fatalf("a forwarded rejection reading \"not the leader\" (%v) is retried", forwarded)
	}
	if !errors.As(forwarded, new(*fsm.Rejection)) || !tolerable(forwarded) {
		t.Fatalf("forwarded rejection is %#v, want the conflict rejection", forwarded)
	}
	// The client sees it as before: FailedPrecondition with its message,
	// and no NOT_LEADER reason.
	st := errorStatus(forwarded)
	if status.Code(st) != codes.FailedPrecondition || status.Convert(st).Message() != ErrNotLeader.Error() || rpc.Reason(st) != "" {
		t.Fatalf("client sees %v (reason %q), want FailedPrecondition %q", st, rpc.Reason(st), ErrNotLeader.Error())
	}
	// A leader that does not lead is retried.
	_, lost := decodeResult(encodeResult(nil, commitError(raft.ErrLeadershipLost)))
	if !retryable(lost) || !errors.Is(lost, ErrNotLeader) {
		t.Fatalf("a forwarded lost leadership (%v) is not retried", lost)
	}
}

// Every kind of failure a leader reports through ApplyBatch reads back on
// the forwarding node as the same decision and the same client status.
func TestApplyResultRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		retry bool
	}{
		{"not leader", fmt.Errorf("%w: leadership lost", ErrNotLeader), true},
		{"no leader", ErrNoLeader, true},
		{"shutdown", ErrShutdown, false},
		{"leader not ready", errLeaderNotReady, true},
		{"commit failed", unavailable("commit: timed out enqueuing operation"), true},
		{"not found", &fsm.Rejection{Kind: fsm.ErrNotFound, Msg: "user \"bob\" does not exist"}, false},
		{"exists", &fsm.Rejection{Kind: fsm.ErrExists, Msg: "user \"bob\" already exists"}, false},
		{"invalid", &fsm.Rejection{Kind: fsm.ErrInvalid, Msg: "bad name"}, false},
		{"conflict", &fsm.Rejection{Kind: fsm.ErrConflict, Msg: "token x is already revoked"}, false},
		{"unauthenticated", fmt.Errorf("token: %w", auth.ErrUnauthenticated), false},
		{"denied", &kindError{auth.ErrDenied, "token x belongs to user:a, not to user:b"}, false},
		{"malformed", status.Error(codes.InvalidArgument, "decode event: truncated"), false},
	}
	for _, tt := range tests {
		_, got := decodeResult(encodeResult(nil, tt.err))
		if retryable(tt.err) != tt.retry || retryable(got) != tt.retry {
			t.Errorf("%s: retryable %v on the leader, %v forwarded; want %v", tt.name, retryable(tt.err), retryable(got), tt.retry)
		}
		want, have := status.Convert(errorStatus(tt.err)), status.Convert(errorStatus(got))
		if want.Code() != have.Code() || rpc.Reason(want.Err()) != rpc.Reason(have.Err()) {
			t.Errorf("%s: client sees %v (reason %q) forwarded, %v (reason %q) on the leader", tt.name, have.Err(), rpc.Reason(have.Err()), want.Err(), rpc.Reason(want.Err()))
		}
		if want.Message() != have.Message() && !errors.Is(tt.err, ErrNotLeader) {
			t.Errorf("%s: message %q forwarded, %q on the leader", tt.name, have.Message(), want.Message())
		}
	}
	if _, err := decodeResult(encodeResult(&rpc.WriteResponse{Index: 7001, Duplicate: true}, nil)); err != nil {
		t.Fatalf("a success reads back as %v", err)
	}
}

// A node from before ApplyResult.failure says everything in code and
// message; during a rolling upgrade its answers still decide the same.
func TestApplyResultFromOlderNode(t *testing.T) {
	tests := []struct {
		name             string
		code             codes.Code
		msg              string
		retry, tolerated bool
	}{
		{"not leader", codes.FailedPrecondition, "not the leader", true, false},
		{"conflict", codes.FailedPrecondition, "job j-1 is not running", false, true},
		{"not found", codes.NotFound, "job j-1 does not exist", false, true},
		{"exists", codes.AlreadyExists, "user \"bob\" already exists", false, false},
		{"shutdown", codes.Unavailable, "node is shutting down", false, false},
		{"unavailable", codes.Unavailable, "commit: timed out", true, false},
		{"denied", codes.PermissionDenied, "token x belongs to user:a", false, false},
	}
	for _, tt := range tests {
		_, err := decodeResult(&rpc.ApplyResult{Code: uint32(tt.code), Message: tt.msg})
		if retryable(err) != tt.retry || tolerable(err) != tt.tolerated {
			t.Errorf("%s: retryable %v, tolerable %v; want %v, %v", tt.name, retryable(err), tolerable(err), tt.retry, tt.tolerated)
		}
		if st := status.Convert(errorStatus(err)); st.Code() != tt.code || st.Message() != tt.msg {
			t.Errorf("%s: client sees %v, want %s %q", tt.name, st.Err(), tt.code, tt.msg)
		}
	}
	// Its refusal of a whole batch, too.
	if err := peerCallError(status.Error(codes.FailedPrecondition, "not the leader")); !errors.Is(err, ErrNotLeader) {
		t.Errorf("an older leader's refusal reads %v, want ErrNotLeader", err)
	}
}

// The refusals of Internal carry their reason: a forwarding node reads it
// from the status's ErrorInfo, not from its text.
func TestPeerCallError(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		is    error
		retry bool
	}{
		{"not leader", errorStatus(ErrNotLeader), ErrNotLeader, true},
		{"not leader, other text", rpc.ReasonError(codes.FailedPrecondition, rpc.ReasonNotLeader, "leadership moved"), ErrNotLeader, true},
		{"shutdown", errorStatus(ErrShutdown), ErrShutdown, false},
		{"unreachable", status.Error(codes.Unavailable, "connection refused"), ErrUnavailable, true},
		{"not a status", errors.New("dial tcp: refused"), ErrUnavailable, true},
		{"timed out", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), nil, false},
	}
	for _, tt := range tests {
		got := peerCallError(tt.err)
		if tt.is != nil && !errors.Is(got, tt.is) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.is)
		}
		if retryable(got) != tt.retry {
			t.Errorf("%s: retryable %v, want %v", tt.name, retryable(got), tt.retry)
		}
	}
}

// errorStatus keeps what clients see and fail over on.
func TestErrorStatus(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		msg    string
		reason string
	}{
		{"waited for a leader", &leaderlessError{"node n1: no leader (no contact with a leader; try another node)"}, codes.Unavailable, "node n1: no leader (no contact with a leader; try another node)", rpc.ReasonNoLeader},
		{"no leader now", ErrNoLeader, codes.Unavailable, "no leader", ""},
		{"shutdown", ErrShutdown, codes.Unavailable, "node is shutting down", rpc.ReasonShutdown},
		{"not leader", ErrNotLeader, codes.FailedPrecondition, "not the leader", rpc.ReasonNotLeader},
		{"unavailable", unavailable("node n1 is behind"), codes.Unavailable, "node n1 is behind", ""},
		{"not found", &fsm.Rejection{Kind: fsm.ErrNotFound, Msg: "m"}, codes.NotFound, "m", ""},
		{"exists", &fsm.Rejection{Kind: fsm.ErrExists, Msg: "m"}, codes.AlreadyExists, "m", ""},
		{"invalid", &fsm.Rejection{Kind: fsm.ErrInvalid, Msg: "m"}, codes.InvalidArgument, "m", ""},
		{"conflict", &fsm.Rejection{Kind: fsm.ErrConflict, Msg: "m"}, codes.FailedPrecondition, "m", ""},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "context deadline exceeded", ""},
		{"status", status.Error(codes.PermissionDenied, "denied"), codes.PermissionDenied, "denied", ""},
	}
	for _, tt := range tests {
		got := errorStatus(tt.err)
		st := status.Convert(got)
		if st.Code() != tt.code || st.Message() != tt.msg || rpc.Reason(got) != tt.reason {
			t.Errorf("%s: %v (reason %q), want %s %q (reason %q)", tt.name, got, rpc.Reason(got), tt.code, tt.msg, tt.reason)
		}
	}
	if !rpc.IsNoLeader(errorStatus(&leaderlessError{"x"})) || rpc.IsNoLeader(errorStatus(ErrNoLeader)) {
		t.Error("only a node that waited out an election says NO_LEADER")
	}
}
