package rpc

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestIsNoLeader(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no leader", NoLeaderError("node n1: no leader"), true},
		{"same message, no detail", status.Error(codes.Unavailable, "node n1: no leader"), false},
		{"other code", status.Error(codes.FailedPrecondition, "no leader"), false},
		{"not a status", errors.New("no leader"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		if got := IsNoLeader(tt.err); got != tt.want {
			t.Errorf("%s: IsNoLeader(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
	if err := NoLeaderError("x"); status.Code(err) != codes.Unavailable || fmt.Sprint(status.Convert(err).Message()) != "x" {
		t.Fatalf("NoLeaderError: %v", err)
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"not leader", ReasonError(codes.FailedPrecondition, ReasonNotLeader, "not the leader"), ReasonNotLeader},
		{"no leader", NoLeaderError("node n1: no leader"), ReasonNoLeader},
		{"same text, no detail", status.Error(codes.FailedPrecondition, "not the leader"), ""},
		{"not a status", errors.New("not the leader"), ""},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		if got := Reason(tt.err); got != tt.want {
			t.Errorf("%s: Reason(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
	if err := ReasonError(codes.Unavailable, ReasonShutdown, "node is shutting down"); status.Code(err) != codes.Unavailable || status.Convert(err).Message() != "node is shutting down" {
		t.Fatalf("ReasonError: %v", err)
	}
}
