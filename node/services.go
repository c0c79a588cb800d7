package node

import (
	"context"
	"errors"
	"net"
	"strconv"

	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
)

func (n *Node) registerServices(s *grpc.Server) {
	rpc.RegisterClusterServer(s, &clusterAPI{n: n})
	rpc.RegisterEventsServer(s, &eventsAPI{n: n})
	rpc.RegisterIdentitiesServer(s, &identitiesAPI{n: n})
	rpc.RegisterTokensServer(s, &tokensAPI{n: n})
	rpc.RegisterGrantsServer(s, &grantsAPI{n: n})
	rpc.RegisterKeysServer(s, &keysAPI{n: n})
	rpc.RegisterBenchServer(s, &benchAPI{n: n})
	rpc.RegisterJobsServer(s, &jobsAPI{n: n})
	rpc.RegisterTargetsServer(s, &targetsAPI{n: n})
	rpc.RegisterDestinationsServer(s, &destinationsAPI{n: n})
	rpc.RegisterFleetServer(s, &fleetServer{n: n})
	rpc.RegisterInternalServer(s, &internalServer{n: n})
	rpc.RegisterCAServer(s, &caAPI{n: n})
	rpc.RegisterCredentialsServer(s, &credentialsAPI{n: n})
}

// methodRules is the authorization table: every RPC the node serves has
// exactly one entry (a test walks the registered services to prove it), and
// a method without one is refused.
//
// Resources name what a call touches as KIND/NAME, matched against grant
// globs: "identities/alice", "targets/web-1", "cluster/snapshot".
//
// n is used only when a call comes in (Rule.Owner reads the state).
func methodRules(n *Node) map[string]auth.Rule {
	const (
		cluster    = "/hpt.v1.Cluster/"
		evs        = "/hpt.v1.Events/"
		identities = "/hpt.v1.Identities/"
		tokens     = "/hpt.v1.Tokens/"
		grants     = "/hpt.v1.Grants/"
		keys       = "/hpt.v1.Keys/"
		bench      = "/hpt.v1.Bench/"
		jobs       = "/hpt.v1.Jobs/"
		targets    = "/hpt.v1.Targets/"
		dests      = "/hpt.v1.Destinations/"
		fleet      = "/hpt.v1.Fleet/"
		internal   = "/hpt.v1.Internal/"
		ca         = "/hpt.v1.CA/"
	)
	admin := func(static string) auth.Rule { return auth.Rule{Privilege: events.PrivAdmin, Static: static} }
	view := func(static string) auth.Rule { return auth.Rule{Privilege: events.PrivView, Static: static} }
	byName := func(priv, kind string, name func(any) string) auth.Rule {
		return auth.Rule{Privilege: priv, Resource: func(req any) string { return kind + "/" + name(req) }}
	}
	identity := func(req any) string {
		switch r := req.(type) {
		case *rpc.AddIdentityRequest:
			return r.GetName()
		case *rpc.RemoveIdentityRequest:
			return r.GetName()
		case *rpc.MemberRequest:
			return r.GetGroup()
		}
		return "*"
	}
	target := func(req any) string {
		switch r := req.(type) {
		case *rpc.RegisterKeyRequest:
			return r.GetTarget()
		case *rpc.RevokeKeyRequest:
			return r.GetTarget()
		}
		return "*"
	}
	destination := func(req any) string {
		switch r := req.(type) {
		case *rpc.AddDestinationRequest:
			return r.GetName()
		case *rpc.RemoveDestinationRequest:
			return r.GetName()
		}
		return "*"
	}
	node := auth.Rule{Peer: auth.PeerNode}
	// Whoever submitted a job may read and follow it without view.
	jobRead := func() auth.Rule {
		return auth.Rule{
			Privilege: events.PrivView,
			Resource:  func(req any) string { return "jobs/" + req.(*rpc.GetJobRequest).GetJobId() },
			Owner: func(ctx context.Context, req any) (string, error) {
				// Authorization runs before the read barrier: catch up to
				// the caller's last write first, so that a job it just
				// submitted through another node is found here.
				if err := n.readBarrier(ctx, jobs+"Get"); err != nil {
					return "", err
				}
				j, err := n.fsm.Job(req.(*rpc.GetJobRequest).GetJobId())
				if errors.Is(err, fsm.ErrNotFound) {
					return "", nil
				}
				if err != nil {
					return "", stateErr(err)
				}
				return j.GetSubmitted().GetActor(), nil
			},
		}
	}
	rules := map[string]auth.Rule{
		cluster + "Status":          view("cluster/status"),
		cluster + "RemoveNode":      byName(events.PrivAdmin, "cluster", func(r any) string { return r.(*rpc.RemoveNodeRequest).GetName() }),
		cluster + "SnapshotSave":    admin("cluster/snapshot"),
		cluster + "SnapshotRestore": admin("cluster/snapshot"),
		cluster + "Whoami":          {},

		evs + "List": view("events/*"),

		identities + "Add":          byName(events.PrivAdmin, "identities", identity),
		identities + "List":         view("identities/*"),
		identities + "Remove":       byName(events.PrivAdmin, "identities", identity),
		identities + "AddMember":    byName(events.PrivAdmin, "identities", identity),
		identities + "RemoveMember": byName(events.PrivAdmin, "identities", identity),

		tokens + "Create": byName(events.PrivAdmin, "tokens", func(r any) string { return r.(*rpc.CreateTokenRequest).GetSubject() }),
		tokens + "List":   view("tokens/*"),
		tokens + "Revoke": admin("tokens/*"),

		grants + "Add":    admin("grants/*"),
		grants + "List":   view("grants/*"),
		grants + "Remove": admin("grants/*"),
		// Anyone may check their own grants (as kubectl auth can-i).
		grants + "Check": {Privilege: events.PrivView, Static: "grants/*", Owner: func(_ context.Context, req any) (string, error) {
			return req.(*rpc.GrantRequest).GetSubject(), nil
		}},

		keys + "Register":   byName(events.PrivKeys, "targets", target),
		keys + "List":       view("targets/*"),
		keys + "Revoke":     byName(events.PrivKeys, "targets", target),
		keys + "Enrollment": {Privilege: events.PrivKeys, Static: "targets/*"},

		bench + "Write": admin("cluster/bench"),

		// Submitting and cancelling need provision on every target of the
		// job; the handlers check each one (Authorizer.Require).
		jobs + "Submit": {},
		jobs + "Cancel": {},
		jobs + "Get":    jobRead(),
		jobs + "List":   view("jobs/*"),
		jobs + "Watch":  jobRead(),

		targets + "List": view("targets/*"),

		// Public halves only; a grant of view on "*" or "ca/*" covers it.
		ca + "Show":      view("ca/ssh"),
		dests + "Add":    byName(events.PrivAdmin, "destinations", destination),
		dests + "List":   view("destinations/*"),
		dests + "Remove": byName(events.PrivAdmin, "destinations", destination),

		fleet + "Connect": {Peer: auth.PeerTarget},

		internal + "Apply":        node,
		internal + "ApplyBatch":   node,
		internal + "ReadIndex":    node,
		internal + "NodeStatus":   node,
		internal + "RemoveServer": node,
		internal + "Restore":      node,
		internal + "Dispatch":     node,
		internal + "CancelRun":    node,
		internal + "StashSecrets": node,
	}
	for m, r := range credentialRules(n) {
		rules[m] = r
	}
	return rules
}

// consistencyUnary and consistencyStream apply a call's read consistency
// metadata before the handler runs (see readBarrier).
func (n *Node) consistencyUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := n.readBarrier(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (n *Node) consistencyStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := n.readBarrier(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// isRead reports whether a method only reads: its rule asks for view.
func (n *Node) isRead(method string) bool {
	return n.authz.Rules()[method].Privilege == events.PrivView
}

// gossipSeeds lists the gossip addresses of alive servers, for keystores of
// new targets.
func (n *Node) gossipSeeds() []string {
	var out []string
	for _, m := range n.members.Members() {
		if m.State != memberlist.StateAlive || m.Meta.Role != rpc.RoleServer {
			continue
		}
		out = append(out, net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))))
	}
	return out
}
