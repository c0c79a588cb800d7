package node_test

import (
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// TestGrantOnLabelsRefused: a grant on "targets/role=web" would be a name
// glob that matches nothing; the node refuses it naming the resource and
// saying why, and records nothing.
func TestGrantOnLabelsRefused(t *testing.T) {
	c := nodetest.Start(t, 1)
	ctx := ctxT(t)
	admin := c.Client(0)
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "deployer"}); err != nil {
		t.Fatal(err)
	}
	_, err := admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:deployer", Privilege: events.PrivProvision, Resource: "targets/role=web"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "resource") || !strings.Contains(err.Error(), "label") {
		t.Fatalf("grant on targets/role=web: %v, want InvalidArgument naming the resource and labels", err)
	}
	resp, err := admin.Grants.List(ctx, &rpc.ListGrantsRequest{Subject: "user:deployer"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetGrants()) != 0 {
		t.Fatalf("refused grant left %v", resp.GetGrants())
	}
}

// TestEventsActorValidated: the node refuses an actor without a kind
// rather than streaming nothing.
func TestEventsActorValidated(t *testing.T) {
	c := nodetest.Start(t, 1)
	ctx := ctxT(t)
	stream, err := c.Client(0).Events.List(ctx, &rpc.ListEventsRequest{Actor: "admin"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "actor") {
		t.Fatalf("events by actor \"admin\": %v, want InvalidArgument naming the actor", err)
	}
	stream, err = c.Client(0).Events.List(ctx, &rpc.ListEventsRequest{Actor: "user:admin", Limit: 1})
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil && err != io.EOF {
		t.Fatalf("events by user:admin: %v", err)
	}
}
