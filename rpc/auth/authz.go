package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// Errors callers branch on.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrDenied          = errors.New("permission denied")
)

// State is what authorization reads; *fsm.FSM implements it.
type State interface {
	Token(id string) (*fsm.Token, error)
	GroupsOf(subject string) ([]string, error)
	Grants(subject string) ([]*fsm.Grant, error)
}

// Peer says who may call a method.
type Peer int

const (
	// PeerToken: any client with a valid API token and the rule's grant.
	PeerToken Peer = iota
	// PeerNode: only another node, proven by the cluster key at TLS.
	PeerNode
	// PeerTarget: only an agent, proven by its registered target key.
	PeerTarget
)

// A Rule is the authorization requirement of one RPC method.
type Rule struct {
	Peer Peer
	// Privilege required; empty admits any valid token.
	Privilege string
	// Resource returns the resource the call touches, from its request. Nil
	// means Static (or "*" if that is empty too). Streaming calls have no
	// request at interception time and use Static, unless the rule has an
	// Owner: then a server-streaming call is checked on its request.
	Resource func(req any) string
	Static   string
	// Owner, if set, returns the subject the request's resource belongs to
	// ("" if none, or if it does not exist): that subject needs no grant
	// for it. A job's submitter may follow the job, and anyone may check
	// their own grants. It is asked only when the grant check fails, and
	// for a streaming call on its first request message, so that an
	// unknown resource and another's resource are denied alike.
	Owner func(ctx context.Context, req any) (string, error)
}

func (r Rule) resource(req any) string {
	if r.Resource != nil && req != nil {
		return r.Resource(req)
	}
	if r.Static != "" {
		return r.Static
	}
	return "*"
}

// Caller is the authenticated party of a call.
type Caller struct {
	// Subject is "user:x" or "machine:y" for token callers.
	Subject string
	TokenID string
	// Node is true for another node of this cluster.
	Node bool
	// TargetKey is set for an agent.
	TargetKey ed25519.PublicKey
}

type callerKey struct{}

// CallerFrom returns the caller the interceptor authenticated.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// Decision explains an authorization check.
type Decision struct {
	Allowed bool
	// Grant that allowed the request, and the group it came through ("" if
	// held directly).
	Grant *fsm.Grant
	Via   string
	// Reason is a sentence for the operator.
	Reason string
}

// Authorizer authenticates tokens and checks grants against the state.
type Authorizer struct {
	state      State
	clusterKey ed25519.PublicKey
	rules      map[string]Rule
	now        func() time.Time

	// lastUsed is node-local and best effort; it is never replicated.
	lastUsedMu sync.Mutex
	lastUsed   map[string]time.Time
}

// NewAuthorizer returns an authorizer for the given method rules, keyed by
// full method name ("/hpt.v1.Tokens/Create").
func NewAuthorizer(state State, clusterKey ed25519.PublicKey, rules map[string]Rule) *Authorizer {
	return &Authorizer{state: state, clusterKey: clusterKey, rules: rules, now: time.Now, lastUsed: map[string]time.Time{}}
}

// Rules returns the rule table (for tests that walk every service).
func (a *Authorizer) Rules() map[string]Rule { return a.rules }

// LastUsed returns when this node last accepted the token.
func (a *Authorizer) LastUsed(id string) time.Time {
	a.lastUsedMu.Lock()
	defer a.lastUsedMu.Unlock()
	return a.lastUsed[id]
}

// Authenticate validates a bearer token and returns its caller.
func (a *Authorizer) Authenticate(bearer string) (Caller, error) {
	tok, err := ParseToken(bearer)
	if err != nil {
		return Caller{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	rec, err := a.state.Token(tok.ID)
	if errors.Is(err, fsm.ErrNotFound) {
		return Caller{}, fmt.Errorf("%w: token %s is not known", ErrUnauthenticated, tok)
	}
	if err != nil {
		return Caller{}, fmt.Errorf("look up token: %w", err)
	}
	want := rec.GetSecretSha256()
	got := tok.SecretSHA256()
	if subtle.ConstantTimeCompare(want, got[:]) != 1 {
		return Caller{}, fmt.Errorf("%w: token %s: wrong secret", ErrUnauthenticated, tok)
	}
	now := a.now()
	if err := usable(rec, tok.String(), now); err != nil {
		return Caller{}, err
	}
	a.lastUsedMu.Lock()
	a.lastUsed[tok.ID] = now
	a.lastUsedMu.Unlock()
	return Caller{Subject: rec.GetSubject(), TokenID: tok.ID}, nil
}

// Reauthenticate checks, by its id alone, a token that another node
// authenticated: it must still be known here, unrevoked and unexpired. The
// leader calls it for the writes followers forward, so that a follower's
// older view of the tokens never decides who acts.
func (a *Authorizer) Reauthenticate(id string) (Caller, error) {
	tok := Token{ID: id}
	rec, err := a.state.Token(id)
	if errors.Is(err, fsm.ErrNotFound) {
		return Caller{}, fmt.Errorf("%w: token %s is not known", ErrUnauthenticated, tok)
	}
	if err != nil {
		return Caller{}, fmt.Errorf("look up token: %w", err)
	}
	if err := usable(rec, tok.String(), a.now()); err != nil {
		return Caller{}, err
	}
	return Caller{Subject: rec.GetSubject(), TokenID: id}, nil
}

// usable refuses a revoked or expired token; name is how errors show it
// (never with its secret).
func usable(rec *fsm.Token, name string, now time.Time) error {
	if rec.GetRevoked() {
		return fmt.Errorf("%w: token %s is revoked", ErrUnauthenticated, name)
	}
	if exp := rec.GetExpiresUnixNano(); exp != 0 && now.UnixNano() >= exp {
		return fmt.Errorf("%w: token %s expired at %s", ErrUnauthenticated, name, time.Unix(0, exp).UTC().Format(time.RFC3339))
	}
	return nil
}

// holders returns the groups subject is in (nested ones expanded) and the
// subjects whose grants it holds: itself, then each of those groups.
func (a *Authorizer) holders(subject string) (groups, holders []string, err error) {
	groups, err = a.state.GroupsOf(subject)
	if err != nil {
		return nil, nil, fmt.Errorf("expand groups of %s: %w", subject, err)
	}
	holders = append(make([]string, 0, 1+len(groups)), subject)
	for _, g := range groups {
		holders = append(holders, events.KindGroup+":"+g)
	}
	return groups, holders, nil
}

// GrantsHeld returns the groups subject is in and every grant it holds,
// directly or through them, in the order Check considers them; expired
// ones included (GrantExpired tells them), so that whoami can say why
// access ended.
func (a *Authorizer) GrantsHeld(subject string) (groups []string, grants []*fsm.Grant, err error) {
	groups, holders, err := a.holders(subject)
	if err != nil {
		return nil, nil, err
	}
	for _, h := range holders {
		gs, err := a.state.Grants(h)
		if err != nil {
			return nil, nil, fmt.Errorf("grants of %s: %w", h, err)
		}
		grants = append(grants, gs...)
	}
	return groups, grants, nil
}

// Check decides whether subject holds privilege on resource, directly or
// through a group (nested groups included). A grant whose expiry has passed
// by this node's clock allows nothing, whether or not the leader has
// removed it yet; if only such a grant covers the request, the reason says
// so.
func (a *Authorizer) Check(subject, privilege, resource string) (Decision, error) {
	_, holders, err := a.holders(subject)
	if err != nil {
		return Decision{}, err
	}
	now := a.now()
	var lapsed *fsm.Grant
	for _, h := range holders {
		grants, err := a.state.Grants(h)
		if err != nil {
			return Decision{}, fmt.Errorf("grants of %s: %w", h, err)
		}
		for _, g := range grants {
			if !covers(g, privilege, resource) {
				continue
			}
			if grantExpired(g, now) {
				if lapsed == nil {
					lapsed = g
				}
				continue
			}
			d := Decision{Allowed: true, Grant: g}
			if h != subject {
				d.Via = h
			}
			d.Reason = fmt.Sprintf("allowed by grant %s %s %s", g.GetSubject(), g.GetPrivilege(), g.GetResource())
			if exp := g.GetExpiresUnixNano(); exp != 0 {
				d.Reason += " until " + fmtExpiry(exp)
			}
			return d, nil
		}
	}
	if lapsed != nil {
		return Decision{Reason: fmt.Sprintf("%s has no grant for %s on %s: grant %s %s %s expired at %s (extend it with: hpt grants add %s %s %s --ttl D)",
			subject, privilege, resource, lapsed.GetSubject(), lapsed.GetPrivilege(), lapsed.GetResource(), fmtExpiry(lapsed.GetExpiresUnixNano()),
			shellQuote(lapsed.GetSubject()), shellQuote(lapsed.GetPrivilege()), shellQuote(lapsed.GetResource()))}, nil
	}
	why := ""
	if events.IsRole(privilege) {
		// Say so when admin is what the subject expected to be enough.
		for _, h := range holders {
			grants, err := a.state.Grants(h)
			if err != nil {
				return Decision{}, fmt.Errorf("grants of %s: %w", h, err)
			}
			for _, g := range grants {
				if g.GetPrivilege() == events.PrivAdmin && coversResource(g.GetResource(), resource) {
					why = fmt.Sprintf("; its grant %s %s %s does not imply it: admin never implies a destination role, which needs a grant of its own", g.GetSubject(), g.GetPrivilege(), g.GetResource())
					break
				}
			}
			if why != "" {
				break
			}
		}
	}
	return Decision{Reason: fmt.Sprintf("%s has no grant for %s on %s%s (add one with: hpt grants add %s %s %s)",
		subject, privilege, resource, why, shellQuote(subject), shellQuote(privilege), shellQuote(resource))}, nil
}

// GrantExpired reports whether g's expiry has passed by this node's clock:
// then it allows nothing.
func (a *Authorizer) GrantExpired(g *fsm.Grant) bool { return grantExpired(g, a.now()) }

func grantExpired(g *fsm.Grant, now time.Time) bool {
	exp := g.GetExpiresUnixNano()
	return exp != 0 && now.UnixNano() >= exp
}

func fmtExpiry(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

// covers reports whether grant g satisfies privilege on resource, its
// expiry aside (Check judges that). admin
// implies every privilege but the destination roles (login:…, db:…,
// kube:…, connect): logging in to a host as a Unix user is a different
// power from managing the cluster, and is only ever granted by name, as
// Teleport does not give admins logins either. See coversResource for
// resources.
func covers(g *fsm.Grant, privilege, resource string) bool {
	if g.GetPrivilege() != privilege && (g.GetPrivilege() != events.PrivAdmin || events.IsRole(privilege)) {
		return false
	}
	return coversResource(g.GetResource(), resource)
}

// coversResource reports whether a grant's resource covers resource: "*"
// covers everything, a glob is matched with path.Match ("targets/web-*"
// covers "targets/web-1"), and a grant on a whole destination covers its
// Kubernetes namespaces (events.MatchDestination).
func coversResource(glob, resource string) bool {
	if glob == "*" || glob == resource {
		return true
	}
	if ok, err := path.Match(glob, resource); err == nil && ok {
		return true
	}
	return events.MatchDestination(glob, resource)
}

// A RoleGrant is one destination role a subject holds on a destination.
type RoleGrant struct {
	// Role is the role's value: the Unix user of login and
	// login-forward, the PostgreSQL role of db, the ClusterRole of kube;
	// empty for connect.
	Role string
	// Namespace is, for kube roles granted on
	// destinations/NAME/NAMESPACE-GLOB, that namespace glob; empty for a
	// role held on the whole destination (cluster-wide).
	Namespace string
	// Grant allows it, held directly or through the group Via.
	Grant *fsm.Grant
	Via   string
}

// Roles returns the roles of kind ("login", "login-forward", "db", "kube",
// "connect") that subject holds on destination, directly or through its
// groups, for the issuers of credentials. Each role (and namespace) is
// listed once, with the first grant that allows it in Check's order (the
// subject's own grants, then its groups'); none is an empty list. admin
// implies none of them (see covers), and an expired grant allows none.
func (a *Authorizer) Roles(subject, kind, destination string) ([]RoleGrant, error) {
	known := false
	for _, k := range events.RoleKinds {
		known = known || k == kind
	}
	if !known {
		return nil, fmt.Errorf("%w: role kind %q is not one of %s", events.ErrInvalidName, kind, strings.Join(events.RoleKinds[:], ", "))
	}
	if err := events.CheckDestinationName(destination); err != nil {
		return nil, err
	}
	_, holders, err := a.holders(subject)
	if err != nil {
		return nil, err
	}
	res := "destinations/" + destination
	now := a.now()
	var out []RoleGrant
	seen := map[[2]string]bool{}
	for _, h := range holders {
		grants, err := a.state.Grants(h)
		if err != nil {
			return nil, fmt.Errorf("grants of %s: %w", h, err)
		}
		for _, g := range grants {
			if grantExpired(g, now) {
				continue
			}
			r, err := events.ParseRole(g.GetPrivilege())
			if err != nil || r.Kind != kind {
				continue
			}
			name, ns, ok := events.DestinationResource(g.GetResource())
			if !ok || !events.MatchDestination("destinations/"+name, res) {
				continue
			}
			if seen[[2]string{r.Value, ns}] {
				continue
			}
			seen[[2]string{r.Value, ns}] = true
			rg := RoleGrant{Role: r.Value, Namespace: ns, Grant: g}
			if h != subject {
				rg.Via = h
			}
			out = append(out, rg)
		}
	}
	return out, nil
}

// authorize authenticates the caller of method and checks its rule.
func (a *Authorizer) authorize(ctx context.Context, method string, req any) (context.Context, error) {
	rule, ctx, err := a.authenticate(ctx, method)
	if err != nil {
		return nil, err
	}
	if err := a.permit(ctx, rule, req); err != nil {
		return nil, err
	}
	return ctx, nil
}

// authenticate finds method's rule and proves the caller; the returned
// context carries the caller. Grants are checked by permit.
func (a *Authorizer) authenticate(ctx context.Context, method string) (Rule, context.Context, error) {
	rule, ok := a.rules[method]
	if !ok {
		// Deny by default: a method without a rule is unreachable.
		return Rule{}, nil, status.Errorf(codes.PermissionDenied, "method %s has no authorization rule", method)
	}
	switch rule.Peer {
	case PeerNode:
		key := pinned.PeerKeyFromContext(ctx)
		if key == nil || !key.Equal(a.clusterKey) {
			return Rule{}, nil, status.Errorf(codes.PermissionDenied, "%s is for cluster nodes only", method)
		}
		return rule, context.WithValue(ctx, callerKey{}, Caller{Node: true}), nil
	case PeerTarget:
		key := pinned.PeerKeyFromContext(ctx)
		if key == nil {
			return Rule{}, nil, status.Errorf(codes.PermissionDenied, "%s is for agents only", method)
		}
		return rule, context.WithValue(ctx, callerKey{}, Caller{TargetKey: key}), nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var bearer string
	for _, v := range md.Get("authorization") {
		if b, ok := strings.CutPrefix(v, "Bearer "); ok {
			bearer = b
		}
	}
	if bearer == "" {
		return Rule{}, nil, status.Error(codes.Unauthenticated, "no API token: set HPT_TOKEN or --token")
	}
	caller, err := a.Authenticate(bearer)
	if err != nil {
		if errors.Is(err, ErrUnauthenticated) {
			return Rule{}, nil, status.Error(codes.Unauthenticated, err.Error())
		}
		return Rule{}, nil, status.Error(codes.Unavailable, err.Error())
	}
	return rule, context.WithValue(ctx, callerKey{}, caller), nil
}

// permit checks rule's grant for the authenticated caller in ctx, and
// failing that whether the caller owns what req names (Rule.Owner).
func (a *Authorizer) permit(ctx context.Context, rule Rule, req any) error {
	caller, _ := CallerFrom(ctx)
	if rule.Peer != PeerToken || rule.Privilege == "" {
		// Peers were proven at TLS; any valid token will do (whoami).
		return nil
	}
	d, err := a.Check(caller.Subject, rule.Privilege, rule.resource(req))
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if d.Allowed {
		return nil
	}
	if rule.Owner != nil && req != nil {
		owner, err := rule.Owner(ctx, req)
		if err != nil {
			return err
		}
		if owner != "" && owner == caller.Subject {
			return nil
		}
	}
	// The same denial whether or not the resource exists.
	return status.Errorf(codes.PermissionDenied, "denied: %s", d.Reason)
}

// Require checks, inside a handler, a further privilege the call needs (a
// job's provision right on each target, say). Node callers pass.
func (a *Authorizer) Require(ctx context.Context, privilege, resource string) error {
	c, ok := CallerFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no authenticated caller")
	}
	if c.Node {
		return nil
	}
	d, err := a.Check(c.Subject, privilege, resource)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if !d.Allowed {
		return status.Errorf(codes.PermissionDenied, "denied: %s", d.Reason)
	}
	return nil
}

// UnaryInterceptor authorizes every unary call.
func (a *Authorizer) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.authorize(ctx, info.FullMethod, req)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// StreamInterceptor authorizes every streaming call.
func (a *Authorizer) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	rule, ctx, err := a.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	as := &authedStream{ServerStream: ss, ctx: ctx}
	if rule.Owner != nil && info.IsServerStream && !info.IsClientStream {
		// The grant check may need the request (whose resource it
		// is): make it on the one request message, before the handler
		// sees it.
		as.check = func(req any) error { return a.permit(ctx, rule, req) }
	} else if err := a.permit(ctx, rule, nil); err != nil {
		return err
	}
	return handler(srv, as)
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
	// check, if set, authorizes the first message received.
	check func(req any) error
}

func (s *authedStream) Context() context.Context { return s.ctx }

func (s *authedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if check := s.check; check != nil {
		s.check = nil
		return check(m)
	}
	return nil
}

// WithCaller returns ctx carrying c as the authenticated caller; for calls a
// node relays on behalf of a caller it authenticated itself.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}
