package node

import (
	"crypto/rand"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/rpc"
)

// The node side of the SSH connector (SPEC section 11 SSH, docs/access.md):
// every node keeps each connector agent connected to it supplied with the
// sshd state its own applied log implies. It never asks the leader, so a
// revocation reaches the connectors of every node as soon as that node
// applies it.

const (
	// hostCertLifetime is how long a connector's host certificate is
	// valid; it is renewed once less than a third of it is left, so a
	// connector cut off from every node keeps a valid one for 20 days.
	hostCertLifetime = 30 * 24 * time.Hour
	// sshAccessEvery bounds how long a state may wait for a time-driven
	// change (an expiry, a host certificate's renewal) without an event.
	sshAccessEvery = 2 * time.Second
	// sshAccessCoalesce is the least time between two rounds: a burst of
	// events costs one recompute per connector per this long.
	sshAccessCoalesce = 100 * time.Millisecond
	// maxHostKeys bounds the host keys a connector may report; only the
	// first is signed (SSHAccess carries one host certificate).
	maxHostKeys = 16
)

// sshState is what computeSSHAccess reads of the applied state.
type sshState interface {
	AppliedIndex() uint64
	DestinationsOfConnector(target string) ([]*fsm.Destination, error)
	Grants(subject string) ([]*fsm.Grant, error)
	RevokedCredentials(destination string, now time.Time) ([]*fsm.Credential, error)
}

// revokedOf is the one place revoked certificates enter a connector's
// state: the serials and KeyIds of dest's revoked ssh credentials that
// have not yet expired at now (an expired certificate needs no KRL entry:
// sshd refuses it by its validity).
func revokedOf(st sshState, dest string, now time.Time) (serials []uint64, keyIDs []string, err error) {
	creds, err := st.RevokedCredentials(dest, now)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range creds {
		if c.GetKind() != events.DestSSH {
			continue
		}
		if c.GetSerial() != 0 {
			serials = append(serials, c.GetSerial())
		}
		keyIDs = append(keyIDs, sshca.KeyID(c.GetSubject(), c.GetId()))
	}
	return serials, keyIDs, nil
}

// hostCert is a connector's host certificate as last signed, kept so that
// a push does not sign again while it is still good.
type hostCert struct {
	key        string // the host key it certifies, authorized_keys format
	principals []string
	cert       *ssh.Certificate
	text       []byte // authorized_keys format
}

// fresh reports whether c certifies key for principals and has at least a
// third of its lifetime left at now.
func (c *hostCert) fresh(key string, principals []string, now time.Time) bool {
	if c == nil || c.key != key || !slices.Equal(c.principals, principals) {
		return false
	}
	after := time.Unix(int64(c.cert.ValidAfter), 0)
	before := time.Unix(int64(c.cert.ValidBefore), 0)
	return now.Add(before.Sub(after) / 3).Before(before)
}

// computeSSHAccess is the sshd state target's agent should hold at now:
// the user CA, for every ssh destination D the target is the connector of
// and every grant (of any subject) of login:L or login-forward:L covering
// destinations/D, the principal L@D; the revoked certificates of those
// destinations; and a host certificate for the first of hostKeys (the
// agent's report, authorized_keys format) naming every D, reused from prev
// while it is fresh. It returns nil when target is the connector of no ssh
// destination and reported no host keys: an agent that is no SSH connector
// gets nothing. A grant expired at now is skipped: it allows nothing, even
// before the leader removes it.
func computeSSHAccess(st sshState, target string, now time.Time, cas SSHCAs, hostKeys [][]byte, prev *hostCert) (*rpc.SSHAccess, *hostCert, error) {
	if !cas.Present() {
		return nil, prev, nil
	}
	index := st.AppliedIndex()
	all, err := st.DestinationsOfConnector(target)
	if err != nil {
		return nil, prev, err
	}
	var dests []*fsm.Destination
	for _, d := range all {
		if d.GetKind() == events.DestSSH {
			dests = append(dests, d)
		}
	}
	if len(dests) == 0 && len(hostKeys) == 0 {
		return nil, prev, nil
	}
	grants, err := st.Grants("")
	if err != nil {
		return nil, prev, fmt.Errorf("grants: %w", err)
	}
	byLogin := map[string][]string{}
	var serials []uint64
	var keyIDs []string
	var hostPrincipals []string
	for _, d := range dests {
		res := "destinations/" + d.GetName()
		for _, g := range grants {
			if exp := g.GetExpiresUnixNano(); exp != 0 && now.UnixNano() >= exp {
				continue
			}
			r, err := events.ParseRole(g.GetPrivilege())
			if err != nil || (r.Kind != events.RoleLogin && r.Kind != events.RoleLoginForward) {
				continue
			}
			if !events.MatchDestination(g.GetResource(), res) {
				continue
			}
			p, err := sshca.Principal(r.Value, d.GetName())
			if err != nil {
				continue // a name the log accepted but sshd cannot take
			}
			byLogin[r.Value] = append(byLogin[r.Value], p)
		}
		s, k, err := revokedOf(st, d.GetName(), now)
		if err != nil {
			return nil, prev, fmt.Errorf("revoked credentials of %s: %w", d.GetName(), err)
		}
		serials, keyIDs = append(serials, s...), append(keyIDs, k...)
		hp, err := sshca.HostPrincipals(d.GetName(), d.GetAddr())
		if err != nil {
			return nil, prev, fmt.Errorf("host principals of %s: %w", d.GetName(), err)
		}
		hostPrincipals = append(hostPrincipals, hp...)
	}
	out := &rpc.SSHAccess{Index: index, UserCaPublicKey: ssh.MarshalAuthorizedKey(cas.User.PublicKey()),
		PrincipalsByLogin: map[string]*rpc.Principals{}}
	for l, ps := range byLogin {
		slices.Sort(ps)
		out.PrincipalsByLogin[l] = &rpc.Principals{Principals: slices.Compact(ps)}
	}
	slices.Sort(serials)
	out.RevokedSerials = slices.Compact(serials)
	slices.Sort(keyIDs)
	out.RevokedKeyIds = slices.Compact(keyIDs)

	slices.Sort(hostPrincipals)
	hostPrincipals = slices.Compact(hostPrincipals)
	if len(hostKeys) == 0 || len(dests) == 0 {
		return out, prev, nil
	}
	key := string(hostKeys[0])
	if !prev.fresh(key, hostPrincipals, now) {
		pub, _, _, _, err := ssh.ParseAuthorizedKey(hostKeys[0])
		if err != nil {
			return nil, prev, fmt.Errorf("host key: %w", err)
		}
		serial, err := sshca.NewSerial(rand.Reader)
		if err != nil {
			return nil, prev, err
		}
		// Named after the first destination: KeyId host:NAME.
		cert, err := sshca.IssueHost(rand.Reader, cas.Host, sshca.HostCert{PublicKey: pub, Destination: dests[0].GetName(),
			Principals: hostPrincipals, ValidAfter: now.Add(-sshca.Backdate), ValidBefore: now.Add(hostCertLifetime), Serial: serial})
		if err != nil {
			return nil, prev, fmt.Errorf("sign host certificate of %s: %w", target, err)
		}
		prev = &hostCert{key: key, principals: hostPrincipals, cert: cert, text: ssh.MarshalAuthorizedKey(cert)}
	}
	out.HostCertificate = prev.text
	return out, prev, nil
}

// sameSSHAccess reports whether a and b ask the same of sshd: everything
// but the index, which changes with every applied event.
func sameSSHAccess(a, b *rpc.SSHAccess) bool {
	if a == nil || b == nil {
		return a == b
	}
	ac, bc := proto.Clone(a).(*rpc.SSHAccess), proto.Clone(b).(*rpc.SSHAccess)
	ac.Index, bc.Index = 0, 0
	return proto.Equal(ac, bc)
}

// checkHostKeys checks a connector's HostKeys report (bytes from the
// agent): at most maxHostKeys keys, each one public key in authorized_keys
// format.
func checkHostKeys(hk *rpc.HostKeys) ([][]byte, error) {
	keys := hk.GetPublicKeys()
	if len(keys) > maxHostKeys {
		return nil, fmt.Errorf("host_keys: %d keys, at most %d", len(keys), maxHostKeys)
	}
	for i, k := range keys {
		if _, _, _, _, err := ssh.ParseAuthorizedKey(k); err != nil {
			return nil, fmt.Errorf("host_keys[%d]: %w", i, err)
		}
	}
	return keys, nil
}

// roundState is the applied state as one round of pushes reads it: the
// grants are read once for every connector.
type roundState struct {
	*fsm.FSM
	grants []*fsm.Grant
	read   bool
	err    error
}

func (r *roundState) Grants(subject string) ([]*fsm.Grant, error) {
	if subject != "" {
		return r.FSM.Grants(subject)
	}
	if !r.read {
		r.grants, r.err = r.FSM.Grants("")
		r.read = true
	}
	return r.grants, r.err
}

// nudgeSSHAccess asks sshAccessLoop for a round soon.
func (n *Node) nudgeSSHAccess() {
	select {
	case n.sshAccessCh <- struct{}{}:
	default:
	}
}

// sshAccessLoop recomputes the sshd state of every connector connected to
// this node when nudged (an applied event that may change it, a connect, a
// host key report) and every sshAccessEvery (for what time changes), at
// most once per sshAccessCoalesce, and sends each agent its state when it
// differs from the last one sent on its stream. One loop per node, not one
// per agent.
func (n *Node) sshAccessLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(sshAccessEvery)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.sshAccessCh:
		case <-tick.C:
		}
		if wait := sshAccessCoalesce - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-n.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		n.pushSSHAccess()
	}
}

// pushSSHAccess runs one round over the sessions of this node.
func (n *Node) pushSSHAccess() {
	if !n.cfg.SSHCAs.Present() {
		return
	}
	now := time.Now()
	if n.cfg.Clock != nil {
		now = n.cfg.Clock.Now()
	}
	st := &roundState{FSM: n.fsm}
	for _, s := range n.fleet.all() {
		s.sshMu.Lock()
		keys, prev := s.hostKeys, s.hostCert
		s.sshMu.Unlock()
		acc, hc, err := computeSSHAccess(st, s.target, now, n.cfg.SSHCAs, keys, prev)
		if err != nil {
			n.log.Warn("compute ssh access", "target", s.target, "err", err)
			continue
		}
		s.sshMu.Lock()
		s.hostCert = hc
		s.sshMu.Unlock()
		if acc != nil {
			s.offerSSHAccess(acc)
		}
	}
}

// setHostKeys records a connector's HostKeys report on its session.
func (n *Node) setHostKeys(s *session, hk *rpc.HostKeys) error {
	keys, err := checkHostKeys(hk)
	if err != nil {
		return err
	}
	s.sshMu.Lock()
	s.hostKeys = keys
	s.sshMu.Unlock()
	n.nudgeSSHAccess()
	return nil
}

// offerSSHAccess sends m on the stream unless it asks what the last one
// sent did. The send runs on a goroutine of the session's, at most one at
// a time, latest state wins, so a stuck stream holds up only itself; the
// goroutine ends when nothing is waiting or the stream fails.
func (s *session) offerSSHAccess(m *rpc.SSHAccess) {
	s.sshMu.Lock()
	defer s.sshMu.Unlock()
	if sameSSHAccess(m, s.sshSent) {
		return
	}
	s.sshSent, s.sshNext = m, m
	if s.sshSending {
		return
	}
	s.sshSending = true
	go func() {
		for {
			s.sshMu.Lock()
			next := s.sshNext
			s.sshNext = nil
			if next == nil {
				s.sshSending = false
				s.sshMu.Unlock()
				return
			}
			s.sshMu.Unlock()
			if err := s.send(&rpc.NodeMessage{Msg: &rpc.NodeMessage_SshAccess{SshAccess: next}}); err != nil {
				s.sshMu.Lock()
				s.sshSending, s.sshNext = false, nil
				s.sshMu.Unlock()
				return
			}
		}
	}()
}

// concernsConnectors tells the applied events that may change a
// connector's sshd state.
func concernsConnectors(t events.Type) bool {
	switch t {
	case events.Type_TYPE_DESTINATION_ADDED, events.Type_TYPE_DESTINATION_REMOVED,
		events.Type_TYPE_GRANT_ADDED, events.Type_TYPE_GRANT_REMOVED,
		events.Type_TYPE_USER_REMOVED, events.Type_TYPE_MACHINE_REMOVED, events.Type_TYPE_GROUP_REMOVED,
		events.Type_TYPE_TOKEN_REVOKED, events.Type_TYPE_TARGET_KEY_REGISTERED, events.Type_TYPE_TARGET_KEY_REVOKED,
		events.Type_TYPE_CREDENTIAL_ISSUED, events.Type_TYPE_CREDENTIAL_REVOKED,
		events.Type_TYPE_SNAPSHOT_RESTORED:
		return true
	}
	return false
}
