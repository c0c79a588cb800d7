package events

import (
	"errors"
	"strings"
	"testing"
)

// TestLabelResourceRefusedOnAdd: adding a grant on a label selector is
// refused naming the field; removing one (added before the check) is not.
func TestLabelResourceRefusedOnAdd(t *testing.T) {
	err := CheckPayload(&GrantAdded{Subject: "user:a", Privilege: PrivView, Resource: "targets/role=web"})
	if !errors.Is(err, ErrInvalidName) || !strings.HasPrefix(err.Error(), "resource: ") || !strings.Contains(err.Error(), "label") {
		t.Fatalf("GrantAdded on targets/role=web: %v", err)
	}
	if err := CheckPayload(&GrantRemoved{Subject: "user:a", Privilege: PrivView, Resource: "targets/role=web"}); err != nil {
		t.Fatalf("GrantRemoved on targets/role=web: %v", err)
	}
	if err := CheckPayload(&GrantAdded{Subject: "user:a", Privilege: PrivView, Resource: "targets/web-*"}); err != nil {
		t.Fatalf("GrantAdded on targets/web-*: %v", err)
	}
}

// TestGrantRemovedReason: a removal's reason is "expired" or none; any
// other is refused naming the field.
func TestGrantRemovedReason(t *testing.T) {
	for _, r := range []string{"", GrantExpired} {
		if err := CheckPayload(&GrantRemoved{Subject: "user:a", Privilege: PrivView, Resource: "*", Reason: r}); err != nil {
			t.Errorf("reason %q: %v", r, err)
		}
	}
	err := CheckPayload(&GrantRemoved{Subject: "user:a", Privilege: PrivView, Resource: "*", Reason: "bored"})
	if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), "reason") {
		t.Fatalf("reason bored: %v", err)
	}
}
