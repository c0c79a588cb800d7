package fsm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
)

// txn applies one event to a batch. Handlers validate everything before the
// first write: a Rejection after a write would leave half an event in the
// batch, so set and del panic if called after a rejection was prepared, and
// reject panics after a write (see mustNotHaveWritten).
type txn struct {
	b     *pebble.Batch
	ev    *events.Event
	wrote bool
	err   error // first storage error; fatal, reported by the caller
	// jobs collects jobs becoming active or not, for the in-memory set
	// once the batch is committed.
	jobs *[]jobChange
}

func (t *txn) origin() *Origin {
	return &Origin{Index: t.ev.GetIndex(), TimeUnixNano: t.ev.GetTimeUnixNano(), Actor: t.ev.GetActor()}
}

func (t *txn) set(k, v []byte) {
	t.wrote = true
	if err := t.b.Set(k, v, nil); err != nil && t.err == nil {
		t.err = err
	}
}

func (t *txn) del(k []byte) {
	t.wrote = true
	if err := t.b.Delete(k, nil); err != nil && t.err == nil {
		t.err = err
	}
}

func (t *txn) put(k []byte, m proto.Message) {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		if t.err == nil {
			t.err = err
		}
		return
	}
	t.set(k, v)
}

// get reads a record into m; false if absent.
func (t *txn) get(k []byte, m proto.Message) bool {
	found, err := getProto(t.b, k, m)
	if err != nil && t.err == nil {
		t.err = err
	}
	return found
}

func (t *txn) has(k []byte) bool {
	_, c, err := t.b.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false
	}
	if err != nil {
		if t.err == nil {
			t.err = err
		}
		return false
	}
	c.Close()
	return true
}

// keysWithPrefix returns the keys under prefix, in order, as the batch sees
// them (its own writes included).
func (t *txn) keysWithPrefix(prefix []byte) [][]byte {
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		if t.err == nil {
			t.err = err
		}
		return nil
	}
	defer it.Close()
	var out [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, append([]byte(nil), it.Key()...))
	}
	return out
}

func (t *txn) reject(kind error, format string, args ...any) *Rejection {
	if t.wrote {
		panic(fmt.Sprintf("hpt: fsm handler for %s rejected after writing", events.Name(t.ev.GetType())))
	}
	return reject(kind, format, args...)
}

func getProto(r getter, k []byte, m proto.Message) (bool, error) {
	v, c, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer c.Close()
	if err := unmarshalRecord(v, m); err != nil {
		return false, fmt.Errorf("decode record %q: %w", k, err)
	}
	return true, nil
}

// unmarshalRecord decodes a state record and brings one written by an
// earlier version to the current form (see upgradeRecord).
func unmarshalRecord(v []byte, m proto.Message) error {
	if err := proto.Unmarshal(v, m); err != nil {
		return err
	}
	upgradeRecord(m)
	return nil
}

func (t *txn) apply(p proto.Message) *Rejection {
	switch p := p.(type) {
	case *events.ClusterBootstrapped:
		return t.bootstrap(p)
	case *events.UserAdded:
		return t.addIdentity(&Identity{Kind: events.KindUser, Name: p.GetName(), Email: p.GetEmail()})
	case *events.UserRemoved:
		return t.removeIdentity(events.KindUser, p.GetName())
	case *events.MachineAdded:
		return t.addIdentity(&Identity{Kind: events.KindMachine, Name: p.GetName(), Description: p.GetDescription()})
	case *events.MachineRemoved:
		return t.removeIdentity(events.KindMachine, p.GetName())
	case *events.GroupAdded:
		return t.addIdentity(&Identity{Kind: events.KindGroup, Name: p.GetName(), Description: p.GetDescription()})
	case *events.GroupRemoved:
		return t.removeIdentity(events.KindGroup, p.GetName())
	case *events.GroupMemberAdded:
		return t.addMember(p.GetGroup(), p.GetMember())
	case *events.GroupMemberRemoved:
		return t.removeMember(p.GetGroup(), p.GetMember())
	case *events.TokenCreated:
		return t.createToken(p)
	case *events.TokenRevoked:
		return t.revokeToken(p.GetId())
	case *events.TargetKeyRegistered:
		return t.registerTargetKey(p)
	case *events.TargetKeyRevoked:
		return t.revokeTargetKey(p.GetTarget())
	case *events.GrantAdded:
		return t.addGrant(p)
	case *events.GrantRemoved:
		return t.removeGrant(p)
	case *events.DestinationAdded:
		return t.addDestination(p)
	case *events.DestinationRemoved:
		return t.removeDestination(p.GetName())
	case *events.CredentialIssued:
		return t.issueCredential(p)
	case *events.CredentialRevoked:
		return t.revokeCredentialEvent(p)
	case *events.TargetConnected:
		return t.targetConnected(p)
	case *events.TargetDisconnected:
		return t.targetTransition(p.GetTarget(), p.GetNode(), false, nil)
	case *events.JobSubmitted, *events.JobBatchStarted, *events.JobTargetDispatched,
		*events.JobTargetFinished, *events.JobFinished, *events.JobCancelled:
		return t.applyJob(p)
	case *events.NodeJoined, *events.NodeRemoved, *events.BenchWrite, *events.LeaderElected, *events.SnapshotRestored:
		// Recorded for the audit trail only; Raft's configuration is the
		// authority on membership.
		return nil
	}
	return t.reject(ErrInvalid, "event type %s is not applied by this version", events.Name(t.ev.GetType()))
}

func identityKey(kind, name string) []byte { return key(tagIdentity, kind+"/"+name) }

func (t *txn) subjectExists(s events.Subject) bool {
	return t.has(identityKey(s.Kind, s.Name))
}

func (t *txn) bootstrap(p *events.ClusterBootstrapped) *Rejection {
	if t.has(keyBootstrapped) {
		return t.reject(ErrExists, "cluster is already bootstrapped")
	}
	admin, err := events.ParseSubject(p.GetAdminSubject())
	if err != nil || admin.Kind != events.KindUser {
		return t.reject(ErrInvalid, "bootstrap admin subject %q: want user:NAME", p.GetAdminSubject())
	}
	if rej := t.checkToken(p.GetTokenId(), p.GetTokenSecretSha256()); rej != nil {
		return rej
	}
	t.set(keyBootstrapped, u64(t.ev.GetIndex()))
	if !t.subjectExists(admin) {
		t.put(identityKey(admin.Kind, admin.Name), &Identity{Kind: admin.Kind, Name: admin.Name, Created: t.origin()})
	}
	t.writeToken(&Token{Id: p.GetTokenId(), SecretSha256: p.GetTokenSecretSha256(), Subject: admin.String(),
		Description: "bootstrap token from hpt init", Created: t.origin()})
	t.put(grantKey(admin.String(), events.PrivAdmin, "*"), &Grant{Subject: admin.String(), Privilege: events.PrivAdmin, Resource: "*", Created: t.origin()})
	return nil
}

func (t *txn) addIdentity(id *Identity) *Rejection {
	if err := events.CheckName(id.Kind, id.Name); err != nil {
		return t.reject(ErrInvalid, "%v", err)
	}
	k := identityKey(id.Kind, id.Name)
	if t.has(k) {
		return t.reject(ErrExists, "%s %q already exists", id.Kind, id.Name)
	}
	id.Created = t.origin()
	t.put(k, id)
	return nil
}

// removeIdentity deletes a user, machine or group and everything that hangs
// off it: its group memberships (both directions), its grants, and its
// tokens (deleted, so they fail like unknown tokens on every node).
func (t *txn) removeIdentity(kind, name string) *Rejection {
	k := identityKey(kind, name)
	if !t.has(k) {
		return t.reject(ErrNotFound, "%s %q does not exist", kind, name)
	}
	subject := events.Subject{Kind: kind, Name: name}.String()
	t.del(k)
	// Groups this subject is a member of.
	for _, mk := range t.keysWithPrefix(key(tagMemberOf, subject, "")) {
		group := string(mk[len(subject)+2:])
		t.del(mk)
		t.del(key(tagMember, group, subject))
	}
	if kind == events.KindGroup {
		for _, mk := range t.keysWithPrefix(key(tagMember, name, "")) {
			member := string(mk[len(name)+2:])
			t.del(mk)
			t.del(key(tagMemberOf, member, name))
		}
	}
	// Its credentials end with it, before its grants go (which would
	// revoke them too, under another reason).
	t.revokeCredentialsOfSubject(subject)
	for _, gk := range t.keysWithPrefix(key(tagGrant, subject, "")) {
		// A group's members hold credentials issued under its grants.
		t.deleteGrant(gk, ReasonGrantRemoved)
	}
	for _, tk := range t.keysWithPrefix(key(tagTokenOf, subject, "")) {
		id := string(tk[len(subject)+2:])
		t.del(tk)
		t.del(key(tagToken, id))
	}
	return nil
}

func (t *txn) addMember(group, member string) *Rejection {
	if err := events.CheckName(events.KindGroup, group); err != nil {
		return t.reject(ErrInvalid, "%v", err)
	}
	m, err := events.ParseSubject(member)
	if err != nil {
		return t.reject(ErrInvalid, "member: %v", err)
	}
	if !t.has(identityKey(events.KindGroup, group)) {
		return t.reject(ErrNotFound, "group %q does not exist", group)
	}
	if !t.subjectExists(m) {
		return t.reject(ErrNotFound, "%s does not exist", member)
	}
	if t.has(key(tagMember, group, member)) {
		return t.reject(ErrExists, "%s is already a member of group %q", member, group)
	}
	if m.Kind == events.KindGroup {
		// Nested groups are allowed; a cycle is not (it would make
		// membership expansion meaningless).
		if m.Name == group || t.groupReaches(m.Name, group) {
			return t.reject(ErrConflict, "adding group %q to group %q would create a cycle", m.Name, group)
		}
	}
	t.set(key(tagMember, group, member), nil)
	t.set(key(tagMemberOf, member, group), nil)
	return nil
}

// groupReaches reports whether group from contains group to, directly or
// through nested groups.
func (t *txn) groupReaches(from, to string) bool {
	seen := map[string]bool{from: true}
	queue := []string{from}
	for len(queue) > 0 {
		g := queue[0]
		queue = queue[1:]
		prefix := key(tagMember, g, events.KindGroup+":")
		for _, mk := range t.keysWithPrefix(prefix) {
			child := string(mk[len(prefix):])
			if child == to {
				return true
			}
			if !seen[child] {
				seen[child] = true
				queue = append(queue, child)
			}
		}
	}
	return false
}

func (t *txn) removeMember(group, member string) *Rejection {
	if !t.has(key(tagMember, group, member)) {
		return t.reject(ErrNotFound, "%s is not a member of group %q", member, group)
	}
	t.del(key(tagMember, group, member))
	t.del(key(tagMemberOf, member, group))
	return nil
}

// TokenIDLen is the length of a token's public id (see package rpc/auth for
// the token format).
const TokenIDLen = 12

func (t *txn) checkToken(id string, hash []byte) *Rejection {
	if len(id) != TokenIDLen {
		return t.reject(ErrInvalid, "token id %q: want %d characters", id, TokenIDLen)
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return t.reject(ErrInvalid, "token id %q: want base62 characters", id)
		}
	}
	if len(hash) != sha256.Size {
		return t.reject(ErrInvalid, "token secret hash: %d bytes, want %d", len(hash), sha256.Size)
	}
	if t.has(key(tagToken, id)) {
		return t.reject(ErrExists, "token %s already exists", id)
	}
	return nil
}

func (t *txn) writeToken(tok *Token) {
	t.put(key(tagToken, tok.GetId()), tok)
	t.set(key(tagTokenOf, tok.GetSubject(), tok.GetId()), nil)
}

func (t *txn) createToken(p *events.TokenCreated) *Rejection {
	if rej := t.checkToken(p.GetId(), p.GetSecretSha256()); rej != nil {
		return rej
	}
	s, err := events.ParseSubject(p.GetSubject())
	if err != nil {
		return t.reject(ErrInvalid, "token subject: %v", err)
	}
	if s.Kind == events.KindGroup {
		return t.reject(ErrInvalid, "token subject %s: tokens belong to users or machines, not groups", s)
	}
	if !t.subjectExists(s) {
		return t.reject(ErrNotFound, "%s does not exist", s)
	}
	if p.GetExpiresUnixNano() < 0 {
		return t.reject(ErrInvalid, "token expiry is negative")
	}
	t.writeToken(&Token{Id: p.GetId(), SecretSha256: p.GetSecretSha256(), Subject: s.String(),
		ExpiresUnixNano: p.GetExpiresUnixNano(), Description: p.GetDescription(), Created: t.origin()})
	return nil
}

func (t *txn) revokeToken(id string) *Rejection {
	var tok Token
	if !t.get(key(tagToken, id), &tok) {
		return t.reject(ErrNotFound, "token %s does not exist", id)
	}
	if tok.GetRevoked() {
		return t.reject(ErrConflict, "token %s is already revoked", id)
	}
	tok.Revoked = true
	tok.RevokedBy = t.origin()
	t.put(key(tagToken, id), &tok)
	t.revokeCredentialsOfToken(id)
	return nil
}

func (t *txn) registerTargetKey(p *events.TargetKeyRegistered) *Rejection {
	if err := events.CheckName("target", p.GetTarget()); err != nil {
		return t.reject(ErrInvalid, "%v", err)
	}
	if len(p.GetPublicKey()) != ed25519.PublicKeySize {
		return t.reject(ErrInvalid, "target %q: public key has %d bytes, want %d", p.GetTarget(), len(p.GetPublicKey()), ed25519.PublicKeySize)
	}
	var prev TargetKey
	if t.get(key(tagTarget, p.GetTarget()), &prev) && !prev.GetRevoked() {
		return t.reject(ErrExists, "target %q already has a key; revoke it first to rotate", p.GetTarget())
	}
	var owner []byte
	if v, c, err := t.b.Get(key(tagTargetByPK, string(p.GetPublicKey()))); err == nil {
		owner = append(owner, v...)
		c.Close()
	}
	if owner != nil && !bytes.Equal(owner, []byte(p.GetTarget())) {
		return t.reject(ErrConflict, "this public key is already registered for target %q", owner)
	}
	if prev.GetTarget() != "" {
		t.del(key(tagTargetByPK, string(prev.GetPublicKey())))
	}
	t.put(key(tagTarget, p.GetTarget()), &TargetKey{Target: p.GetTarget(), PublicKey: p.GetPublicKey(), Labels: p.GetLabels(), Created: t.origin()})
	t.set(key(tagTargetByPK, string(p.GetPublicKey())), []byte(p.GetTarget()))
	return nil
}

func (t *txn) revokeTargetKey(target string) *Rejection {
	var tk TargetKey
	if !t.get(key(tagTarget, target), &tk) {
		return t.reject(ErrNotFound, "target %q has no key", target)
	}
	if tk.GetRevoked() {
		return t.reject(ErrConflict, "target %q is already revoked", target)
	}
	tk.Revoked = true
	tk.RevokedBy = t.origin()
	tk.Connected = false
	t.put(key(tagTarget, target), &tk)
	return nil
}

// targetConnected records an agent's stream opening. What the agent
// claims about itself is kept apart from the labels set at registration:
// a host holding only its own keystore must not be able to give itself the
// labels that select another role's jobs (and their configs and files).
func (t *txn) targetConnected(p *events.TargetConnected) *Rejection {
	return t.targetTransition(p.GetTarget(), p.GetNode(), true, func(tk *TargetKey) {
		// An entry written by an older node keeps the effect it had then,
		// so that replaying an old log gives the state it gave; new nodes
		// never write the field.
		if legacy := p.GetLabels(); legacy != nil {
			tk.Labels = legacy
		}
		tk.ClaimedLabels = p.GetClaimedLabels()
	})
}

// targetTransition records an agent stream opening or closing on a node,
// with update applied to the record of an opening.
// A disconnect reported by a node that no longer holds the stream (the
// agent already reconnected elsewhere) is refused, so it cannot undo the
// newer connection.
func (t *txn) targetTransition(target, node string, connected bool, update func(*TargetKey)) *Rejection {
	var tk TargetKey
	if !t.get(key(tagTarget, target), &tk) {
		return t.reject(ErrNotFound, "target %q has no key", target)
	}
	if tk.GetRevoked() && connected {
		return t.reject(ErrConflict, "target %q is revoked", target)
	}
	if !connected && (!tk.GetConnected() || tk.GetNode() != node) {
		return t.reject(ErrConflict, "target %q is not connected to node %s", target, node)
	}
	if connected && update != nil {
		update(&tk)
	}
	tk.Connected = connected
	tk.Node = node
	tk.LastTransitionUnixNano = t.ev.GetTimeUnixNano()
	t.put(key(tagTarget, target), &tk)
	return nil
}

func grantKey(subject, priv, res string) []byte { return key(tagGrant, subject, priv, res) }

func (t *txn) addGrant(p *events.GrantAdded) *Rejection {
	subject, priv, res, exp := p.GetSubject(), p.GetPrivilege(), p.GetResource(), p.GetExpiresUnixNano()
	s, err := events.ParseSubject(subject)
	if err != nil {
		return t.reject(ErrInvalid, "grant subject: %v", err)
	}
	if err := events.CheckPrivilege(priv); err != nil {
		return t.reject(ErrInvalid, "%v", err)
	}
	if err := events.CheckResource(res); err != nil {
		return t.reject(ErrInvalid, "%v", err)
	}
	if err := events.CheckGrantScope(priv, res); err != nil {
		return t.reject(ErrInvalid, "%v", err)
	}
	if exp < 0 {
		return t.reject(ErrInvalid, "grant expires_unix_nano: negative")
	}
	if exp != 0 && exp <= t.ev.GetTimeUnixNano() {
		return t.reject(ErrInvalid, "grant expires_unix_nano: %s is not after the time of the event (%s)", fmtNano(exp), fmtNano(t.ev.GetTimeUnixNano()))
	}
	if !t.subjectExists(s) {
		return t.reject(ErrNotFound, "%s does not exist", s)
	}
	k := grantKey(s.String(), priv, res)
	g := &Grant{Subject: s.String(), Privilege: priv, Resource: res, Created: t.origin()}
	var prev Grant
	if t.get(k, &prev) {
		if prev.GetExpiresUnixNano() == exp {
			return t.reject(ErrExists, "grant %s %s %s already exists", s, priv, res)
		}
		// Adding it again with another expiry moves its expiry (extends
		// access, makes it permanent, or shortens it); it keeps its origin.
		g.Created = prev.GetCreated()
		if old := prev.GetExpiresUnixNano(); old != 0 {
			t.del(grantExpiryKey(old, s.String(), priv, res))
		}
	}
	g.ExpiresUnixNano = exp
	t.put(k, g)
	if exp != 0 {
		// The value names the grant, so that reading the index parses no key.
		t.set(grantExpiryKey(exp, s.String(), priv, res), k)
	}
	return nil
}

func (t *txn) removeGrant(p *events.GrantRemoved) *Rejection {
	subject, priv, res := p.GetSubject(), p.GetPrivilege(), p.GetResource()
	k := grantKey(subject, priv, res)
	var g Grant
	if !t.get(k, &g) {
		return t.reject(ErrNotFound, "grant %s %s %s does not exist", subject, priv, res)
	}
	reason := ReasonGrantRemoved
	switch p.GetReason() {
	case "":
	case events.GrantExpired:
		if exp := g.GetExpiresUnixNano(); exp == 0 || exp > t.ev.GetTimeUnixNano() {
			// The grant was extended after the leader saw it expire.
			return t.reject(ErrConflict, "grant %s %s %s has not expired", subject, priv, res)
		}
		reason = ReasonGrantExpired
	default:
		return t.reject(ErrInvalid, "grant removal reason %q: want %q or none", p.GetReason(), events.GrantExpired)
	}
	t.deleteGrant(k, reason)
	return nil
}

// deleteGrant removes the grant stored at k, its expiry entry, and ends
// the credentials it allowed, with reason.
func (t *txn) deleteGrant(k []byte, reason string) {
	var g Grant
	if !t.get(k, &g) {
		return
	}
	if exp := g.GetExpiresUnixNano(); exp != 0 {
		t.del(grantExpiryKey(exp, g.GetSubject(), g.GetPrivilege(), g.GetResource()))
	}
	t.del(k)
	t.revokeCredentialsOfGrant(g.GetSubject(), g.GetPrivilege(), g.GetResource(), reason)
}
