package node

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
)

// ---- Identities ----

func checkKind(kind string) error {
	switch kind {
	case events.KindUser, events.KindMachine, events.KindGroup:
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "kind %q: want user, machine or group", kind)
}

func (a *identitiesAPI) Add(ctx context.Context, req *rpc.AddIdentityRequest) (*rpc.WriteResponse, error) {
	if err := checkKind(req.GetKind()); err != nil {
		return nil, err
	}
	switch req.GetKind() {
	case events.KindUser:
		return a.n.propose(ctx, &events.UserAdded{Name: req.GetName(), Email: req.GetEmail()})
	case events.KindMachine:
		return a.n.propose(ctx, &events.MachineAdded{Name: req.GetName(), Description: req.GetDescription()})
	default:
		return a.n.propose(ctx, &events.GroupAdded{Name: req.GetName(), Description: req.GetDescription()})
	}
}

func (a *identitiesAPI) Remove(ctx context.Context, req *rpc.RemoveIdentityRequest) (*rpc.WriteResponse, error) {
	if err := checkKind(req.GetKind()); err != nil {
		return nil, err
	}
	switch req.GetKind() {
	case events.KindUser:
		return a.n.propose(ctx, &events.UserRemoved{Name: req.GetName()})
	case events.KindMachine:
		return a.n.propose(ctx, &events.MachineRemoved{Name: req.GetName()})
	default:
		return a.n.propose(ctx, &events.GroupRemoved{Name: req.GetName()})
	}
}

func (a *identitiesAPI) List(_ context.Context, req *rpc.ListIdentitiesRequest) (*rpc.ListIdentitiesResponse, error) {
	if err := checkKind(req.GetKind()); err != nil {
		return nil, err
	}
	ids, err := a.n.fsm.Identities(req.GetKind())
	if err != nil {
		return nil, stateErr(err)
	}
	resp := &rpc.ListIdentitiesResponse{}
	for _, id := range ids {
		info := &rpc.IdentityInfo{
			Kind: id.GetKind(), Name: id.GetName(), Email: id.GetEmail(), Description: id.GetDescription(),
			CreatedUnixNano: id.GetCreated().GetTimeUnixNano(), CreatedIndex: id.GetCreated().GetIndex(),
		}
		subject := events.Subject{Kind: id.GetKind(), Name: id.GetName()}.String()
		if id.GetKind() == events.KindGroup {
			if info.Members, err = a.n.fsm.Members(id.GetName()); err != nil {
				return nil, stateErr(err)
			}
		}
		if info.Groups, err = a.n.fsm.GroupsOf(subject); err != nil {
			return nil, stateErr(err)
		}
		resp.Identities = append(resp.Identities, info)
	}
	return resp, nil
}

func (a *identitiesAPI) AddMember(ctx context.Context, req *rpc.MemberRequest) (*rpc.WriteResponse, error) {
	return a.n.propose(ctx, &events.GroupMemberAdded{Group: req.GetGroup(), Member: req.GetMember()})
}

func (a *identitiesAPI) RemoveMember(ctx context.Context, req *rpc.MemberRequest) (*rpc.WriteResponse, error) {
	return a.n.propose(ctx, &events.GroupMemberRemoved{Group: req.GetGroup(), Member: req.GetMember()})
}

// ---- Tokens ----

// maxTokenTTL keeps expiry arithmetic far from overflow.
const maxTokenTTL = 100 * 365 * 24 * time.Hour

func (a *tokensAPI) Create(ctx context.Context, req *rpc.CreateTokenRequest) (*rpc.CreateTokenResponse, error) {
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if req.GetTtlSeconds() < 0 || ttl > maxTokenTTL {
		return nil, status.Errorf(codes.InvalidArgument, "ttl: %d seconds is out of range (0 = never expires, at most 100 years)", req.GetTtlSeconds())
	}
	var expires int64
	if ttl > 0 {
		expires = time.Now().Add(ttl).UnixNano()
	}
	resp := &rpc.CreateTokenResponse{ExpiresUnixNano: expires}
	ev := &events.TokenCreated{Subject: req.GetSubject(), ExpiresUnixNano: expires, Description: req.GetDescription()}
	if req.GetId() != "" || len(req.GetSecretSha256()) != 0 {
		ev.Id, ev.SecretSha256 = req.GetId(), req.GetSecretSha256()
	} else {
		tok, err := auth.NewToken()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		sum := tok.SecretSHA256()
		ev.Id, ev.SecretSha256 = tok.ID, sum[:]
		resp.Token = tok.Secret()
	}
	w, err := a.n.propose(ctx, ev)
	if err != nil {
		return nil, err
	}
	resp.Index, resp.Id, resp.Duplicate = w.GetIndex(), ev.Id, w.GetDuplicate()
	if w.GetDuplicate() {
		// The node-minted secret of this attempt was not stored.
		resp.Token = ""
	}
	return resp, nil
}

func (a *tokensAPI) List(_ context.Context, req *rpc.ListTokensRequest) (*rpc.ListTokensResponse, error) {
	toks, err := a.n.fsm.Tokens()
	if err != nil {
		return nil, stateErr(err)
	}
	resp := &rpc.ListTokensResponse{}
	for _, t := range toks {
		if req.GetSubject() != "" && t.GetSubject() != req.GetSubject() {
			continue
		}
		info := &rpc.TokenInfo{
			Id: t.GetId(), Subject: t.GetSubject(), Description: t.GetDescription(),
			CreatedUnixNano: t.GetCreated().GetTimeUnixNano(), ExpiresUnixNano: t.GetExpiresUnixNano(), Revoked: t.GetRevoked(),
		}
		if lu := a.n.authz.LastUsed(t.GetId()); !lu.IsZero() {
			info.LastUsedUnixNano = lu.UnixNano()
		}
		resp.Tokens = append(resp.Tokens, info)
	}
	return resp, nil
}

func (a *tokensAPI) Revoke(ctx context.Context, req *rpc.RevokeTokenRequest) (*rpc.WriteResponse, error) {
	id := req.GetId()
	if tok, err := auth.ParseToken(id); err == nil {
		// Accept the whole token too, without ever echoing its secret.
		id = tok.ID
	}
	return a.n.propose(ctx, &events.TokenRevoked{Id: id})
}

// ---- Grants ----

func (n *Node) grantInfo(g *fsm.Grant) *rpc.GrantInfo {
	return &rpc.GrantInfo{Subject: g.GetSubject(), Privilege: g.GetPrivilege(), Resource: g.GetResource(), CreatedIndex: g.GetCreated().GetIndex(),
		ExpiresUnixNano: g.GetExpiresUnixNano(), Expired: n.authz.GrantExpired(g)}
}

// maxGrantTTL keeps expiry arithmetic far from overflow, as maxTokenTTL.
const maxGrantTTL = maxTokenTTL

// grantExpiry returns the expiry a grant request asks for (0: never). A
// ttl is counted from this node's clock when it accepts the call, so the
// client's clock does not matter; until is absolute, and must be ahead of
// this node's clock.
func grantExpiry(req *rpc.GrantRequest, now time.Time) (int64, error) {
	ttl, until := req.GetTtlNanos(), req.GetUntilUnixNano()
	switch {
	case ttl != 0 && until != 0:
		return 0, status.Error(codes.InvalidArgument, "ttl and until: give one or neither")
	case ttl < 0 || time.Duration(ttl) > maxGrantTTL:
		return 0, status.Errorf(codes.InvalidArgument, "ttl: %s is out of range (more than 0, at most 100 years)", time.Duration(ttl))
	case ttl > 0:
		return now.Add(time.Duration(ttl)).UnixNano(), nil
	case until < 0 || until > now.Add(maxGrantTTL).UnixNano():
		return 0, status.Errorf(codes.InvalidArgument, "until: %s is out of range (at most 100 years ahead)", time.Unix(0, until).UTC().Format(time.RFC3339))
	case until != 0 && until <= now.UnixNano():
		return 0, status.Errorf(codes.InvalidArgument, "until: %s is not in the future (this node's clock reads %s)",
			time.Unix(0, until).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return until, nil
}

func (a *grantsAPI) Add(ctx context.Context, req *rpc.GrantRequest) (*rpc.WriteResponse, error) {
	exp, err := grantExpiry(req, time.Now())
	if err != nil {
		return nil, err
	}
	return a.n.propose(ctx, &events.GrantAdded{Subject: req.GetSubject(), Privilege: req.GetPrivilege(), Resource: req.GetResource(), ExpiresUnixNano: exp})
}

func (a *grantsAPI) Remove(ctx context.Context, req *rpc.GrantRequest) (*rpc.WriteResponse, error) {
	if req.GetTtlNanos() != 0 || req.GetUntilUnixNano() != 0 {
		return nil, status.Error(codes.InvalidArgument, "ttl and until are for adding a grant, not removing one")
	}
	return a.n.propose(ctx, &events.GrantRemoved{Subject: req.GetSubject(), Privilege: req.GetPrivilege(), Resource: req.GetResource()})
}

func (a *grantsAPI) List(_ context.Context, req *rpc.ListGrantsRequest) (*rpc.ListGrantsResponse, error) {
	grants, err := a.n.fsm.Grants(req.GetSubject())
	if err != nil {
		return nil, stateErr(err)
	}
	resp := &rpc.ListGrantsResponse{}
	for _, g := range grants {
		resp.Grants = append(resp.Grants, a.n.grantInfo(g))
	}
	return resp, nil
}

func (a *grantsAPI) Check(_ context.Context, req *rpc.GrantRequest) (*rpc.CheckResponse, error) {
	if _, err := events.ParseSubject(req.GetSubject()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := events.CheckPrivilege(req.GetPrivilege()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := events.CheckResource(req.GetResource()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := events.CheckGrantScope(req.GetPrivilege(), req.GetResource()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	d, err := a.n.authz.Check(req.GetSubject(), req.GetPrivilege(), req.GetResource())
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp := &rpc.CheckResponse{Allowed: d.Allowed, Via: d.Via, Reason: d.Reason}
	if d.Grant != nil {
		resp.Grant = a.n.grantInfo(d.Grant)
	}
	return resp, nil
}

// ---- Bench ----

func (a *benchAPI) Write(ctx context.Context, req *rpc.BenchWriteRequest) (*rpc.WriteResponse, error) {
	return a.n.propose(ctx, &events.BenchWrite{Data: req.GetData()})
}
