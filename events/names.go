package events

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ErrInvalidName is wrapped by every name, subject, privilege or resource
// that does not parse.
var ErrInvalidName = errors.New("invalid name")

// Subject kinds.
const (
	KindUser    = "user"
	KindMachine = "machine"
	KindGroup   = "group"
	// KindNode is the actor of events a node writes on its own behalf
	// (bootstrap, job scheduling); it can hold no grants.
	KindNode = "node"
	// KindTarget is the actor of events an agent causes (its connection,
	// its job results); it can hold no grants.
	KindTarget = "target"
)

// A Subject is who acts or who is granted: "user:alice@example.com".
type Subject struct {
	Kind string
	Name string
}

func (s Subject) String() string { return s.Kind + ":" + s.Name }

// ParseSubject parses "user:NAME", "machine:NAME" or "group:NAME".
func ParseSubject(s string) (Subject, error) {
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		return Subject{}, fmt.Errorf("%w: subject %q: want user:NAME, machine:NAME or group:NAME", ErrInvalidName, s)
	}
	switch kind {
	case KindUser, KindMachine, KindGroup:
	default:
		return Subject{}, fmt.Errorf("%w: subject %q: kind %q is not user, machine or group", ErrInvalidName, s, kind)
	}
	if err := CheckName(kind, name); err != nil {
		return Subject{}, err
	}
	return Subject{Kind: kind, Name: name}, nil
}

// CheckName validates the name of a user, machine, group or target: 1 to
// 253 characters of letters, digits and . _ @ + -, not starting with a
// punctuation character. Names appear in keys, globs and shell output, so the
// alphabet is deliberately small.
func CheckName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name is empty", ErrInvalidName, kind)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %s name has %d characters, at most %d allowed", ErrInvalidName, kind, len(name), MaxNameLen)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			i > 0 && strings.ContainsRune("._@+-", r)
		if !ok {
			return fmt.Errorf("%w: %s name %q: character %q at position %d (allowed: letters, digits and . _ @ + - after the first)", ErrInvalidName, kind, name, r, i+1)
		}
	}
	return nil
}

// Privileges, from most to least powerful.
const (
	PrivAdmin     = "admin"
	PrivKeys      = "keys"
	PrivProvision = "provision"
	PrivView      = "view"
)

// CheckPrivilege validates a privilege name: admin, view, provision, keys,
// or a destination role (ParseRole).
func CheckPrivilege(p string) error {
	switch p {
	case PrivAdmin, PrivView, PrivProvision, PrivKeys:
		return nil
	}
	if IsRole(p) {
		_, err := ParseRole(p)
		return err
	}
	return fmt.Errorf("%w: privilege %q: want admin, view, provision, keys or a destination role (%s)", ErrInvalidName, p, roleForms)
}

// Resource kinds a grant can name after "KIND/".
var resourceKinds = [...]string{"targets", "jobs", "identities", "tokens", "grants", "events", "cluster", "destinations"}

// CheckResource validates a grant resource: "*" (everything) or "KIND/GLOB"
// where GLOB is a path.Match pattern over names ("targets/web-*").
func CheckResource(r string) error {
	if r == "*" {
		return nil
	}
	kind, glob, ok := strings.Cut(r, "/")
	if !ok || glob == "" {
		return fmt.Errorf("%w: resource %q: want * or KIND/GLOB, e.g. targets/web-*", ErrInvalidName, r)
	}
	known := false
	for _, k := range resourceKinds {
		known = known || k == kind
	}
	if !known {
		return fmt.Errorf("%w: resource %q: kind %q is not one of %s", ErrInvalidName, r, kind, strings.Join(resourceKinds[:], ", "))
	}
	if _, err := path.Match(glob, ""); err != nil {
		return fmt.Errorf("%w: resource %q: bad glob: %v", ErrInvalidName, r, err)
	}
	if kind == "destinations" {
		// destinations/NAME-GLOB or destinations/NAME-GLOB/NAMESPACE-GLOB.
		name, ns, hasNS := strings.Cut(glob, "/")
		if name == "" || hasNS && (ns == "" || strings.Contains(ns, "/")) {
			return fmt.Errorf("%w: resource %q: want destinations/NAME-GLOB or destinations/NAME-GLOB/NAMESPACE-GLOB", ErrInvalidName, r)
		}
	}
	return nil
}

// CheckNewGrantResource validates the resource of a grant being added:
// CheckResource, and no label selector. No name can contain "=", so
// "targets/role=web" would be accepted as a glob that matches nothing, while
// what was meant is "targets labelled role=web", which grants cannot say
// yet. It is checked when a grant is added only: a grant added before this
// check existed must stay removable, and replaying the log must not depend
// on it.
func CheckNewGrantResource(r string) error {
	if err := CheckResource(r); err != nil {
		return err
	}
	if strings.Contains(r, "=") {
		return fmt.Errorf("%w: resource %q looks like a label selector; grants name resources by a glob over names (targets/web-*), label-based resources are not supported yet", ErrInvalidName, r)
	}
	return nil
}

// ParseActor parses who an event is by, as --actor names it: a subject
// (ParseSubject), "node:NAME" or "target:NAME". A bare name is refused
// rather than matching nothing: every actor has a kind.
func ParseActor(s string) (Subject, error) {
	kind, name, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return Subject{}, fmt.Errorf("%w: actor %q has no kind: want user:NAME, machine:NAME, group:NAME, node:NAME or target:NAME (user:%s?)", ErrInvalidName, s, s)
	case kind == KindUser || kind == KindMachine || kind == KindGroup:
		return ParseSubject(s)
	case kind == KindNode || kind == KindTarget:
		if name == "" {
			return Subject{}, fmt.Errorf("%w: actor %q: %s name is empty", ErrInvalidName, s, kind)
		}
		return Subject{Kind: kind, Name: name}, nil
	}
	return Subject{}, fmt.Errorf("%w: actor %q: kind %q is not user, machine, group, node or target", ErrInvalidName, s, kind)
}
