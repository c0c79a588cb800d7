package events

import (
	"errors"
	"path"
	"strings"
	"testing"
)

// FuzzParseSubject: a subject either parses and prints back as given, with
// a name in the documented alphabet, or fails with ErrInvalidName.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"user:alice@example.com", "machine:ci-1", "group:ops", "node:n1", "user:", ":x",
		"group:a:b", "user:-x", "user:ä", "user:" + strings.Repeat("a", 254), "machine:a.b_c+d-e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sub, err := ParseSubject(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ParseSubject(%q): error %v does not wrap ErrInvalidName", s, err)
			}
			return
		}
		if sub.String() != s {
			t.Fatalf("ParseSubject(%q) = %q", s, sub)
		}
		if sub.Kind != KindUser && sub.Kind != KindMachine && sub.Kind != KindGroup {
			t.Fatalf("ParseSubject(%q): kind %q", s, sub.Kind)
		}
		if strings.ContainsAny(sub.Name, ":/*?[]\\ \t\n") || len(sub.Name) > 253 {
			t.Fatalf("ParseSubject(%q): name %q outside the alphabet", s, sub.Name)
		}
	})
}

// FuzzCheckGrant: a grant's privilege and resource either validate, and the
// resource's glob then matches without error against any name, or fail
// with ErrInvalidName.
func FuzzCheckGrant(f *testing.F) {
	for _, g := range [][2]string{{"admin", "*"}, {"view", "targets/*"}, {"provision", "targets/web-[0-9]*"},
		{"keys", "targets/["}, {"root", "*"}, {"view", "nodes/x"}, {"view", "targets/"}, {"view", "targets/a\\"}} {
		f.Add(g[0], g[1], "web-1")
	}
	f.Fuzz(func(t *testing.T, priv, resource, name string) {
		if err := CheckPrivilege(priv); err != nil && !errors.Is(err, ErrInvalidName) {
			t.Fatalf("CheckPrivilege(%q): %v does not wrap ErrInvalidName", priv, err)
		}
		err := CheckResource(resource)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("CheckResource(%q): %v does not wrap ErrInvalidName", resource, err)
			}
			return
		}
		if resource == "*" {
			return
		}
		_, glob, _ := strings.Cut(resource, "/")
		// A validated glob never fails later, whatever name it meets:
		// authorization must not turn a bad pattern into a denial or a panic.
		if _, err := path.Match(glob, name); err != nil {
			t.Fatalf("resource %q validated, but matching %q fails: %v", resource, name, err)
		}
	})
}
