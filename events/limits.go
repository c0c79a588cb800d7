package events

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

// Limits of the inputs that end up in events, one per input, checked at the
// edge (the CLI before sending, the node before proposing) so that an
// oversized field is refused by its own rule, naming it, rather than by the
// size of the message or event that carries it. docs/operations.md lists
// them all.
const (
	// MaxNameLen bounds names of users, machines, groups and targets
	// (CheckName).
	MaxNameLen = 253
	// MaxTextLen bounds free text: descriptions, e-mail addresses, the
	// reason of a cancellation.
	MaxTextLen = 1024
	// MaxCredentialPrincipals bounds the principals of one credential.
	MaxCredentialPrincipals = 256
	// MaxLabels bounds how many labels a target has (or claims, or a
	// selector names).
	MaxLabels = 64
	// MaxLabelKeyLen and MaxLabelValueLen bound one label.
	MaxLabelKeyLen   = 63
	MaxLabelValueLen = 253
	// MaxResourceLen bounds a grant's resource ("targets/web-*").
	MaxResourceLen = 512
)

// CheckText validates free text of field: at most MaxTextLen bytes of
// valid UTF-8.
func CheckText(field, s string) error {
	if len(s) > MaxTextLen {
		return fmt.Errorf("%w: %s has %d bytes, at most %d allowed", ErrInvalidName, field, len(s), MaxTextLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidName, field)
	}
	return nil
}

// CheckLabels validates the labels of field (a target's labels, an agent's
// claim, a selector): at most MaxLabels of them, keys of 1 to
// MaxLabelKeyLen letters, digits and . _ - /, values of at most
// MaxLabelValueLen printable characters without "," or "=" (which
// `--labels k=v,k=v` could not say).
func CheckLabels(field string, labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%w: %s: %d labels, at most %d allowed", ErrInvalidName, field, len(labels), MaxLabels)
	}
	for k, v := range labels {
		switch {
		case k == "":
			return fmt.Errorf("%w: %s: a label has an empty key", ErrInvalidName, field)
		case len(k) > MaxLabelKeyLen:
			return fmt.Errorf("%w: %s: label key %.20q… has %d bytes, at most %d allowed", ErrInvalidName, field, k, len(k), MaxLabelKeyLen)
		case len(v) > MaxLabelValueLen:
			return fmt.Errorf("%w: %s: value of label %q has %d bytes, at most %d allowed", ErrInvalidName, field, k, len(v), MaxLabelValueLen)
		}
		for _, r := range k {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/", r)) {
				return fmt.Errorf("%w: %s: label key %q: character %q (allowed: letters, digits and . _ - /)", ErrInvalidName, field, k, r)
			}
		}
		if !utf8.ValidString(v) || strings.ContainsAny(v, ",=") || strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return fmt.Errorf("%w: %s: value of label %q must be printable text without , or =", ErrInvalidName, field, k)
		}
	}
	return nil
}

// FormatLabels writes labels as `--labels` and `--selector` take them,
// k=v,k2=v2 sorted by key, and "" for none: what CheckLabels accepts has no
// "," or "=" in a key or value, so it reads back as it was.
func FormatLabels(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for k, v := range labels {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// CheckPayload applies the input limits above to the fields of a payload
// that come from a caller, before it is proposed. The state machine applies
// its own rules again (and Encode bounds the whole event); this check runs
// first so that the answer names the field and its limit. Payloads without
// caller-given fields pass.
func CheckPayload(p proto.Message) error {
	name := func(kind, field, v string) error {
		if err := CheckName(kind, v); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		return nil
	}
	subject := func(field, v string) error {
		if _, err := ParseSubject(v); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		return nil
	}
	switch p := p.(type) {
	case *UserAdded:
		return firstErr(name(KindUser, "name", p.GetName()), CheckText("email", p.GetEmail()))
	case *UserRemoved:
		return name(KindUser, "name", p.GetName())
	case *MachineAdded:
		return firstErr(name(KindMachine, "name", p.GetName()), CheckText("description", p.GetDescription()))
	case *MachineRemoved:
		return name(KindMachine, "name", p.GetName())
	case *GroupAdded:
		return firstErr(name(KindGroup, "name", p.GetName()), CheckText("description", p.GetDescription()))
	case *GroupRemoved:
		return name(KindGroup, "name", p.GetName())
	case *GroupMemberAdded:
		return firstErr(name(KindGroup, "group", p.GetGroup()), subject("member", p.GetMember()))
	case *GroupMemberRemoved:
		return firstErr(name(KindGroup, "group", p.GetGroup()), subject("member", p.GetMember()))
	case *TokenCreated:
		return firstErr(subject("subject", p.GetSubject()), CheckText("description", p.GetDescription()))
	case *TargetKeyRegistered:
		return firstErr(name("target", "target", p.GetTarget()), CheckLabels("labels", p.GetLabels()))
	case *TargetKeyRevoked:
		return name("target", "target", p.GetTarget())
	case *TargetConnected:
		return CheckLabels("claimed labels", p.GetClaimedLabels())
	case *GrantAdded:
		if err := checkGrant(p.GetSubject(), p.GetResource()); err != nil {
			return err
		}
		if err := CheckNewGrantResource(p.GetResource()); err != nil {
			return fmt.Errorf("resource: %w", err)
		}
		if err := CheckPrivilege(p.GetPrivilege()); err != nil {
			return fmt.Errorf("privilege: %w", err)
		}
		return CheckGrantScope(p.GetPrivilege(), p.GetResource())
	case *GrantRemoved:
		if r := p.GetReason(); r != "" && r != GrantExpired {
			return fmt.Errorf("%w: reason: %q, want %q or none", ErrInvalidName, r, GrantExpired)
		}
		return checkGrant(p.GetSubject(), p.GetResource())
	case *JobCancelled:
		return CheckText("reason", p.GetReason())
	case *DestinationAdded:
		return CheckDestination(p)
	case *DestinationRemoved:
		return name("destination", "name", p.GetName())
	case *CredentialIssued:
		if len(p.GetPrincipals()) > MaxCredentialPrincipals {
			return fmt.Errorf("%w: principals: %d, at most %d allowed", ErrInvalidName, len(p.GetPrincipals()), MaxCredentialPrincipals)
		}
		return firstErr(name("credential", "id", p.GetId()), CheckText("role", p.GetRole()), CheckText("grant_resource", p.GetGrantResource()))
	case *CredentialRevoked:
		return firstErr(name("credential", "id", p.GetId()), CheckText("reason", p.GetReason()))
	}
	return nil
}

func checkGrant(subject, resource string) error {
	if _, err := ParseSubject(subject); err != nil {
		return fmt.Errorf("subject: %w", err)
	}
	if len(resource) > MaxResourceLen {
		return fmt.Errorf("%w: resource has %d bytes, at most %d allowed", ErrInvalidName, len(resource), MaxResourceLen)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
