package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/fsm"
)

func TestTokenFormat(t *testing.T) {
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	s := tok.Secret()
	if !strings.HasPrefix(s, "sk_") || len(s) != 3+44 {
		t.Fatalf("token %q: want sk_ and 44 characters", s)
	}
	back, err := ParseToken(s)
	if err != nil || back.ID != tok.ID || back.SecretSHA256() != tok.SecretSHA256() {
		t.Fatalf("ParseToken round trip: %v", err)
	}
	if strings.Contains(fmt.Sprint(tok), s[3+IDLen:]) || strings.Contains(fmt.Sprintf("%#v", tok), s[3+IDLen:]) {
		t.Fatal("formatting a token prints its secret")
	}
	for _, bad := range []string{"", "sk_", s[:len(s)-1], s + "x", "pk_" + s[3:], s[:10] + "!" + s[11:]} {
		if _, err := ParseToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v", bad, err)
		}
	}
}

// memState is an in-memory State for authorization tests.
type memState struct {
	tokens map[string]*fsm.Token
	groups map[string][]string // subject -> groups (transitive closure precomputed)
	grants map[string][]*fsm.Grant
}

func (m *memState) Token(id string) (*fsm.Token, error) {
	if t, ok := m.tokens[id]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("token %s: %w", id, fsm.ErrNotFound)
}
func (m *memState) GroupsOf(s string) ([]string, error)   { return m.groups[s], nil }
func (m *memState) Grants(s string) ([]*fsm.Grant, error) { return m.grants[s], nil }
func grant(s, p, r string) *fsm.Grant                     { return &fsm.Grant{Subject: s, Privilege: p, Resource: r} }
func hashOf(tok Token) []byte                             { h := tok.SecretSHA256(); return h[:] }
func tokenRecord(tok Token, subject string, exp int64) *fsm.Token {
	return &fsm.Token{Id: tok.ID, SecretSha256: hashOf(tok), Subject: subject, ExpiresUnixNano: exp}
}

func TestAuthenticate(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	good, _ := NewToken()
	expired, _ := NewToken()
	revoked, _ := NewToken()
	unknown, _ := NewToken()
	st := &memState{tokens: map[string]*fsm.Token{
		good.ID:    tokenRecord(good, "user:alice", now.Add(time.Hour).UnixNano()),
		expired.ID: tokenRecord(expired, "user:alice", now.Add(-time.Second).UnixNano()),
		revoked.ID: func() *fsm.Token { r := tokenRecord(revoked, "user:alice", 0); r.Revoked = true; return r }(),
	}}
	a := NewAuthorizer(st, nil, nil)
	a.now = func() time.Time { return now }
	wrong := "sk_" + good.ID + unknown.Secret()[3+IDLen:]
	tests := []struct {
		name, token, want string
	}{
		{"valid", good.Secret(), ""},
		{"expired", expired.Secret(), "expired"},
		{"revoked", revoked.Secret(), "revoked"},
		{"unknown", unknown.Secret(), "not known"},
		{"wrong secret", wrong, "wrong secret"},
		{"garbage", "hello", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := a.Authenticate(tc.token)
			if tc.want == "" {
				if err != nil || c.Subject != "user:alice" {
					t.Fatalf("Authenticate = %+v, %v", c, err)
				}
				if a.LastUsed(good.ID) != now {
					t.Fatal("last used not recorded")
				}
				return
			}
			if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrUnauthenticated mentioning %q", err, tc.want)
			}
			if len(tc.token) > 3+IDLen && strings.Contains(err.Error(), tc.token[3+IDLen:]) {
				t.Fatal("error contains the secret")
			}
		})
	}
}

func TestCheck(t *testing.T) {
	st := &memState{
		groups: map[string][]string{"user:alice": {"web-ops", "ops"}},
		grants: map[string][]*fsm.Grant{
			"user:alice":    {grant("user:alice", "view", "*")},
			"group:web-ops": {grant("group:web-ops", "provision", "targets/web-*")},
			"group:ops":     {grant("group:ops", "keys", "targets/*")},
			"user:root":     {grant("user:root", "admin", "*")},
		},
	}
	a := NewAuthorizer(st, nil, nil)
	tests := []struct {
		subject, priv, res string
		allowed            bool
		via                string
	}{
		{"user:alice", "view", "events/*", true, ""},
		{"user:alice", "provision", "targets/web-1", true, "group:web-ops"},
		{"user:alice", "provision", "targets/db-1", false, ""},
		{"user:alice", "keys", "targets/db-1", true, "group:ops"},
		{"user:alice", "admin", "identities/bob", false, ""},
		{"user:root", "provision", "targets/db-1", true, ""},
		{"user:nobody", "view", "*", false, ""},
	}
	for _, tc := range tests {
		d, err := a.Check(tc.subject, tc.priv, tc.res)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != tc.allowed || d.Via != tc.via {
			t.Errorf("Check(%s %s %s) = %+v, want allowed=%t via=%q", tc.subject, tc.priv, tc.res, d, tc.allowed, tc.via)
		}
		if !d.Allowed && !strings.Contains(d.Reason, "hpt grants add "+tc.subject+" "+tc.priv+" "+shellQuote(tc.res)) {
			t.Errorf("denial %q does not name the missing grant", d.Reason)
		}
	}
}
