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
