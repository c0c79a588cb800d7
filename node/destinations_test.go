package node_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// Destinations are added, listed and removed through a follower of a
// three-node cluster, every node lists the same, the connector's state shows
// as status, and bad specs are refused naming the field with nothing
// recorded.
func TestDestinationsThroughFollower(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	follower := (c.WaitLeader() + 1) % 3
	admin := c.Client(follower)
	c.RegisterTarget("web-1", t.TempDir())
	c.StartAgent("bastion", nodetest.AgentOptions{})
	c.WaitConnected("bastion")

	adds := []*rpc.AddDestinationRequest{
		{Name: "web-1", Kind: "ssh", Addr: "127.0.0.1:22", Connector: "web-1", Labels: map[string]string{"env": "prod"}},
		{Name: "redis", Kind: "tcp", Addr: "127.0.0.1:6379", Connector: "bastion"},
		{Name: "db-1", Kind: "postgres", Addr: "db.internal:5432", Database: "app"},
	}
	index := map[string]uint64{}
	for _, a := range adds {
		w, err := admin.Destinations.Add(ctx, a)
		if err != nil {
			t.Fatalf("add %s: %v", a.GetName(), err)
		}
		index[a.GetName()] = w.GetIndex()
	}
	// The event records the normalized spec: a tcp destination is mesh.
	c.WaitEvent(index["db-1"])
	ev, err := c.Node(follower).State().Event(index["redis"])
	if err != nil {
		t.Fatal(err)
	}
	ej, err := events.ToJSON(ev)
	if err != nil || ej.Type != "destination_added" || !strings.Contains(string(ej.Payload), `"mesh":true`) || !strings.Contains(string(ej.Payload), `"connector":"bastion"`) {
		t.Fatalf("event of redis: %s %s (%v)", ej.Type, ej.Payload, err)
	}

	want := "db-1 postgres db.internal:5432 - false app \"\"; redis tcp 127.0.0.1:6379 bastion true  connected; web-1 ssh 127.0.0.1:22 web-1 false  disconnected"
	for i := 0; i < 3; i++ {
		resp, err := c.Client(i).Destinations.List(ctx, &rpc.ListDestinationsRequest{})
		if err != nil {
			t.Fatalf("list on node %d: %v", i, err)
		}
		var got []string
		for _, d := range resp.GetDestinations() {
			conn := d.GetConnector()
			if conn == "" {
				conn = "-"
			}
			st := d.GetStatus()
			if st == "" {
				st = `""`
			}
			got = append(got, fmt.Sprintf("%s %s %s %s %t %s %s", d.GetName(), d.GetKind(), d.GetAddr(), conn, d.GetMesh(), d.GetDatabase(), st))
			if d.GetName() == "web-1" && !maps.Equal(d.GetLabels(), map[string]string{"env": "prod"}) {
				t.Errorf("web-1 labels %v", d.GetLabels())
			}
		}
		if g := strings.Join(got, "; "); g != want {
			t.Errorf("node %d lists\n %s\nwant\n %s", i, g, want)
		}
	}

	bad := []struct {
		req  *rpc.AddDestinationRequest
		code codes.Code
		want string
	}{
		{&rpc.AddDestinationRequest{Name: "x", Kind: "sshh", Addr: "h:22"}, codes.InvalidArgument, `kind "sshh" is not one of ssh, postgres, kubernetes, tcp`},
		{&rpc.AddDestinationRequest{Name: "x", Kind: "ssh", Addr: "h"}, codes.InvalidArgument, `addr "h": want HOST:PORT`},
		{&rpc.AddDestinationRequest{Name: "x", Kind: "ssh"}, codes.InvalidArgument, "addr is required"},
		{&rpc.AddDestinationRequest{Name: "x", Kind: "ssh", Addr: "h:22", Connector: "ghost"}, codes.NotFound, `connector "ghost" is not a registered target`},
		{&rpc.AddDestinationRequest{Name: "web-1", Kind: "ssh", Addr: "h:22"}, codes.AlreadyExists, `destination "web-1" already exists`},
	}
	for _, b := range bad {
		_, err := admin.Destinations.Add(ctx, b.req)
		if status.Code(err) != b.code || !strings.Contains(err.Error(), b.want) {
			t.Errorf("add %v: %v, want %v …%s", b.req, err, b.code, b.want)
		}
	}
	if resp, _ := admin.Destinations.List(ctx, &rpc.ListDestinationsRequest{}); len(resp.GetDestinations()) != 3 {
		t.Errorf("refused adds left %d destinations", len(resp.GetDestinations()))
	}

	if _, err := admin.Destinations.Remove(ctx, &rpc.RemoveDestinationRequest{Name: "web-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Destinations.Remove(ctx, &rpc.RemoveDestinationRequest{Name: "web-1"}); status.Code(err) != codes.NotFound {
		t.Fatalf("removing web-1 twice: %v, want NotFound", err)
	}
	resp, err := admin.Destinations.List(ctx, &rpc.ListDestinationsRequest{})
	if err != nil || len(resp.GetDestinations()) != 2 {
		t.Fatalf("after remove: %v, %v", resp.GetDestinations(), err)
	}
}

// Who may do what with destinations, and auth check on role privileges.
func TestDestinationsAuthorization(t *testing.T) {
	c := nodetest.Start(t, 1)
	ctx := ctxT(t)
	admin := c.Client(0)
	alice := userClient(t, c, admin, "alice", "admin", "destinations/web-*", "login:deploy", "destinations/web-*")
	eve := userClient(t, c, admin, "eve")
	viewer := userClient(t, c, admin, "viewer", "view", "destinations/*")

	if _, err := alice.Destinations.Add(ctx, &rpc.AddDestinationRequest{Name: "web-1", Kind: "ssh", Addr: "h:22"}); err != nil {
		t.Fatalf("alice adds web-1: %v", err)
	}
	if _, err := alice.Destinations.Add(ctx, &rpc.AddDestinationRequest{Name: "db-1", Kind: "ssh", Addr: "h:22"}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "destinations/db-1") {
		t.Fatalf("alice adds db-1: %v, want denied on destinations/db-1", err)
	}
	if _, err := eve.Destinations.List(ctx, &rpc.ListDestinationsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("eve lists: %v, want denied", err)
	}
	if _, err := viewer.Destinations.List(ctx, &rpc.ListDestinationsRequest{}); err != nil {
		t.Fatalf("viewer lists: %v", err)
	}
	if _, err := viewer.Destinations.Remove(ctx, &rpc.RemoveDestinationRequest{Name: "web-1"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("viewer removes: %v, want denied", err)
	}

	// hpt auth check user:alice login:deploy destinations/web-1
	r, err := admin.Grants.Check(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.GetAllowed() || r.GetGrant().GetPrivilege() != "login:deploy" || r.GetGrant().GetResource() != "destinations/web-*" {
		t.Fatalf("check alice login:deploy on web-1: %v", r)
	}
	// Her own grants she may check without view.
	if r, err := alice.Grants.Check(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "login:root", Resource: "destinations/web-1"}); err != nil || r.GetAllowed() {
		t.Fatalf("check alice login:root: %v, %v", r, err)
	}
	// The bootstrap admin holds admin on *, which is no login.
	r, err = admin.Grants.Check(ctx, &rpc.GrantRequest{Subject: "user:admin", Privilege: "login:deploy", Resource: "destinations/web-1"})
	if err != nil || r.GetAllowed() || !strings.Contains(r.GetReason(), "admin never implies a destination role") {
		t.Fatalf("check admin login:deploy: %v, %v", r, err)
	}
	for _, g := range []*rpc.GrantRequest{
		{Subject: "user:alice", Privilege: "login:deploy", Resource: "targets/web-*"},
		{Subject: "user:alice", Privilege: "login:Root", Resource: "destinations/*"},
	} {
		if _, err := admin.Grants.Add(ctx, g); status.Code(err) != codes.InvalidArgument {
			t.Errorf("grant %s %s: %v, want InvalidArgument", g.GetPrivilege(), g.GetResource(), err)
		}
		if _, err := admin.Grants.Check(ctx, g); status.Code(err) != codes.InvalidArgument {
			t.Errorf("check %s %s: %v, want InvalidArgument", g.GetPrivilege(), g.GetResource(), err)
		}
	}
}
