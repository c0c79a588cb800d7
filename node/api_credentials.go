package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
)

// credentialsAPI serves the credentials of SPEC section 11.
type credentialsAPI struct {
	rpc.UnimplementedCredentialsServer
	n *Node
}

func (n *Node) now() time.Time {
	if n.cfg.Clock != nil {
		return n.cfg.Clock.Now()
	}
	return time.Now()
}

func credentialInfo(c *fsm.Credential, now time.Time) *rpc.CredentialInfo {
	return &rpc.CredentialInfo{
		Id: c.GetId(), Subject: c.GetSubject(), Destination: c.GetDestination(), Kind: c.GetKind(), Role: c.GetRole(),
		Principals: c.GetPrincipals(), GrantSubject: c.GetGrantSubject(), GrantPrivilege: c.GetGrantPrivilege(),
		GrantResource: c.GetGrantResource(), Serial: c.GetSerial(), UserName: c.GetUserName(),
		PublicKeyFingerprint: c.GetPublicKeyFingerprint(), ValidAfterUnixNano: c.GetValidAfterUnixNano(),
		ValidBeforeUnixNano: c.GetValidBeforeUnixNano(), TokenId: c.GetTokenId(),
		Status: fsm.CredentialStatus(c, now), RevokedReason: c.GetRevokedReason(), CreatedIndex: c.GetCreated().GetIndex(),
	}
}

// List returns the credentials the request selects (live ones unless all);
// a caller without view on destinations/* may list only its own (the
// rule's Owner).
func (a *credentialsAPI) List(_ context.Context, req *rpc.ListCredentialsRequest) (*rpc.ListCredentialsResponse, error) {
	now := a.n.now()
	cs, err := a.n.fsm.Credentials(fsm.CredentialFilter{Subject: req.GetSubject(), Destination: req.GetDestination(), All: req.GetAll(), Now: now})
	if err != nil {
		return nil, stateErr(err)
	}
	resp := &rpc.ListCredentialsResponse{}
	for _, c := range cs {
		resp.Credentials = append(resp.Credentials, credentialInfo(c, now))
	}
	return resp, nil
}

func (a *credentialsAPI) Revoke(ctx context.Context, req *rpc.RevokeCredentialRequest) (*rpc.WriteResponse, error) {
	return a.n.propose(ctx, &events.CredentialRevoked{Id: req.GetId(), Reason: req.GetReason()})
}

// credentialRules are the rules of the Credentials service (see methodRules).
func credentialRules(n *Node) map[string]auth.Rule {
	const svc = "/hpt.v1.Credentials/"
	credential := func(id string) *fsm.Credential {
		c, err := n.fsm.Credential(id)
		if err != nil {
			return nil
		}
		return c
	}
	return map[string]auth.Rule{
		svc + "List": {Privilege: events.PrivView, Static: "destinations/*", Owner: func(_ context.Context, req any) (string, error) {
			return req.(*rpc.ListCredentialsRequest).GetSubject(), nil
		}},
		// An unknown credential is checked against destinations/*, so that
		// only an admin of every destination learns it does not exist.
		svc + "Revoke": {Privilege: events.PrivAdmin, Resource: func(req any) string {
			if c := credential(req.(*rpc.RevokeCredentialRequest).GetId()); c != nil {
				return "destinations/" + c.GetDestination()
			}
			return "destinations/*"
		}, Owner: func(_ context.Context, req any) (string, error) {
			if c := credential(req.(*rpc.RevokeCredentialRequest).GetId()); c != nil {
				return c.GetSubject(), nil
			}
			return "", nil
		}},
		// Any valid token: IssueSSH checks the destination roles itself.
		svc + "IssueSSH": {},
	}
}

// newCredentialID returns a sortable, unique credential id, made like job
// ids: creation time in base 36 and random hex.
func newCredentialID(now time.Time) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("c-%s-%08x", strconv.FormatInt(now.UnixMilli(), 36), b), nil
}

// sshcaErr maps an internal/sshca refusal to a status naming its field.
func sshcaErr(err error) error {
	switch {
	case errors.Is(err, sshca.ErrExpired):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, sshca.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// IssueSSH certifies the caller's public key for one login on an ssh
// destination. A certificate is for one login (the one asked for, or the
// only one granted), so that its credential names the one grant that
// allowed all of it, and removing that grant revokes exactly what it
// allowed. The certificate is returned only once its credential_issued
// event is committed; the private key never reaches a node.
func (a *credentialsAPI) IssueSSH(ctx context.Context, req *rpc.IssueSSHRequest) (*rpc.IssueSSHResponse, error) {
	n := a.n
	cas := n.cfg.SSHCAs
	if !cas.Present() {
		return nil, errNoCAs()
	}
	caller, ok := auth.CallerFrom(ctx)
	if !ok || caller.Subject == "" {
		return nil, status.Error(codes.PermissionDenied, "credentials are issued to users and machines, with their token")
	}
	pub, err := sshca.ParseClientKey(req.GetPublicKey())
	if err != nil {
		return nil, sshcaErr(err)
	}
	destName := req.GetDestination()
	dest, err := n.fsm.Destination(destName)
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "destination: %q does not exist (hpt destinations list)", destName)
	}
	if err != nil {
		return nil, stateErr(err)
	}
	if dest.GetKind() != events.DestSSH {
		return nil, status.Errorf(codes.InvalidArgument, "destination: %q is a %s destination, not ssh", destName, dest.GetKind())
	}
	logins, err := n.authz.Roles(caller.Subject, events.RoleLogin, destName)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	hint := func(login string) string {
		return fmt.Sprintf("hpt grants add %s %s %s", auth.ShellQuote(caller.Subject),
			auth.ShellQuote(events.RoleLogin+":"+login), auth.ShellQuote("destinations/"+destName))
	}
	var use *auth.RoleGrant
	switch want := req.GetLogin(); {
	case want != "":
		for i := range logins {
			if logins[i].Role == want {
				use = &logins[i]
			}
		}
		if use == nil {
			return nil, status.Errorf(codes.PermissionDenied, "denied: %s has no grant for %s:%s on destinations/%s (add one with: %s)",
				caller.Subject, events.RoleLogin, want, destName, hint(want))
		}
	case len(logins) == 1:
		use = &logins[0]
	case len(logins) == 0:
		return nil, status.Errorf(codes.PermissionDenied, "denied: %s has no login on destinations/%s (add one with: %s)",
			caller.Subject, destName, hint("LOGIN"))
	default:
		names := make([]string, len(logins))
		for i, l := range logins {
			names[i] = l.Role
		}
		sort.Strings(names)
		return nil, status.Errorf(codes.InvalidArgument, "login: %s may log in to %s as %s: choose one (--login, or LOGIN@%s)",
			caller.Subject, destName, strings.Join(names, ", "), destName)
	}
	login := use.Role
	principal, err := sshca.Principal(login, destName)
	if err != nil {
		return nil, sshcaErr(err)
	}
	forward := false
	fwd, err := n.authz.Roles(caller.Subject, events.RoleLoginForward, destName)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	for _, f := range fwd {
		forward = forward || f.Role == login
	}

	now := n.now()
	var tokenExpiry time.Time
	if caller.TokenID != "" {
		tok, err := n.fsm.Token(caller.TokenID)
		if err != nil {
			return nil, stateErr(err)
		}
		if e := tok.GetExpiresUnixNano(); e != 0 {
			tokenExpiry = time.Unix(0, e)
		}
	}
	// The certificate ends no later than the grant that allows it (the
	// zero time: a grant that never expires leaves the TTL to the policy
	// and the token).
	var grantExpiry time.Time
	if e := use.Grant.GetExpiresUnixNano(); e != 0 {
		grantExpiry = time.Unix(0, e)
	}
	validAfter, validBefore, err := sshca.DefaultTTLPolicy().Validity(now, time.Duration(req.GetTtlNanos()), grantExpiry, tokenExpiry)
	if err != nil {
		return nil, sshcaErr(err)
	}
	id, err := newCredentialID(now)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "credential id: %v", err)
	}
	serial, err := sshca.NewSerial(rand.Reader)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "serial: %v", err)
	}
	cert, err := sshca.IssueUser(rand.Reader, cas.User, sshca.UserCert{
		PublicKey: req.GetPublicKey(), Subject: caller.Subject, CredentialID: id, Principals: []string{principal},
		ValidAfter: validAfter, ValidBefore: validBefore, Serial: serial, AllowForwarding: forward,
	})
	if err != nil {
		return nil, sshcaErr(err)
	}
	g := use.Grant
	wr, err := n.propose(ctx, &events.CredentialIssued{
		Id: id, Subject: caller.Subject, Destination: destName, Kind: events.DestSSH, Role: events.RoleLogin + ":" + login,
		Principals: []string{principal}, GrantSubject: g.GetSubject(), GrantPrivilege: g.GetPrivilege(), GrantResource: g.GetResource(),
		Serial: serial, PublicKeyFingerprint: ssh.FingerprintSHA256(pub),
		ValidAfterUnixNano: validAfter.UnixNano(), ValidBeforeUnixNano: validBefore.UnixNano(), TokenId: caller.TokenID,
	})
	if err != nil {
		return nil, err
	}
	if wr.GetDuplicate() {
		// That request's certificate was returned then; this one's event
		// was never written, so it must not be handed out.
		return nil, status.Error(codes.AlreadyExists, "request id: already used by an earlier credential issue; retry with a new one")
	}
	return &rpc.IssueSSHResponse{
		Id: id, Certificate: string(ssh.MarshalAuthorizedKey(cert)), Principals: []string{principal},
		ValidAfterUnixNano: validAfter.UnixNano(), ValidBeforeUnixNano: validBefore.UnixNano(),
		Addr: dest.GetAddr(), Mesh: dest.GetMesh(), Login: login,
		HostCaPublicKey: strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(cas.Host.PublicKey())), "\n"), Index: wr.GetIndex(),
	}, nil
}
