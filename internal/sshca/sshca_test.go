package sshca

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/internal/sshdtest"
)

// newSigner makes an Ed25519 key: a CA, a host or a client.
func newSigner(t testing.TB) ssh.Signer {
	s, _ := sshdtest.NewKey(t)
	return s
}

func authorizedKey(t testing.TB, key any) []byte {
	t.Helper()
	pub, err := ssh.NewPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.MarshalAuthorizedKey(pub)
}

func wantField(t *testing.T, err error, field string, kind error) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *FieldError", err)
	}
	if fe.Field != field || !errors.Is(err, kind) || !strings.HasPrefix(err.Error(), field+": ") {
		t.Fatalf("error %q: field %q (want %q), is %v: %v", err, fe.Field, field, kind, errors.Is(err, kind))
	}
}

func TestParseClientKey(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	ed := authorizedKey(t, edPub)
	ca := newSigner(t)
	cert := &ssh.Certificate{Key: ca.PublicKey(), Serial: 1, CertType: ssh.UserCert, ValidPrincipals: []string{"x"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	// A security-key Ed25519 public key: type, key, application.
	sk := ssh.Marshal(struct {
		Type string
		Key  []byte
		App  string
	}{ssh.KeyAlgoSKED25519, edPub, "ssh:"})
	skLine := ssh.KeyAlgoSKED25519 + " " + b64(sk) + "\n"

	for _, tc := range []struct {
		name string
		in   string
		ok   bool
		msg  string // in the error, when set
	}{
		{"ed25519", string(ed), true, ""},
		{"ed25519 with comment", strings.TrimSpace(string(ed)) + " alice@laptop\n", true, ""},
		{"ed25519 without newline", strings.TrimSpace(string(ed)), true, ""},
		{"ecdsa p256", string(authorizedKey(t, &ec.PublicKey)), true, ""},
		{"rsa 2048", string(authorizedKey(t, &rsa2048.PublicKey)), true, ""},
		{"rsa 1024", string(authorizedKey(t, &rsa1024.PublicKey)), false, ""},
		{"certificate", string(ssh.MarshalAuthorizedKey(cert)), false, "is a certificate"},
		{"security key", skLine, false, ""},
		{"options", `restrict,command="id" ` + string(ed), false, ""},
		{"two keys", string(ed) + string(ed), false, ""},
		{"empty", "", false, ""},
		{"comment only", "# a key\n", false, ""},
		{"garbage", "ssh-ed25519 AAAAnotbase64!!\n", false, ""},
		{"type mismatch", "ssh-rsa " + strings.Fields(string(ed))[1] + "\n", false, ""},
		{"too long", strings.Repeat("a", MaxClientKeyLen+1), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := ParseClientKey([]byte(tc.in))
			if tc.ok {
				if err != nil || pub == nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %s", pub.Type())
			}
			wantField(t, err, "public_key", ErrInvalid)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func b64(b []byte) string {
	s := string(ssh.MarshalAuthorizedKey(fakeKey(b)))
	return strings.Fields(s)[1]
}

// fakeKey lets MarshalAuthorizedKey encode an arbitrary blob.
type fakeKey []byte

func (k fakeKey) Type() string                                 { return "x" }
func (k fakeKey) Marshal() []byte                              { return k }
func (k fakeKey) Verify(data []byte, sig *ssh.Signature) error { return errors.New("no") }

func userReq(t *testing.T) UserCert {
	now := time.Unix(1_700_000_000, 0)
	return UserCert{
		PublicKey:    ssh.MarshalAuthorizedKey(newSigner(t).PublicKey()),
		Subject:      "user:alice@example.com",
		CredentialID: "c_42",
		Principals:   []string{"deploy@web-1", "admin@web-1", "deploy@web-1"},
		ValidAfter:   now.Add(-time.Minute),
		ValidBefore:  now.Add(time.Hour),
		Serial:       7,
	}
}

func TestIssueUserContents(t *testing.T) {
	ca := newSigner(t)
	for _, fwd := range []bool{false, true} {
		req := userReq(t)
		req.AllowForwarding = fwd
		cert, err := IssueUser(nil, ca, req)
		if err != nil {
			t.Fatal(err)
		}
		if cert.CertType != ssh.UserCert || cert.Serial != 7 || cert.KeyId != "user:alice@example.com cred:c_42" {
			t.Errorf("type %d serial %d key id %q", cert.CertType, cert.Serial, cert.KeyId)
		}
		if want := []string{"admin@web-1", "deploy@web-1"}; !slices.Equal(cert.ValidPrincipals, want) {
			t.Errorf("principals %q, want %q", cert.ValidPrincipals, want)
		}
		if cert.ValidAfter != uint64(req.ValidAfter.Unix()) || cert.ValidBefore != uint64(req.ValidBefore.Unix()) {
			t.Errorf("validity [%d, %d), want [%d, %d)", cert.ValidAfter, cert.ValidBefore, req.ValidAfter.Unix(), req.ValidBefore.Unix())
		}
		want := map[string]string{ExtPTY: ""}
		if fwd {
			want[ExtPortForwarding], want[ExtAgentForward] = "", ""
		}
		if len(cert.Permissions.Extensions) != len(want) || len(cert.Permissions.CriticalOptions) != 0 {
			t.Errorf("forwarding %v: extensions %v critical %v, want %v", fwd, cert.Permissions.Extensions, cert.Permissions.CriticalOptions, want)
		}
		for k := range want {
			if _, ok := cert.Permissions.Extensions[k]; !ok {
				t.Errorf("forwarding %v: extension %s missing", fwd, k)
			}
		}
		// The signature is the CA's and verifies for a listed principal at
		// a time inside the validity, and for nothing else.
		checker := ssh.CertChecker{
			IsUserAuthority: func(k ssh.PublicKey) bool { return string(k.Marshal()) == string(ca.PublicKey().Marshal()) },
			Clock:           func() time.Time { return req.ValidAfter.Add(time.Minute) },
		}
		if err := checker.CheckCert("deploy@web-1", cert); err != nil {
			t.Errorf("CheckCert: %v", err)
		}
		if err := checker.CheckCert("deploy@db-1", cert); err == nil {
			t.Error("CheckCert accepted a principal not in the certificate")
		}
		checker.Clock = func() time.Time { return req.ValidBefore.Add(time.Second) }
		if err := checker.CheckCert("deploy@web-1", cert); err == nil {
			t.Error("CheckCert accepted an expired certificate")
		}
	}
}

func TestIssueUserBadInput(t *testing.T) {
	ca := newSigner(t)
	for _, tc := range []struct {
		field string
		edit  func(*UserCert)
	}{
		{"public_key", func(r *UserCert) { r.PublicKey = []byte("nope") }},
		{"subject", func(r *UserCert) { r.Subject = "alice" }},
		{"subject", func(r *UserCert) { r.Subject = "group:ops" }},
		{"credential_id", func(r *UserCert) { r.CredentialID = "" }},
		{"credential_id", func(r *UserCert) { r.CredentialID = "c 1" }},
		{"principals", func(r *UserCert) { r.Principals = nil }},
		{"principals", func(r *UserCert) { r.Principals = []string{"deploy"} }},
		{"principals", func(r *UserCert) { r.Principals = []string{"Deploy@web-1"} }},
		{"principals", func(r *UserCert) { r.Principals = []string{"deploy@web 1"} }},
		{"principals", func(r *UserCert) { r.Principals = []string{"deploy@#web"} }},
		{"serial", func(r *UserCert) { r.Serial = 0 }},
		{"valid_before", func(r *UserCert) { r.ValidBefore = r.ValidAfter }},
		{"valid_before", func(r *UserCert) { r.ValidBefore = time.Time{} }},
	} {
		req := userReq(t)
		tc.edit(&req)
		cert, err := IssueUser(nil, ca, req)
		if err == nil {
			t.Errorf("%s: issued %+v", tc.field, cert)
			continue
		}
		wantField(t, err, tc.field, ErrInvalid)
	}
	if _, err := IssueUser(nil, nil, userReq(t)); err == nil {
		t.Error("issued without a CA")
	}
}

func TestPrincipal(t *testing.T) {
	if p, err := Principal("deploy", "web-1"); err != nil || p != "deploy@web-1" {
		t.Fatalf("Principal = %q, %v", p, err)
	}
	for _, tc := range [][2]string{{"", "web-1"}, {"root!", "web-1"}, {"1abc", "web-1"}, {"deploy", ""}, {"deploy", "a@b"}, {strings.Repeat("a", 33), "w"}} {
		if p, err := Principal(tc[0], tc[1]); err == nil {
			t.Errorf("Principal(%q, %q) = %q", tc[0], tc[1], p)
		}
	}
}

func TestNewSerial(t *testing.T) {
	seen := map[uint64]bool{}
	for range 1000 {
		s, err := NewSerial(nil)
		if err != nil || s == 0 || seen[s] {
			t.Fatalf("serial %d (seen %v): %v", s, seen[s], err)
		}
		seen[s] = true
	}
	if _, err := NewSerial(strings.NewReader(strings.Repeat("\x00", 64))); err == nil {
		t.Error("a source of zeros gave a serial")
	}
}

func TestIssueHost(t *testing.T) {
	ca, host := newSigner(t), newSigner(t)
	ps, err := HostPrincipals("web-1", "10.0.0.5:22")
	if err != nil || !slices.Equal(ps, []string{"10.0.0.5", "web-1"}) {
		t.Fatalf("HostPrincipals = %q, %v", ps, err)
	}
	now := time.Unix(1_700_000_000, 0)
	cert, err := IssueHost(nil, ca, HostCert{PublicKey: host.PublicKey(), Destination: "web-1", Principals: ps, ValidAfter: now, ValidBefore: now.Add(24 * time.Hour), Serial: 3})
	if err != nil {
		t.Fatal(err)
	}
	if cert.CertType != ssh.HostCert || cert.KeyId != "host:web-1" || len(cert.Permissions.Extensions) != 0 {
		t.Errorf("type %d key id %q extensions %v", cert.CertType, cert.KeyId, cert.Permissions.Extensions)
	}
	checker := ssh.CertChecker{
		IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return string(k.Marshal()) == string(ca.PublicKey().Marshal()) },
		Clock:           func() time.Time { return now.Add(time.Hour) },
	}
	if err := checker.CheckHostKey("10.0.0.5:22", nil, cert); err != nil {
		t.Errorf("CheckHostKey: %v", err)
	}
	if err := checker.CheckHostKey("10.0.0.6:22", nil, cert); err == nil {
		t.Error("CheckHostKey accepted a host not among the principals")
	}

	for _, tc := range []struct{ name, addr, field string }{
		{"web-1", "10.0.0.5", "addr"}, {"web 1", "10.0.0.5:22", "destination"}, {"web-1", "a,b:22", "addr"}, {"web-1", "*:22", "addr"},
	} {
		if _, err := HostPrincipals(tc.name, tc.addr); err == nil {
			t.Errorf("HostPrincipals(%q, %q) accepted", tc.name, tc.addr)
		} else {
			wantField(t, err, tc.field, ErrInvalid)
		}
	}
	userCert, _ := IssueUser(nil, ca, userReq(t))
	for _, tc := range []struct {
		field string
		req   HostCert
	}{
		{"host_key", HostCert{Destination: "web-1", Principals: ps, ValidAfter: now, ValidBefore: now.Add(time.Hour), Serial: 1}},
		{"host_key", HostCert{PublicKey: userCert, Destination: "web-1", Principals: ps, ValidAfter: now, ValidBefore: now.Add(time.Hour), Serial: 1}},
		{"destination", HostCert{PublicKey: host.PublicKey(), Principals: ps, ValidAfter: now, ValidBefore: now.Add(time.Hour), Serial: 1}},
		{"principals", HostCert{PublicKey: host.PublicKey(), Destination: "web-1", ValidAfter: now, ValidBefore: now.Add(time.Hour), Serial: 1}},
		{"serial", HostCert{PublicKey: host.PublicKey(), Destination: "web-1", Principals: ps, ValidAfter: now, ValidBefore: now.Add(time.Hour)}},
	} {
		if _, err := IssueHost(nil, ca, tc.req); err == nil {
			t.Errorf("%s: issued", tc.field)
		} else {
			wantField(t, err, tc.field, ErrInvalid)
		}
	}
}

func TestValidity(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := DefaultTTLPolicy()
	for _, tc := range []struct {
		name         string
		ttl          time.Duration
		grant, token time.Time
		want         time.Time
		field        string
		kind         error
	}{
		{name: "default", want: now.Add(time.Hour)},
		{name: "asked", ttl: 4 * time.Hour, want: now.Add(4 * time.Hour)},
		{name: "max", ttl: 12 * time.Hour, want: now.Add(12 * time.Hour)},
		{name: "above max", ttl: 12*time.Hour + 1, field: "ttl", kind: ErrInvalid},
		{name: "negative", ttl: -time.Second, field: "ttl", kind: ErrInvalid},
		{name: "grant caps", ttl: 4 * time.Hour, grant: now.Add(30 * time.Minute), want: now.Add(30 * time.Minute)},
		{name: "token caps", grant: now.Add(30 * time.Minute), token: now.Add(10 * time.Minute), want: now.Add(10 * time.Minute)},
		{name: "later expiries do not extend", grant: now.Add(48 * time.Hour), token: now.Add(48 * time.Hour), want: now.Add(time.Hour)},
		{name: "grant expired", grant: now, field: "grant_expiry", kind: ErrExpired},
		{name: "token expired", token: now.Add(-time.Second), field: "token_expiry", kind: ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			after, before, err := p.Validity(now, tc.ttl, tc.grant, tc.token)
			if tc.field != "" {
				if err == nil {
					t.Fatalf("valid until %s", before)
				}
				wantField(t, err, tc.field, tc.kind)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !after.Equal(now.Add(-time.Minute)) || !before.Equal(tc.want) {
				t.Errorf("[%s, %s), want [%s, %s)", after, before, now.Add(-time.Minute), tc.want)
			}
		})
	}
	if _, _, err := (TTLPolicy{Default: 2 * time.Hour, Max: time.Hour}).Validity(now, 0, time.Time{}, time.Time{}); err == nil {
		t.Error("a policy with default above max was used")
	}
}

// A certificate capped at a grant's expiry never outlives it, even by the
// fraction of a second OpenSSH's whole-second times would add.
func TestIssueUserRoundsDown(t *testing.T) {
	req := userReq(t)
	req.ValidBefore = req.ValidBefore.Add(900 * time.Millisecond)
	cert, err := IssueUser(nil, newSigner(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if int64(cert.ValidBefore) > req.ValidBefore.Unix() || time.Unix(int64(cert.ValidBefore), 0).After(req.ValidBefore) {
		t.Errorf("valid before %d, after the cap %s", cert.ValidBefore, req.ValidBefore)
	}
}
