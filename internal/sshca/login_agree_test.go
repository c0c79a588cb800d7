package sshca

import (
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/events"
)

// A login:UNIXUSER grant (checked by events.CheckLogin) must name a login
// this package puts in principals, and no other: the two checks agree.
func TestLoginCheckAgreesWithGrants(t *testing.T) {
	if MaxLoginLen != events.MaxLoginLen {
		t.Fatalf("MaxLoginLen %d here, %d for grants", MaxLoginLen, events.MaxLoginLen)
	}
	for _, l := range []string{"", "deploy", "_svc", "a-1", "a_b", "Root", "1a", "-a", "a@b", "a b", "a.b", "ü",
		strings.Repeat("a", 32), strings.Repeat("a", 33), "a$", "a\n"} {
		here, grants := checkLogin(l) == nil, events.CheckLogin(l) == nil
		if here != grants {
			t.Errorf("login %q: accepted in certificates %t, in grants %t", l, here, grants)
		}
	}
}
