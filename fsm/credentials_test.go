package fsm

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
)

func credIDs(cs []*Credential) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.GetId())
	}
	return strings.Join(out, ",")
}

// credSetup makes alice (two tokens), bob, a group ops with alice, grants
// login:deploy to alice and to ops, and destinations web-1 and db-1.
func credSetup(t *testing.T) (*FSM, *applier) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	a.mustApply(&events.UserAdded{Name: "alice"})
	a.mustApply(&events.UserAdded{Name: "bob"})
	a.mustApply(&events.GroupAdded{Name: "ops"})
	a.mustApply(&events.GroupMemberAdded{Group: "ops", Member: "user:alice"})
	a.mustApply(&events.TokenCreated{Id: "aaaaaaaaaaa1", SecretSha256: sha("1"), Subject: "user:alice"})
	a.mustApply(&events.TokenCreated{Id: "aaaaaaaaaaa2", SecretSha256: sha("2"), Subject: "user:alice"})
	a.mustApply(&events.GrantAdded{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-*"})
	a.mustApply(&events.GrantAdded{Subject: "group:ops", Privilege: "login:ops", Resource: "destinations/*"})
	a.mustApply(&events.DestinationAdded{Name: "web-1", Kind: events.DestSSH, Addr: "127.0.0.1:22"})
	return f, a
}

func issue(id, subject, token, gsubj, gpriv string, before time.Time) *events.CredentialIssued {
	return &events.CredentialIssued{Id: id, Subject: subject, Destination: "web-1", Kind: events.DestSSH, Role: gpriv,
		Principals: []string{strings.TrimPrefix(gpriv, "login:") + "@web-1"}, GrantSubject: gsubj, GrantPrivilege: gpriv,
		GrantResource: "destinations/web-*", Serial: 1, PublicKeyFingerprint: "SHA256:x", TokenId: token,
		ValidAfterUnixNano: t0.Add(-time.Minute).UnixNano(), ValidBeforeUnixNano: before.UnixNano()}
}

func TestCredentialIssueAndRevoke(t *testing.T) {
	f, a := credSetup(t)
	later := t0.Add(time.Hour)
	r := a.mustApply(issue("c-1", "user:alice", "aaaaaaaaaaa1", "user:alice", "login:deploy", later))
	a.mustApply(issue("c-2", "user:bob", "", "", "login:deploy", later))
	if r := a.apply("", issue("c-1", "user:alice", "", "", "login:deploy", later)); !errors.Is(r.Rejected, ErrExists) {
		t.Fatalf("duplicate id: %v", r.Rejected)
	}
	bad := issue("c-3", "user:nobody", "", "", "login:deploy", later)
	if r := a.apply("", bad); !errors.Is(r.Rejected, ErrNotFound) {
		t.Fatalf("unknown subject: %v", r.Rejected)
	}
	bad = issue("c-3", "user:alice", "", "", "login:deploy", t0.Add(-2*time.Minute))
	if r := a.apply("", bad); !errors.Is(r.Rejected, ErrInvalid) {
		t.Fatalf("valid_before before valid_after: %v", r.Rejected)
	}
	c, err := f.Credential("c-1")
	if err != nil || c.GetCreated().GetIndex() != r.Index || c.GetSerial() != 1 || c.GetRevoked() {
		t.Fatalf("Credential(c-1) = %v, %v", c, err)
	}
	if got, _ := f.Credentials(CredentialFilter{Now: t0}); credIDs(got) != "c-1,c-2" {
		t.Fatalf("live = %s", credIDs(got))
	}
	if got, _ := f.Credentials(CredentialFilter{Now: t0, Subject: "user:bob"}); credIDs(got) != "c-2" {
		t.Fatalf("bob's = %s", credIDs(got))
	}
	if got, _ := f.Credentials(CredentialFilter{Now: later}); credIDs(got) != "" {
		t.Fatalf("live at valid_before = %s, want none", credIDs(got))
	}
	a.mustApply(&events.CredentialRevoked{Id: "c-2", Reason: "lost laptop"})
	if r := a.apply("", &events.CredentialRevoked{Id: "c-2"}); !errors.Is(r.Rejected, ErrConflict) {
		t.Fatalf("second revoke: %v", r.Rejected)
	}
	if r := a.apply("", &events.CredentialRevoked{Id: "c-9"}); !errors.Is(r.Rejected, ErrNotFound) {
		t.Fatalf("unknown revoke: %v", r.Rejected)
	}
	c, _ = f.Credential("c-2")
	if !c.GetRevoked() || c.GetRevokedReason() != "lost laptop" || c.GetRevokedBy().GetIndex() == 0 {
		t.Fatalf("c-2 after revoke = %v", c)
	}
	if got, _ := f.RevokedCredentials("web-1", t0); credIDs(got) != "c-2" {
		t.Fatalf("RevokedCredentials(now) = %s", credIDs(got))
	}
	if got, _ := f.RevokedCredentials("web-1", later); credIDs(got) != "" {
		t.Fatalf("RevokedCredentials(after expiry) = %s, want none", credIDs(got))
	}
	if got, _ := f.Credentials(CredentialFilter{Now: t0, All: true}); credIDs(got) != "c-1,c-2" {
		t.Fatalf("all = %s", credIDs(got))
	}
}

// Each cause of a derived revocation revokes exactly the live credentials
// that hang off it, in the same transaction.
func TestCredentialDerivedRevocation(t *testing.T) {
	later := t0.Add(time.Hour)
	cases := []struct {
		name   string
		cause  func(a *applier)
		revoke string // ids revoked, in order
		reason string
	}{
		{"grant removed", func(a *applier) {
			a.mustApply(&events.GrantRemoved{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-*"})
		}, "c-grant,c-tok", ReasonGrantRemoved},
		{"grant expired", func(a *applier) {
			// Its expiry moved to before the credentials' end; the leader's
			// removal at the expiry revokes them as expired, not removed.
			a.mustApplyAt(t0, &events.GrantAdded{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-*", ExpiresUnixNano: t0.Add(30 * time.Minute).UnixNano()})
			a.mustApplyAt(t0.Add(30*time.Minute), &events.GrantRemoved{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-*", Reason: events.GrantExpired})
		}, "c-grant,c-tok", ReasonGrantExpired},
		{"group grant removed with its group", func(a *applier) {
			a.mustApply(&events.GroupRemoved{Name: "ops"})
		}, "c-group", ReasonGrantRemoved},
		{"user removed", func(a *applier) {
			a.mustApply(&events.UserRemoved{Name: "alice"})
		}, "c-grant,c-group,c-tok", ReasonSubjectRemoved},
		{"token revoked", func(a *applier) {
			a.mustApply(&events.TokenRevoked{Id: "aaaaaaaaaaa1"})
		}, "c-tok", ReasonTokenRevoked},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, a := credSetup(t)
			a.mustApply(issue("c-grant", "user:alice", "aaaaaaaaaaa2", "user:alice", "login:deploy", later))
			a.mustApply(issue("c-tok", "user:alice", "aaaaaaaaaaa1", "user:alice", "login:deploy", later))
			g := issue("c-group", "user:alice", "aaaaaaaaaaa2", "group:ops", "login:ops", later)
			g.GrantResource = "destinations/*"
			a.mustApply(g)
			a.mustApply(issue("c-bob", "user:bob", "", "", "login:deploy", later))
			tc.cause(a)
			var revoked []string
			all, err := f.Credentials(CredentialFilter{Now: t0, All: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range all {
				if c.GetRevoked() {
					revoked = append(revoked, c.GetId())
					if c.GetRevokedReason() != tc.reason {
						t.Errorf("%s revoked with reason %q, want %q", c.GetId(), c.GetRevokedReason(), tc.reason)
					}
				}
			}
			if strings.Join(revoked, ",") != tc.revoke {
				t.Fatalf("revoked %v, want %s", revoked, tc.revoke)
			}
			if got, _ := f.RevokedCredentials("web-1", t0); credIDs(got) != tc.revoke {
				t.Fatalf("RevokedCredentials = %s, want %s", credIDs(got), tc.revoke)
			}
			// The revoked ones left the cause indexes.
			for _, c := range all {
				if !c.GetRevoked() {
					continue
				}
				for _, k := range credIndexKeys(c) {
					if found, _ := f.getRecord(k, new(Credential)); found {
						t.Errorf("index key %q of revoked %s is still there", k, c.GetId())
					}
				}
			}
		})
	}
}

// An expired credential is not revoked by its cause (nothing to end), and
// the cause's scan drops its index entries.
func TestCredentialExpiredIndexPruned(t *testing.T) {
	f, a := credSetup(t)
	gone := t0.Add(-time.Second)
	c := issue("c-old", "user:alice", "aaaaaaaaaaa1", "user:alice", "login:deploy", gone)
	c.ValidAfterUnixNano = gone.Add(-time.Minute).UnixNano()
	a.mustApply(c)
	a.mustApply(&events.TokenRevoked{Id: "aaaaaaaaaaa1"})
	got, _ := f.Credential("c-old")
	if got.GetRevoked() {
		t.Fatal("an expired credential was revoked")
	}
	if found, _ := f.getRecord(key(tagCredOfToken, "aaaaaaaaaaa1", "c-old"), new(Credential)); found {
		t.Fatal("token index entry of an expired credential kept")
	}
	if found, _ := f.getRecord(key(tagCredOfGrant, "user:alice", "login:deploy", "destinations/web-*", "c-old"), new(Credential)); found {
		t.Fatal("grant index entry of an expired credential kept")
	}
}
