package fsm

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/hpt-dev/hpt/events"
)

// Credential keys (see the key layout in fsm.go):
//
//	c <id>                                   -> Credential
//	x <grant subject> 0x00 <priv> 0x00 <res> 0x00 <id> -> empty (credentials of a grant)
//	X <subject> 0x00 <id>                    -> empty (credentials of a subject)
//	y <token id> 0x00 <id>                   -> empty (credentials asked with a token)
//	R <destination> 0x00 <id>                -> empty (revoked credentials of a destination)
//
// The x, X and y entries of a credential exist while it may still need a
// derived revocation: revoking it (by id or derived) deletes them. Entries
// of a credential that expired unrevoked are pruned by the next cause that
// visits them (removing that grant, subject or token: its scan deletes the
// expired entries it meets without revoking them), so the scans stay
// proportional to what hangs off that cause. R entries feed the KRL
// (RevokedCredentials); those past valid_before are pruned by the next
// revocation on the same destination. The c records stay, for the audit.
const (
	tagCred        = 'c'
	tagCredOfGrant = 'x'
	tagCredOfSubj  = 'X'
	tagCredOfToken = 'y'
	tagCredRevoked = 'R'
)

// Reasons of derived revocations.
const (
	ReasonGrantRemoved   = "grant removed"
	ReasonGrantExpired   = "grant expired"
	ReasonSubjectRemoved = "subject removed"
	ReasonTokenRevoked   = "token revoked"
)

// Credential kinds issued today.
var credentialKinds = [...]string{events.DestSSH, events.DestPostgres, events.DestKubernetes}

func credKey(id string) []byte { return key(tagCred, id) }

func credIndexKeys(c *Credential) [][]byte {
	ks := [][]byte{key(tagCredOfSubj, c.GetSubject(), c.GetId())}
	if c.GetGrantSubject() != "" {
		ks = append(ks, key(tagCredOfGrant, c.GetGrantSubject(), c.GetGrantPrivilege(), c.GetGrantResource(), c.GetId()))
	}
	if c.GetTokenId() != "" {
		ks = append(ks, key(tagCredOfToken, c.GetTokenId(), c.GetId()))
	}
	return ks
}

func (t *txn) issueCredential(p *events.CredentialIssued) *Rejection {
	id := p.GetId()
	if err := events.CheckName("credential", id); err != nil {
		return t.reject(ErrInvalid, "credential id: %v", err)
	}
	s, err := events.ParseSubject(p.GetSubject())
	if err != nil || s.Kind == events.KindGroup {
		return t.reject(ErrInvalid, "credential %s: subject %q: want user:NAME or machine:NAME", id, p.GetSubject())
	}
	known := false
	for _, k := range credentialKinds {
		known = known || k == p.GetKind()
	}
	if !known {
		return t.reject(ErrInvalid, "credential %s: kind %q is not one of ssh, postgres, kubernetes", id, p.GetKind())
	}
	if p.GetValidBeforeUnixNano() <= p.GetValidAfterUnixNano() {
		return t.reject(ErrInvalid, "credential %s: valid_before must be after valid_after", id)
	}
	if t.has(credKey(id)) {
		return t.reject(ErrExists, "credential %s already exists", id)
	}
	if !t.subjectExists(s) {
		return t.reject(ErrNotFound, "credential %s: %s does not exist", id, s)
	}
	c := &Credential{
		Id: id, Subject: s.String(), Destination: p.GetDestination(), Kind: p.GetKind(), Role: p.GetRole(),
		Principals: p.GetPrincipals(), GrantSubject: p.GetGrantSubject(), GrantPrivilege: p.GetGrantPrivilege(),
		GrantResource: p.GetGrantResource(), Serial: p.GetSerial(), UserName: p.GetUserName(),
		PublicKeyFingerprint: p.GetPublicKeyFingerprint(), ValidAfterUnixNano: p.GetValidAfterUnixNano(),
		ValidBeforeUnixNano: p.GetValidBeforeUnixNano(), TokenId: p.GetTokenId(), Created: t.origin(),
	}
	t.put(credKey(id), c)
	for _, k := range credIndexKeys(c) {
		t.set(k, nil)
	}
	return nil
}

// revokeCredentialEvent applies CredentialRevoked. Revoking a credential
// that is already revoked is refused (ErrConflict), as revoking a token is.
func (t *txn) revokeCredentialEvent(p *events.CredentialRevoked) *Rejection {
	var c Credential
	if !t.get(credKey(p.GetId()), &c) {
		return t.reject(ErrNotFound, "credential %s does not exist", p.GetId())
	}
	if c.GetRevoked() {
		return t.reject(ErrConflict, "credential %s is already revoked", p.GetId())
	}
	reason := p.GetReason()
	if reason == "" {
		reason = "revoked"
	}
	t.revokeCredential(&c, reason)
	return nil
}

// revokeCredential marks c revoked and moves it from the cause indexes to
// the destination's revoked index. It never rejects, so derived
// revocations can run after their cause wrote.
func (t *txn) revokeCredential(c *Credential, reason string) {
	c.Revoked = true
	c.RevokedReason = reason
	c.RevokedBy = t.origin()
	t.put(credKey(c.GetId()), c)
	for _, k := range credIndexKeys(c) {
		t.del(k)
	}
	t.pruneRevoked(c.GetDestination())
	t.set(key(tagCredRevoked, c.GetDestination(), c.GetId()), nil)
}

// pruneRevoked deletes the revoked-index entries of dest whose
// credentials are past valid_before at the event's time: a KRL need not
// list a certificate sshd refuses anyway.
func (t *txn) pruneRevoked(dest string) {
	prefix := key(tagCredRevoked, dest, "")
	for _, k := range t.keysWithPrefix(prefix) {
		var c Credential
		if !t.get(credKey(string(k[len(prefix):])), &c) || c.GetValidBeforeUnixNano() <= t.ev.GetTimeUnixNano() {
			t.del(k)
		}
	}
}

// revokeIndexed revokes, with reason, each live credential whose id ends
// the keys under prefix, and drops the entries of expired ones (see the
// key layout above).
func (t *txn) revokeIndexed(prefix []byte, reason string) {
	for _, k := range t.keysWithPrefix(prefix) {
		var c Credential
		if !t.get(credKey(string(k[len(prefix):])), &c) || c.GetRevoked() {
			t.del(k)
			continue
		}
		if c.GetValidBeforeUnixNano() <= t.ev.GetTimeUnixNano() {
			for _, ik := range credIndexKeys(&c) {
				t.del(ik)
			}
			continue
		}
		t.revokeCredential(&c, reason)
	}
}

func (t *txn) revokeCredentialsOfGrant(subject, priv, res, reason string) {
	t.revokeIndexed(key(tagCredOfGrant, subject, priv, res, ""), reason)
}

func (t *txn) revokeCredentialsOfSubject(subject string) {
	t.revokeIndexed(key(tagCredOfSubj, subject, ""), ReasonSubjectRemoved)
}

func (t *txn) revokeCredentialsOfToken(id string) {
	t.revokeIndexed(key(tagCredOfToken, id, ""), ReasonTokenRevoked)
}

// CredentialFilter selects credentials for Credentials.
type CredentialFilter struct {
	// Subject, if set, keeps only that subject's credentials.
	Subject string
	// Destination, if set, keeps only credentials for it.
	Destination string
	// All keeps expired and revoked credentials too; otherwise only live
	// ones (not revoked, valid_before after Now).
	All bool
	// Now is the caller's clock (the FSM reads none).
	Now time.Time
}

// CredentialStatus is "live", "expired" or "revoked" at now.
func CredentialStatus(c *Credential, now time.Time) string {
	switch {
	case c.GetRevoked():
		return "revoked"
	case c.GetValidBeforeUnixNano() <= now.UnixNano():
		return "expired"
	}
	return "live"
}

// Credentials lists credentials matching filter in id order.
func (f *FSM) Credentials(filter CredentialFilter) ([]*Credential, error) {
	all, err := scanRecords[Credential](f, []byte{tagCred})
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	var out []*Credential
	for _, c := range all {
		if filter.Subject != "" && c.GetSubject() != filter.Subject ||
			filter.Destination != "" && c.GetDestination() != filter.Destination ||
			!filter.All && CredentialStatus(c, filter.Now) != "live" {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// Credential returns the credential with id.
func (f *FSM) Credential(id string) (*Credential, error) {
	var c Credential
	found, err := f.getRecord(credKey(id), &c)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("credential %s: %w", id, ErrNotFound)
	}
	return &c, nil
}

// RevokedCredentials lists, in id order, the credentials for destination
// that are revoked and not yet past valid_before at now: what the
// destination's key revocation list must hold.
func (f *FSM) RevokedCredentials(destination string, now time.Time) ([]*Credential, error) {
	var out []*Credential
	err := f.read(func(db *pebble.DB) error {
		prefix := key(tagCredRevoked, destination, "")
		var ids []string
		if err := scanDB(db, prefix, prefixEnd(prefix), func(k, _ []byte) (bool, error) {
			ids = append(ids, string(k[len(prefix):]))
			return true, nil
		}); err != nil {
			return err
		}
		for _, id := range ids {
			var c Credential
			found, err := getProto(db, credKey(id), &c)
			if err != nil {
				return err
			}
			if found && c.GetValidBeforeUnixNano() > now.UnixNano() {
				out = append(out, &c)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("revoked credentials of %q: %w", destination, err)
	}
	return out, nil
}
