package auth

import (
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/fsm"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"user:alice@example.com": "user:alice@example.com",
		"targets/web-1":          "targets/web-1",
		"*":                      "'*'",
		"targets/web-*":          "'targets/web-*'",
		"targets/web-[12]":       "'targets/web-[12]'",
		"it's":                   `'it'\''s'`,
		"":                       "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestDenialHintIsShellQuoted: the "add one with" hint of a denial quotes
// a glob, so pasting it grants what it says rather than whatever files the
// shell's * expands to.
func TestDenialHintIsShellQuoted(t *testing.T) {
	a := NewAuthorizer(&memState{grants: map[string][]*fsm.Grant{}}, nil, nil)
	d, err := a.Check("user:bob", "admin", "*")
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || !strings.HasSuffix(d.Reason, "(add one with: hpt grants add user:bob admin '*')") {
		t.Fatalf("denial %+v: want the hint with '*' quoted", d)
	}
}
