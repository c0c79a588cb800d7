package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
)

func roleState() *memState {
	return &memState{
		groups: map[string][]string{"user:alice": {"web-ops"}, "user:bob": {"web-ops"}},
		grants: map[string][]*fsm.Grant{
			"user:alice": {
				grant("user:alice", "login:deploy", "destinations/web-*"),
				grant("user:alice", "login-forward:deploy", "destinations/web-1"),
				grant("user:alice", "kube:view", "destinations/prod/dev-*"),
				grant("user:alice", "kube:edit", "destinations/staging"),
				grant("user:alice", "db:app_read", "destinations/db-*"),
				grant("user:alice", "connect", "destinations/redis"),
			},
			"group:web-ops": {
				grant("group:web-ops", "login:deploy", "destinations/*"),
				grant("group:web-ops", "login:www", "destinations/web-*"),
			},
			"user:root": {grant("user:root", "admin", "*")},
		},
	}
}

func TestCheckRoles(t *testing.T) {
	a := NewAuthorizer(roleState(), nil, nil)
	tests := []struct {
		subject, priv, res string
		allowed            bool
		via, grant         string
	}{
		{"user:alice", "login:deploy", "destinations/web-1", true, "", "user:alice login:deploy destinations/web-*"},
		{"user:alice", "login:deploy", "destinations/db-1", true, "group:web-ops", "group:web-ops login:deploy destinations/*"},
		{"user:alice", "login:root", "destinations/web-1", false, "", ""},
		{"user:alice", "login-forward:deploy", "destinations/web-1", true, "", "user:alice login-forward:deploy destinations/web-1"},
		{"user:alice", "login-forward:deploy", "destinations/web-2", false, "", ""},
		{"user:alice", "kube:view", "destinations/prod/dev-1", true, "", "user:alice kube:view destinations/prod/dev-*"},
		{"user:alice", "kube:view", "destinations/prod/ops", false, "", ""},
		{"user:alice", "kube:view", "destinations/prod", false, "", ""},
		{"user:alice", "kube:edit", "destinations/staging/any", true, "", "user:alice kube:edit destinations/staging"},
		{"user:alice", "connect", "destinations/redis", true, "", "user:alice connect destinations/redis"},
		{"user:alice", "connect", "destinations/web-1", false, "", ""},
		// admin covers the cluster, not logins.
		{"user:root", "login:deploy", "destinations/web-1", false, "", ""},
		{"user:root", "connect", "destinations/redis", false, "", ""},
		{"user:root", "admin", "destinations/web-1", true, "", "user:root admin *"},
		{"user:root", "view", "destinations/*", true, "", "user:root admin *"},
	}
	for _, tc := range tests {
		d, err := a.Check(tc.subject, tc.priv, tc.res)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != tc.allowed || d.Via != tc.via {
			t.Errorf("Check(%s %s %s) = %+v, want allowed=%t via=%q", tc.subject, tc.priv, tc.res, d, tc.allowed, tc.via)
			continue
		}
		if tc.allowed {
			g := d.Grant
			if got := fmt.Sprintf("%s %s %s", g.GetSubject(), g.GetPrivilege(), g.GetResource()); got != tc.grant {
				t.Errorf("Check(%s %s %s) allowed by %s, want %s", tc.subject, tc.priv, tc.res, got, tc.grant)
			}
		}
	}
	d, _ := a.Check("user:root", "login:deploy", "destinations/web-1")
	if !strings.Contains(d.Reason, "admin never implies a destination role") || !strings.Contains(d.Reason, "hpt grants add user:root login:deploy destinations/web-1") {
		t.Errorf("denial of login to an admin does not say why: %q", d.Reason)
	}
	d, _ = a.Check("user:alice", "login:root", "destinations/web-1")
	if strings.Contains(d.Reason, "admin") {
		t.Errorf("denial to a non-admin talks of admin: %q", d.Reason)
	}
}

func TestRoles(t *testing.T) {
	a := NewAuthorizer(roleState(), nil, nil)
	show := func(rs []RoleGrant) string {
		var out []string
		for _, r := range rs {
			s := r.Role
			if r.Namespace != "" {
				s += "/" + r.Namespace
			}
			s += " by " + r.Grant.GetResource()
			if r.Via != "" {
				s += " via " + r.Via
			}
			out = append(out, s)
		}
		return strings.Join(out, ", ")
	}
	tests := []struct {
		subject, kind, dest, want string
	}{
		// Held directly and through the group: listed once, the direct grant first.
		{"user:alice", "login", "web-1", "deploy by destinations/web-* , www by destinations/web-* via group:web-ops"},
		{"user:alice", "login", "db-1", "deploy by destinations/* via group:web-ops"},
		{"user:bob", "login", "web-1", "deploy by destinations/* via group:web-ops, www by destinations/web-* via group:web-ops"},
		{"user:alice", "login-forward", "web-1", "deploy by destinations/web-1"},
		{"user:alice", "login-forward", "web-2", ""},
		{"user:alice", "db", "db-main", "app_read by destinations/db-*"},
		{"user:alice", "kube", "prod", "view/dev-* by destinations/prod/dev-*"},
		{"user:alice", "kube", "staging", "edit by destinations/staging"},
		{"user:alice", "connect", "redis", " by destinations/redis"},
		{"user:root", "login", "web-1", ""},
		{"user:nobody", "login", "web-1", ""},
	}
	for _, tc := range tests {
		rs, err := a.Roles(tc.subject, tc.kind, tc.dest)
		if err != nil {
			t.Fatalf("Roles(%s %s %s): %v", tc.subject, tc.kind, tc.dest, err)
		}
		if got, want := show(rs), strings.ReplaceAll(tc.want, " , ", ", "); got != want {
			t.Errorf("Roles(%s %s %s) = %q, want %q", tc.subject, tc.kind, tc.dest, got, want)
		}
	}
	if _, err := a.Roles("user:alice", "ssh", "web-1"); !errors.Is(err, events.ErrInvalidName) || !strings.Contains(err.Error(), `role kind "ssh"`) {
		t.Errorf("Roles with kind ssh: %v", err)
	}
	if _, err := a.Roles("user:alice", "login", "web/1"); !errors.Is(err, events.ErrInvalidName) {
		t.Errorf("Roles on destination web/1: %v", err)
	}
}
