package events

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strings"

	"google.golang.org/protobuf/proto"
)

// ErrInvalidDestination is wrapped by every refusal of a destination spec.
var ErrInvalidDestination = errors.New("invalid destination")

// Destination kinds (SPEC section 11).
const (
	DestSSH        = "ssh"
	DestPostgres   = "postgres"
	DestKubernetes = "kubernetes"
	// DestTCP is any other TCP service, reached only through mesh mode.
	DestTCP = "tcp"
)

var destinationKinds = [...]string{DestSSH, DestPostgres, DestKubernetes, DestTCP}

// Limits of destination fields (see also limits.go).
const (
	// MaxLoginLen bounds a Unix login, as useradd does (and as
	// internal/sshca checks the logins it puts in certificates).
	MaxLoginLen = 32
	// MaxPGIdentLen is PostgreSQL's NAMEDATALEN-1: longer role and
	// database names are truncated by the server, so two would collide.
	MaxPGIdentLen = 63
	// MaxAddrLen bounds a destination's host:port.
	MaxAddrLen = MaxNameLen + 8
)

// AlwaysMesh reports the kinds reachable only through the control plane:
// their destinations are always stored with mesh set.
func AlwaysMesh(kind string) bool { return kind == DestTCP || kind == DestKubernetes }

// NormalizeDestination returns a copy of d with what its kind implies set:
// mesh for tcp and kubernetes. The node proposes the normalized form, so the
// event says what the state holds; the state machine normalizes again.
func NormalizeDestination(d *DestinationAdded) *DestinationAdded {
	n := proto.Clone(d).(*DestinationAdded)
	if AlwaysMesh(n.GetKind()) {
		n.Mesh = true
	}
	return n
}

// CheckDestinationName validates a destination name: CheckName, and no "@",
// since the name is the DEST of SSH certificate principals LOGIN@DEST.
func CheckDestinationName(name string) error {
	if err := CheckName("destination", name); err != nil {
		return err
	}
	if strings.Contains(name, "@") {
		return fmt.Errorf("%w: destination name %q: it is the DEST of SSH principals LOGIN@DEST, so it cannot contain @", ErrInvalidName, name)
	}
	return nil
}

// CheckDestination validates a destination spec as it would be stored
// (after NormalizeDestination). Errors wrap ErrInvalidDestination and name
// the destination and the field: `invalid destination "web-1": kind "sshh"
// is not one of ssh, postgres, kubernetes, tcp`. The spec comes from the
// CLI and the API, so nothing in it is trusted.
func CheckDestination(d *DestinationAdded) error {
	d = NormalizeDestination(d)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidDestination, d.GetName(), fmt.Sprintf(format, args...))
	}
	if err := CheckDestinationName(d.GetName()); err != nil {
		return bad("name: %v", err)
	}
	kind := d.GetKind()
	known := false
	for _, k := range destinationKinds {
		known = known || k == kind
	}
	if !known {
		return bad("kind %q is not one of %s", kind, strings.Join(destinationKinds[:], ", "))
	}
	switch {
	case d.GetAddr() != "":
		if err := CheckAddr(d.GetAddr()); err != nil {
			return bad("%v", err)
		}
	case kind != DestKubernetes:
		return bad("addr is required for %s destinations (HOST:PORT)", kind)
	}
	if c := d.GetConnector(); c != "" {
		if err := CheckName("target", c); err != nil {
			return bad("connector: %v", err)
		}
	}
	if d.GetMesh() && d.GetConnector() == "" {
		if AlwaysMesh(kind) {
			return bad("connector is required: %s destinations are always reached through mesh mode, by the connector's agent", kind)
		}
		return bad("mesh needs a connector (the target whose agent dials addr)")
	}
	if err := CheckLabels("labels", d.GetLabels()); err != nil {
		return bad("%v", err)
	}
	if db := d.GetDatabase(); db != "" {
		if kind != DestPostgres {
			return bad("database is only for postgres destinations, not %s", kind)
		}
		if err := checkPGIdent("database", db); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// CheckAddr validates a destination address: HOST:PORT with a host name or
// IP address (IPv6 in brackets) and a port of 1 to 65535.
func CheckAddr(addr string) error {
	if len(addr) > MaxAddrLen {
		return fmt.Errorf("addr has %d bytes, at most %d allowed", len(addr), MaxAddrLen)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return fmt.Errorf("addr %q: want HOST:PORT (%s)", addr, ae.Err)
		}
		return fmt.Errorf("addr %q: want HOST:PORT", addr)
	}
	if host == "" {
		return fmt.Errorf("addr %q: host is empty", addr)
	}
	if err := checkPort(port); err != nil {
		return fmt.Errorf("addr %q: %v", addr, err)
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if strings.Contains(addr, "[") {
		// SplitHostPort takes "[name]:22" too; brackets are for IPv6.
		return fmt.Errorf("addr %q: brackets are only for IPv6 addresses", addr)
	}
	for i, r := range host {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			i > 0 && strings.ContainsRune(".-_", r)
		if !ok {
			return fmt.Errorf("addr %q: host %q: character %q at position %d (a host name or IP address)", addr, host, r, i+1)
		}
	}
	return nil
}

func checkPort(port string) error {
	n := 0
	for _, r := range port {
		if r < '0' || r > '9' || n > 65535 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
		n = n*10 + int(r-'0')
	}
	if port == "" || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

// Destination roles: privileges on destinations (SPEC section 11).
const (
	// RoleLogin ("login:UNIXUSER") logs in to ssh destinations as UNIXUSER.
	RoleLogin = "login"
	// RoleLoginForward ("login-forward:UNIXUSER") adds port and agent
	// forwarding to certificates for UNIXUSER.
	RoleLoginForward = "login-forward"
	// RoleDB ("db:PGROLE") gets postgres users that are members of PGROLE.
	RoleDB = "db"
	// RoleKube ("kube:CLUSTERROLE") binds CLUSTERROLE, cluster-wide or in
	// the namespaces the resource names.
	RoleKube = "kube"
	// RoleConnect ("connect", no value) reaches a tcp or other mesh
	// destination.
	RoleConnect = "connect"
)

// RoleKinds lists the destination role kinds.
var RoleKinds = [...]string{RoleLogin, RoleLoginForward, RoleDB, RoleKube, RoleConnect}

// A Role is a destination role privilege: "login:deploy" is {login deploy},
// "connect" is {connect ""}.
type Role struct {
	Kind  string
	Value string
}

func (r Role) String() string {
	if r.Kind == RoleConnect {
		return r.Kind
	}
	return r.Kind + ":" + r.Value
}

// IsRole reports whether privilege p is meant as a destination role
// (valid or not): "connect", or a role kind with or without ":VALUE".
func IsRole(p string) bool {
	kind, _, _ := strings.Cut(p, ":")
	for _, k := range RoleKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// ParseRole parses and validates a destination role privilege.
func ParseRole(p string) (Role, error) {
	kind, value, hasValue := strings.Cut(p, ":")
	switch kind {
	case RoleConnect:
		if hasValue {
			return Role{}, fmt.Errorf("%w: privilege %q: connect takes no value", ErrInvalidName, p)
		}
		return Role{Kind: kind}, nil
	case RoleLogin, RoleLoginForward:
		if err := CheckLogin(value); err != nil {
			return Role{}, fmt.Errorf("%w: privilege %q: want %s:UNIXUSER: %v", ErrInvalidName, p, kind, err)
		}
	case RoleDB:
		if err := checkPGIdent("role", value); err != nil {
			return Role{}, fmt.Errorf("%w: privilege %q: want db:PGROLE: %v", ErrInvalidName, p, err)
		}
	case RoleKube:
		if err := checkClusterRole(value); err != nil {
			return Role{}, fmt.Errorf("%w: privilege %q: want kube:CLUSTERROLE: %v", ErrInvalidName, p, err)
		}
	default:
		return Role{}, fmt.Errorf("%w: privilege %q is not a destination role (%s)", ErrInvalidName, p, roleForms)
	}
	return Role{Kind: kind, Value: value}, nil
}

const roleForms = "login:UNIXUSER, login-forward:UNIXUSER, db:PGROLE, kube:CLUSTERROLE or connect"

// CheckLogin validates a Unix login: 1 to MaxLoginLen lower-case letters,
// digits, _ and -, not starting with a digit or - (the portable subset
// useradd accepts, and what internal/sshca puts in principals).
func CheckLogin(login string) error {
	if login == "" {
		return errors.New("unix user is empty")
	}
	if len(login) > MaxLoginLen {
		return fmt.Errorf("unix user %.40q has %d characters, at most %d allowed", login, len(login), MaxLoginLen)
	}
	for i, r := range login {
		ok := r >= 'a' && r <= 'z' || r == '_' || i > 0 && (r >= '0' && r <= '9' || r == '-')
		if !ok {
			return fmt.Errorf("unix user %q: character %q at position %d (a-z, _, and 0-9 - after the first)", login, r, i+1)
		}
	}
	return nil
}

// checkPGIdent validates a PostgreSQL role or database name of field: 1 to
// MaxPGIdentLen bytes of letters, digits, _ and $, not starting with a digit
// or $ (the connector quotes it, so case is kept).
func checkPGIdent(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", field)
	}
	if len(s) > MaxPGIdentLen {
		return fmt.Errorf("%s %.70q has %d bytes, at most %d allowed (PostgreSQL truncates longer names)", field, s, len(s), MaxPGIdentLen)
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || i > 0 && (r >= '0' && r <= '9' || r == '$')
		if !ok {
			return fmt.Errorf("%s %q: character %q at position %d (letters, _, and digits $ after the first)", field, s, r, i+1)
		}
	}
	return nil
}

// checkClusterRole validates a Kubernetes ClusterRole name: 1 to 253
// lower-case letters, digits, - . and : (as in system:aggregate-to-view),
// starting and ending with a letter or digit.
func checkClusterRole(s string) error {
	if s == "" {
		return errors.New("cluster role is empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("cluster role has %d characters, at most %d allowed", len(s), MaxNameLen)
	}
	alnum := func(r byte) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }
	for i := 0; i < len(s); i++ {
		r := s[i]
		if !alnum(r) && !strings.ContainsRune("-.:", rune(r)) {
			return fmt.Errorf("cluster role %q: character %q at position %d (a-z, 0-9, - . :)", s, r, i+1)
		}
	}
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return fmt.Errorf("cluster role %q must start and end with a letter or digit", s)
	}
	return nil
}

// DestinationResource splits a resource "destinations/NAME-GLOB" or
// "destinations/NAME-GLOB/NAMESPACE-GLOB"; ok is false for any other.
func DestinationResource(r string) (name, namespace string, ok bool) {
	rest, ok := strings.CutPrefix(r, "destinations/")
	if !ok {
		return "", "", false
	}
	name, namespace, _ = strings.Cut(rest, "/")
	return name, namespace, true
}

// CheckGrantScope refuses a privilege on a resource it can never mean:
// a destination role on anything but destinations, the namespace form of
// a destination with anything but a kube: role, and the target privileges
// provision and keys on destinations. The answer says what to write.
func CheckGrantScope(privilege, resource string) error {
	_, ns, isDest := DestinationResource(resource)
	switch {
	case IsRole(privilege) && !isDest:
		return fmt.Errorf("%w: privilege %q is a destination role: grant it on destinations/NAME-GLOB (destinations/* for every destination), not on %q", ErrInvalidName, privilege, resource)
	case isDest && ns != "" && !strings.HasPrefix(privilege, RoleKube+":"):
		return fmt.Errorf("%w: resource %q names a Kubernetes namespace, which only kube: roles use; grant %s on destinations/NAME-GLOB", ErrInvalidName, resource, privilege)
	case isDest && (privilege == PrivProvision || privilege == PrivKeys):
		return fmt.Errorf("%w: privilege %s is for targets; on destinations grant admin, view or a role (%s)", ErrInvalidName, privilege, roleForms)
	}
	return nil
}

// MatchDestination reports whether a grant's resource glob covers the
// destination resource res (both "destinations/…"). Globs match with
// path.Match semantics; a grant on a whole destination
// ("destinations/prod") also covers each of its namespaces
// ("destinations/prod/dev"), as a cluster-wide role includes them.
func MatchDestination(glob, res string) bool {
	gName, gNS, ok := DestinationResource(glob)
	if !ok {
		return false
	}
	name, ns, ok := DestinationResource(res)
	if !ok {
		return false
	}
	if m, err := path.Match(gName, name); err != nil || !m {
		return false
	}
	switch {
	case gNS == "":
		return true
	case ns == "":
		return false
	}
	m, err := path.Match(gNS, ns)
	return err == nil && m
}

// GrantExpired is GrantRemoved.reason when the leader removes a grant
// whose expiry passed.
const GrantExpired = "expired"
