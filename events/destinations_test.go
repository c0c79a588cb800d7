package events

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

func TestCheckDestination(t *testing.T) {
	ok := []*DestinationAdded{
		{Name: "web-1", Kind: DestSSH, Addr: "10.0.0.5:22"},
		{Name: "web-1", Kind: DestSSH, Addr: "web-1.internal:2222", Connector: "web-1", Labels: map[string]string{"env": "prod"}},
		{Name: "web-1", Kind: DestSSH, Addr: "127.0.0.1:22", Connector: "web-1", Mesh: true},
		{Name: "db", Kind: DestPostgres, Addr: "[::1]:5432", Connector: "db-host", Database: "app_prod"},
		{Name: "k8s", Kind: DestKubernetes, Connector: "bastion"},
		{Name: "k8s", Kind: DestKubernetes, Addr: "127.0.0.1:6443", Connector: "bastion", Mesh: false},
		{Name: "redis", Kind: DestTCP, Addr: "localhost:6379", Connector: "cache-1"},
	}
	for _, d := range ok {
		if err := CheckDestination(d); err != nil {
			t.Errorf("%v: %v", d, err)
		}
		if CheckPayload(d) != nil {
			t.Errorf("CheckPayload(%v) refused what CheckDestination accepts", d)
		}
	}
	bad := []struct {
		d    *DestinationAdded
		want string // in the error, after `invalid destination "NAME": `
	}{
		{&DestinationAdded{Name: "web-1", Kind: "sshh", Addr: "h:22"}, `kind "sshh" is not one of ssh, postgres, kubernetes, tcp`},
		{&DestinationAdded{Name: "web-1", Kind: "", Addr: "h:22"}, `kind "" is not one of`},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH}, "addr is required for ssh destinations"},
		{&DestinationAdded{Name: "web-1", Kind: DestTCP, Connector: "c"}, "addr is required for tcp destinations"},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "web-1"}, `addr "web-1": want HOST:PORT (missing port in address)`},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: ":22"}, `addr ":22": host is empty`},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "h:0"}, `port "0" is not a number from 1 to 65535`},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "h:65536"}, `port "65536"`},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "h:+22"}, `port "+22"`},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "h:ssh"}, `port "ssh"`},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "h:"}, `port ""`},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "a b:22"}, `host "a b": character ' '`},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "[web]:22"}, "brackets are only for IPv6"},
		{&DestinationAdded{Name: "web 1", Kind: DestSSH, Addr: "h:22"}, "name: "},
		{&DestinationAdded{Name: "alice@web", Kind: DestSSH, Addr: "h:22"}, "cannot contain @"},
		{&DestinationAdded{Name: "", Kind: DestSSH, Addr: "h:22"}, "name: "},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "h:22", Mesh: true}, "mesh needs a connector"},
		{&DestinationAdded{Name: "web-1", Kind: DestTCP, Addr: "h:22"}, "connector is required: tcp destinations are always reached through mesh mode"},
		{&DestinationAdded{Name: "k", Kind: DestKubernetes}, "connector is required: kubernetes"},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "h:22", Connector: "-x"}, "connector: "},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "h:22", Labels: map[string]string{"a b": "c"}}, "labels: label key"},
		{&DestinationAdded{Name: "web-1", Kind: DestSSH, Addr: "h:22", Database: "x"}, "database is only for postgres destinations"},
		{&DestinationAdded{Name: "db", Kind: DestPostgres, Addr: "h:5432", Database: "a-b"}, `database "a-b": character '-'`},
		{&DestinationAdded{Name: "db", Kind: DestPostgres, Addr: "h:5432", Database: strings.Repeat("d", 64)}, "at most 63 allowed"},
	}
	for _, c := range bad {
		err := CheckDestination(c.d)
		prefix := `invalid destination "` + c.d.GetName() + `": `
		if !errors.Is(err, ErrInvalidDestination) || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v:\n got %v\nwant %s…%s", c.d, err, prefix, c.want)
		}
		if CheckPayload(c.d) == nil {
			t.Errorf("CheckPayload(%v) accepts what CheckDestination refuses", c.d)
		}
	}
}

func TestNormalizeDestinationForcesMesh(t *testing.T) {
	for _, kind := range []string{DestTCP, DestKubernetes} {
		in := &DestinationAdded{Name: "x", Kind: kind, Addr: "h:1", Connector: "c"}
		if n := NormalizeDestination(in); !n.GetMesh() {
			t.Errorf("%s destination normalized to mesh=false", kind)
		}
		if in.GetMesh() {
			t.Errorf("NormalizeDestination changed its argument")
		}
	}
	if NormalizeDestination(&DestinationAdded{Kind: DestSSH}).GetMesh() {
		t.Error("ssh destination made mesh")
	}
}

func TestRolePrivileges(t *testing.T) {
	good := map[string]Role{
		"login:deploy":                     {RoleLogin, "deploy"},
		"login:_svc-1":                     {RoleLogin, "_svc-1"},
		"login-forward:deploy":             {RoleLoginForward, "deploy"},
		"db:app_read":                      {RoleDB, "app_read"},
		"db:Reporting$1":                   {RoleDB, "Reporting$1"},
		"kube:edit":                        {RoleKube, "edit"},
		"kube:system:aggregate-to-view":    {RoleKube, "system:aggregate-to-view"},
		"connect":                          {RoleConnect, ""},
		"login:" + strings.Repeat("a", 32): {RoleLogin, strings.Repeat("a", 32)},
	}
	for p, want := range good {
		r, err := ParseRole(p)
		if err != nil || r != want || r.String() != p {
			t.Errorf("ParseRole(%q) = %v, %v", p, r, err)
		}
		if err := CheckPrivilege(p); err != nil {
			t.Errorf("CheckPrivilege(%q): %v", p, err)
		}
	}
	bad := map[string]string{
		"login":                            "unix user is empty",
		"login:":                           "unix user is empty",
		"login:Root":                       "character 'R'",
		"login:1abc":                       "character '1'",
		"login:" + strings.Repeat("a", 33): "at most 32",
		"login:de ploy":                    "character ' '",
		"login-forward:x@y":                "character '@'",
		"db:":                              "role is empty",
		"db:a-b":                           "character '-'",
		"db:" + strings.Repeat("r", 64):    "at most 63",
		"kube:Edit":                        "character 'E'",
		"kube:-edit":                       "start and end",
		"kube:":                            "cluster role is empty",
		"connect:x":                        "connect takes no value",
		"ssh":                              "want admin, view, provision, keys or a destination role",
	}
	for p, want := range bad {
		err := CheckPrivilege(p)
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckPrivilege(%q) = %v, want …%s", p, err, want)
		}
	}
}

func TestGrantScope(t *testing.T) {
	ok := [][2]string{
		{"login:deploy", "destinations/web-*"},
		{"login:deploy", "destinations/*"},
		{"kube:view", "destinations/prod/*"},
		{"kube:edit", "destinations/prod"},
		{"connect", "destinations/redis"},
		{PrivAdmin, "destinations/*"},
		{PrivView, "destinations/*"},
		{PrivAdmin, "*"},
		{PrivProvision, "targets/*"},
	}
	for _, c := range ok {
		if err := CheckPayload(&GrantAdded{Subject: "user:a", Privilege: c[0], Resource: c[1]}); err != nil {
			t.Errorf("grant %s %s: %v", c[0], c[1], err)
		}
	}
	bad := []struct{ priv, res, want string }{
		{"login:deploy", "*", "is a destination role: grant it on destinations/NAME-GLOB"},
		{"login:deploy", "targets/web-*", "is a destination role"},
		{"connect", "targets/web-*", "is a destination role"},
		{"login:deploy", "destinations/prod/ns", "names a Kubernetes namespace, which only kube: roles use"},
		{PrivAdmin, "destinations/prod/ns", "names a Kubernetes namespace"},
		{PrivProvision, "destinations/*", "provision is for targets"},
		{PrivKeys, "destinations/web-1", "keys is for targets"},
		{"kube:view", "destinations/prod/a/b", "want destinations/NAME-GLOB or destinations/NAME-GLOB/NAMESPACE-GLOB"},
		{"kube:view", "destinations/prod/", "want destinations/NAME-GLOB"},
		{"kube:view", "destinations//x", "want destinations/NAME-GLOB"},
		{"login:Root", "destinations/*", "privilege: "},
	}
	for _, c := range bad {
		err := CheckPayload(&GrantAdded{Subject: "user:a", Privilege: c.priv, Resource: c.res})
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("grant %s %s: %v, want …%s", c.priv, c.res, err, c.want)
		}
	}
}

func TestMatchDestination(t *testing.T) {
	cases := []struct {
		glob, res string
		want      bool
	}{
		{"destinations/web-*", "destinations/web-1", true},
		{"destinations/web-*", "destinations/db-1", false},
		{"destinations/*", "destinations/web-1", true},
		{"destinations/prod", "destinations/prod/dev", true},
		{"destinations/*", "destinations/prod/dev", true},
		{"destinations/prod/*", "destinations/prod/dev", true},
		{"destinations/prod/dev", "destinations/prod/dev", true},
		{"destinations/prod/dev", "destinations/prod/ops", false},
		{"destinations/prod/*", "destinations/prod", false},
		{"destinations/prod/*", "destinations/staging/dev", false},
		{"targets/*", "destinations/web-1", false},
		{"destinations/[", "destinations/web-1", false},
	}
	for _, c := range cases {
		if got := MatchDestination(c.glob, c.res); got != c.want {
			t.Errorf("MatchDestination(%q, %q) = %v", c.glob, c.res, got)
		}
	}
}

// FuzzDestination feeds arbitrary specs, as the CLI and the API pass them
// on, to the validator: it never panics, and what it accepts is what the
// rest of hpt relies on (a valid name, a parseable address, mesh with a
// connector for the always-mesh kinds), stays accepted once normalized,
// and survives the event encoding unchanged.
func FuzzDestination(f *testing.F) {
	f.Add("web-1", "ssh", "10.0.0.5:22", "web-1", false, "env=prod", "")
	f.Add("db", "postgres", "[::1]:5432", "db-host", true, "", "app")
	f.Add("k8s", "kubernetes", "", "bastion", false, "", "")
	f.Add("r", "tcp", "h:0", "", false, "a=b=c", "")
	f.Add("a@b", "sshh", "::", "-", true, ",", "x-y")
	f.Fuzz(func(t *testing.T, name, kind, addr, connector string, mesh bool, labels, database string) {
		d := &DestinationAdded{Name: name, Kind: kind, Addr: addr, Connector: connector, Mesh: mesh, Database: database}
		if labels != "" {
			d.Labels = map[string]string{}
			for _, kv := range strings.Split(labels, ",") {
				k, v, _ := strings.Cut(kv, "=")
				d.Labels[k] = v
			}
		}
		err := CheckDestination(d)
		if err != nil {
			if !errors.Is(err, ErrInvalidDestination) {
				t.Fatalf("refusal %v does not wrap ErrInvalidDestination", err)
			}
			return
		}
		n := NormalizeDestination(d)
		if err := CheckDestination(n); err != nil {
			t.Fatalf("normalized form of an accepted spec refused: %v", err)
		}
		if !proto.Equal(NormalizeDestination(n), n) {
			t.Fatal("NormalizeDestination is not idempotent")
		}
		if CheckDestinationName(name) != nil || strings.ContainsAny(name, "@/ ") {
			t.Fatalf("accepted name %q", name)
		}
		if addr != "" {
			if host, _, err := net.SplitHostPort(addr); err != nil || host == "" {
				t.Fatalf("accepted addr %q", addr)
			}
		} else if kind != DestKubernetes {
			t.Fatalf("accepted %s destination without addr", kind)
		}
		if n.GetMesh() && connector == "" {
			t.Fatal("accepted mesh without a connector")
		}
		if AlwaysMesh(kind) && !n.GetMesh() {
			t.Fatal("always-mesh kind not mesh")
		}
		ev, err := New("user:a", "r", time.Unix(1, 0), n)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		p, err := back.DecodePayload()
		if err != nil || !proto.Equal(p, n) {
			t.Fatalf("round trip: %v, %v", p, err)
		}
	})
}
