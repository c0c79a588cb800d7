package sshca

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/events"
)

// Extensions of user certificates. A certificate carries only what is
// listed: no X11 forwarding and no permit-user-rc (~/.ssh/rc runs code at
// every login, which a short-lived credential has no need for).
const (
	ExtPTY            = "permit-pty"
	ExtPortForwarding = "permit-port-forwarding"
	ExtAgentForward   = "permit-agent-forwarding"
)

// MaxPrincipals is OpenSSH's limit on principals in one certificate
// (SSHKEY_CERT_MAX_PRINCIPALS); sshd refuses a certificate with more.
const MaxPrincipals = 256

// MaxLoginLen bounds a login (a Unix user name), as useradd does.
const MaxLoginLen = 32

// UserCert is what a user certificate is issued from.
type UserCert struct {
	// PublicKey is the client's key in authorized_keys format, as sent
	// (checked by ParseClientKey).
	PublicKey []byte
	// Subject is who the certificate is for: "user:NAME" or "machine:NAME".
	Subject string
	// CredentialID names the credential (its credential_issued event) in
	// the KeyId, so sshd's log line of a login leads back to the event.
	CredentialID string
	// Principals are "LOGIN@DEST" (see Principal), one per destination and
	// login granted. Duplicates are dropped; the order is made canonical.
	Principals []string
	// ValidAfter and ValidBefore bound the certificate (see TTLPolicy).
	ValidAfter, ValidBefore time.Time
	// Serial must be nonzero and unique per CA: a KRL revokes by serial,
	// and OpenSSH never revokes serial 0 (see NewSerial).
	Serial uint64
	// AllowForwarding adds permit-port-forwarding and
	// permit-agent-forwarding (a login-forward:LOGIN grant).
	AllowForwarding bool
}

// KeyID is the KeyId of a user certificate: "SUBJECT cred:ID", e.g.
// "user:alice@example.com cred:c_42". sshd logs it with every login it
// accepts ("… ID user:alice@example.com cred:c_42 (serial 7) CA …").
func KeyID(subject, credentialID string) string {
	return subject + " cred:" + credentialID
}

// Principal returns "LOGIN@DEST" after checking both halves: login is a
// Unix user name (lower-case letters, digits, _ and -, not starting with a
// digit or -, at most 32), dest a destination name (events.CheckName).
// Neither half can contain "@", whitespace or "#", so the principal is one
// unambiguous line of an AuthorizedPrincipalsFile.
func Principal(login, dest string) (string, error) {
	if err := checkLogin(login); err != nil {
		return "", err
	}
	if err := events.CheckName("destination", dest); err != nil {
		return "", invalid("destination", "%v", err)
	}
	if strings.Contains(dest, "@") {
		return "", invalid("destination", "%q: a destination name in a principal cannot contain @", dest)
	}
	return login + "@" + dest, nil
}

// ParsePrincipal splits "LOGIN@DEST", checking it as Principal does.
func ParsePrincipal(p string) (login, dest string, err error) {
	login, dest, ok := strings.Cut(p, "@")
	if !ok {
		return "", "", invalid("principals", "%q: want LOGIN@DEST", p)
	}
	if _, err := Principal(login, dest); err != nil {
		return "", "", invalid("principals", "%q: %v", p, err)
	}
	return login, dest, nil
}

func checkLogin(login string) error {
	if login == "" {
		return invalid("login", "empty")
	}
	if len(login) > MaxLoginLen {
		return invalid("login", "%q has %d characters, at most %d allowed", login, len(login), MaxLoginLen)
	}
	for i, r := range login {
		ok := r >= 'a' && r <= 'z' || r == '_' || i > 0 && (r >= '0' && r <= '9' || r == '-')
		if !ok {
			return invalid("login", "%q: character %q at position %d (a Unix user name: a-z, _, and 0-9 - after the first)", login, r, i+1)
		}
	}
	return nil
}

// NewSerial returns a random nonzero serial from r (crypto/rand.Reader
// when nil). 64 random bits make a collision among the certificates of one
// cluster negligible without coordination between the nodes that issue.
func NewSerial(r io.Reader) (uint64, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [8]byte
	for range 8 {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, fmt.Errorf("read random serial: %w", err)
		}
		if s := binary.BigEndian.Uint64(b[:]); s != 0 {
			return s, nil
		}
	}
	return 0, fmt.Errorf("read random serial: source returned zero 8 times")
}

// IssueUser checks req and returns a user certificate for it signed by ca.
// rand is crypto/rand.Reader when nil. Bad input is a *FieldError naming
// the field; nothing is signed then.
func IssueUser(rnd io.Reader, ca ssh.Signer, req UserCert) (*ssh.Certificate, error) {
	pub, err := ParseClientKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	subj, err := events.ParseSubject(req.Subject)
	if err != nil {
		return nil, invalid("subject", "%v", err)
	}
	if subj.Kind != events.KindUser && subj.Kind != events.KindMachine {
		return nil, invalid("subject", "%q: certificates are issued to users and machines, not %ss", req.Subject, subj.Kind)
	}
	if err := checkCredentialID(req.CredentialID); err != nil {
		return nil, err
	}
	principals, err := canonicalPrincipals(req.Principals, func(p string) error {
		_, _, err := ParsePrincipal(p)
		return err
	})
	if err != nil {
		return nil, err
	}
	perms := ssh.Permissions{Extensions: map[string]string{ExtPTY: ""}}
	if req.AllowForwarding {
		perms.Extensions[ExtPortForwarding] = ""
		perms.Extensions[ExtAgentForward] = ""
	}
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          req.Serial,
		CertType:        ssh.UserCert,
		KeyId:           KeyID(subj.String(), req.CredentialID),
		ValidPrincipals: principals,
		Permissions:     perms,
	}
	return sign(rnd, ca, cert, req.ValidAfter, req.ValidBefore)
}

// HostCert is what a host certificate is issued from.
type HostCert struct {
	// PublicKey is the host's own key (sshd's HostKey).
	PublicKey ssh.PublicKey
	// Destination is the destination's name; the KeyId is "host:NAME".
	Destination string
	// Principals are the names clients reach the host by (HostPrincipals).
	Principals []string
	// ValidAfter and ValidBefore bound the certificate; the connector
	// renews it before ValidBefore.
	ValidAfter, ValidBefore time.Time
	// Serial must be nonzero (NewSerial).
	Serial uint64
}

// HostPrincipals returns the principals of a destination's host
// certificate: the host part of addr (what clients dial) and the
// destination's name (what hpt ssh and ssh-config call it).
func HostPrincipals(name, addr string) ([]string, error) {
	if err := events.CheckName("destination", name); err != nil {
		return nil, invalid("destination", "%v", err)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, invalid("addr", "%q: want HOST:PORT: %v", addr, err)
	}
	if err := checkHostPrincipal(host); err != nil {
		return nil, invalid("addr", "%q: %v", addr, err)
	}
	if host == name {
		return []string{name}, nil
	}
	return []string{host, name}, nil
}

// IssueHost checks req and returns a host certificate signed by ca.
func IssueHost(rnd io.Reader, ca ssh.Signer, req HostCert) (*ssh.Certificate, error) {
	if req.PublicKey == nil {
		return nil, invalid("host_key", "missing")
	}
	if _, ok := req.PublicKey.(*ssh.Certificate); ok {
		return nil, invalid("host_key", "is a certificate; want the host's plain key")
	}
	if err := checkKeyType("host_key", req.PublicKey); err != nil {
		return nil, err
	}
	if err := events.CheckName("destination", req.Destination); err != nil {
		return nil, invalid("destination", "%v", err)
	}
	principals, err := canonicalPrincipals(req.Principals, checkHostPrincipal)
	if err != nil {
		return nil, err
	}
	cert := &ssh.Certificate{
		Key:             req.PublicKey,
		Serial:          req.Serial,
		CertType:        ssh.HostCert,
		KeyId:           "host:" + req.Destination,
		ValidPrincipals: principals,
	}
	return sign(rnd, ca, cert, req.ValidAfter, req.ValidBefore)
}

func sign(rnd io.Reader, ca ssh.Signer, cert *ssh.Certificate, after, before time.Time) (*ssh.Certificate, error) {
	if ca == nil {
		return nil, invalid("ca", "missing")
	}
	if cert.Serial == 0 {
		return nil, invalid("serial", "0 is not a serial (a KRL cannot revoke it); use NewSerial")
	}
	if after.IsZero() || before.IsZero() {
		return nil, invalid("valid_before", "validity must be bounded on both sides")
	}
	if !before.After(after) {
		return nil, invalid("valid_before", "%s is not after valid_after %s", before.UTC().Format(time.RFC3339), after.UTC().Format(time.RFC3339))
	}
	if after.Unix() < 0 {
		return nil, invalid("valid_after", "%s is before 1970", after.UTC().Format(time.RFC3339))
	}
	cert.ValidAfter = uint64(after.Unix())
	// OpenSSH compares whole seconds; round down, so that a certificate
	// capped at a grant's expiry never outlives the grant.
	cert.ValidBefore = uint64(before.Unix())
	if cert.ValidBefore <= cert.ValidAfter {
		return nil, invalid("valid_before", "less than a second after valid_after")
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	if err := cert.SignCert(rnd, ca); err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return cert, nil
}

func checkCredentialID(id string) error {
	if id == "" {
		return invalid("credential_id", "empty")
	}
	if len(id) > 64 {
		return invalid("credential_id", "%d characters, at most 64 allowed", len(id))
	}
	for i, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.", r)) {
			return invalid("credential_id", "%q: character %q at position %d (allowed: letters, digits, _ - .)", id, r, i+1)
		}
	}
	return nil
}

// checkHostPrincipal accepts a host name or IP address: no whitespace,
// comma (OpenSSH's list separator), wildcard or control characters.
func checkHostPrincipal(h string) error {
	if h == "" {
		return invalid("principals", "empty host name")
	}
	if len(h) > 253 {
		return invalid("principals", "host name has %d characters, at most 253 allowed", len(h))
	}
	for i, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_:", r)) {
			return invalid("principals", "host name %q: character %q at position %d", h, r, i+1)
		}
	}
	return nil
}

func canonicalPrincipals(ps []string, check func(string) error) ([]string, error) {
	if len(ps) == 0 {
		// An empty list means "any principal" to OpenSSH: never issue one.
		return nil, invalid("principals", "empty (a certificate without principals would be valid for every login)")
	}
	out := slices.Clone(ps)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxPrincipals {
		return nil, invalid("principals", "%d principals, at most %d allowed", len(out), MaxPrincipals)
	}
	for _, p := range out {
		if err := check(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}
