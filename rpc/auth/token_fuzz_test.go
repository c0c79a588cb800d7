package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/fsm"
)

// FuzzParseToken parses and authenticates arbitrary bearer strings, as
// every RPC does before it knows who is calling. A refusal is ErrBadToken
// (parse) or ErrUnauthenticated (Authenticate) and never echoes the
// secret; an accepted token has the documented shape, round trips through
// Secret, and none of String, %v or %#v show its secret; only the one
// live token's exact secret authenticates, and only that marks it used.
func FuzzParseToken(f *testing.F) {
	tok, err := NewToken()
	if err != nil {
		f.Fatal(err)
	}
	revoked, err := NewToken()
	if err != nil {
		f.Fatal(err)
	}
	st := &memState{tokens: map[string]*fsm.Token{
		tok.ID:     tokenRecord(tok, "user:alice", 0),
		revoked.ID: func() *fsm.Token { r := tokenRecord(revoked, "user:alice", 0); r.Revoked = true; return r }(),
	}}
	a := NewAuthorizer(st, nil, nil)
	f.Add(revoked.Secret())
	f.Add("sk_" + tok.ID + revoked.Secret()[3+IDLen:])
	for _, s := range []string{
		tok.Secret(), " " + tok.Secret() + "\n", "", "sk_", "sk_nope",
		tok.Secret()[:len(tok.Secret())-1], tok.Secret() + "x",
		"SK_" + tok.Secret()[3:], "sk_" + strings.Repeat("é", 22),
		"sk_" + strings.Repeat("-", IDLen+SecretLen), "Bearer " + tok.Secret(),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// The secret part of whatever was sent, as an error must not show it.
		sent := strings.TrimPrefix(strings.TrimSpace(s), tokenPrefix)
		if len(sent) > IDLen {
			sent = sent[IDLen:]
		}
		before := a.LastUsed(tok.ID)
		caller, aerr := a.Authenticate(s)
		live := strings.TrimSpace(s) == tok.Secret()
		switch {
		case live && (aerr != nil || caller.Subject != "user:alice" || caller.TokenID != tok.ID):
			t.Fatalf("the live token: caller %+v, %v", caller, aerr)
		case !live && !errors.Is(aerr, ErrUnauthenticated):
			t.Fatalf("Authenticate(%q) = %+v, %v; want ErrUnauthenticated", s, caller, aerr)
		case !live && !a.LastUsed(tok.ID).Equal(before):
			t.Fatal("a refused token marked the live token used")
		case aerr != nil && len(sent) == SecretLen && strings.Contains(aerr.Error(), sent):
			t.Fatalf("refusal %q shows the secret sent", aerr)
		}

		got, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("refusal %v is not ErrBadToken", err)
			}
			if body := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), tokenPrefix)); len(body) >= 8 && strings.Contains(err.Error(), body) {
				t.Fatalf("refusal %q echoes the input", err)
			}
			return
		}
		if len(got.ID) != IDLen || len(got.secret) != SecretLen {
			t.Fatalf("parsed id %d and secret %d characters, want %d and %d", len(got.ID), len(got.secret), IDLen, SecretLen)
		}
		for _, c := range got.ID + got.secret {
			if !strings.ContainsRune(base62, c) {
				t.Fatalf("parsed token holds %q, not base62", c)
			}
		}
		if got.Secret() != strings.TrimSpace(s) {
			t.Fatalf("Secret() = %q, want the trimmed input %q", got.Secret(), strings.TrimSpace(s))
		}
		again, err := ParseToken(got.Secret())
		if err != nil || again != got {
			t.Fatalf("ParseToken(Secret()) = %#v, %v; want %#v", again, err, got)
		}
		for _, shown := range []string{got.String(), fmt.Sprintf("%v", got), fmt.Sprintf("%#v", got), fmt.Sprint(got)} {
			if strings.Contains(shown, got.secret) {
				t.Fatalf("%q shows the secret", shown)
			}
		}
	})
}
