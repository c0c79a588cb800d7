package node_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

func clientKey(t *testing.T) (ed25519.PrivateKey, []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return priv, ssh.MarshalAuthorizedKey(sp)
}

func parseCert(t *testing.T, s string) *ssh.Certificate {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	c, ok := k.(*ssh.Certificate)
	if !ok {
		t.Fatalf("not a certificate: %T", k)
	}
	return c
}

// SSH certificates are issued through a follower of a three-node cluster
// after the grant check, with the contents SPEC section 11 asks for, one
// credential_issued event each and no private material in it.
func TestIssueSSHThroughFollower(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	follower := (c.WaitLeader() + 1) % 3
	admin := c.Client(follower)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "alice"}))
	must(admin.Destinations.Add(ctx, &rpc.AddDestinationRequest{Name: "web-1", Kind: "ssh", Addr: "127.0.0.1:2222"}))
	must(admin.Destinations.Add(ctx, &rpc.AddDestinationRequest{Name: "web-2", Kind: "ssh", Addr: "127.0.0.1:2223"}))
	must(admin.Destinations.Add(ctx, &rpc.AddDestinationRequest{Name: "db-1", Kind: "postgres", Addr: "127.0.0.1:5432"}))
	must(admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-*"}))
	must(admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "login:ops", Resource: "destinations/web-2"}))
	must(admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "login-forward:ops", Resource: "destinations/web-2"}))
	must(admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/db-1"}))
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:alice"})
	must(tok, err)
	short, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:alice", TtlSeconds: 600})
	must(short, err)
	c.WaitEvent(admin.LastIndex())
	alice := c.ClientFor(tok.GetToken(), c.Node(follower).Addr())
	_, pub := clientKey(t)
	caSigner, err := ssh.NewSignerFromKey(c.SSHCAs.User)
	if err != nil {
		t.Fatal(err)
	}
	userCA := caSigner.PublicKey()

	const n = 8
	serials := map[uint64]bool{}
	var first, last *rpc.IssueSSHResponse
	for i := 0; i < n; i++ {
		before := time.Now()
		r, err := alice.Credentials.IssueSSH(ctx, &rpc.IssueSSHRequest{Destination: "web-1", PublicKey: pub})
		after := time.Now()
		if err != nil {
			t.Fatalf("issue %d: %v", i, err)
		}
		if first == nil {
			first = r
		}
		last = r
		cert := parseCert(t, r.GetCertificate())
		if serials[cert.Serial] || cert.Serial == 0 {
			t.Fatalf("serial %d repeated or zero", cert.Serial)
		}
		serials[cert.Serial] = true
		if strings.Join(cert.ValidPrincipals, ",") != "deploy@web-1" || r.GetLogin() != "deploy" || r.GetAddr() != "127.0.0.1:2222" {
			t.Fatalf("principals %v login %q addr %q", cert.ValidPrincipals, r.GetLogin(), r.GetAddr())
		}
		if cert.KeyId != sshca.KeyID("user:alice", r.GetId()) {
			t.Fatalf("KeyId %q", cert.KeyId)
		}
		if !bytes.Equal(cert.SignatureKey.Marshal(), userCA.Marshal()) || cert.CertType != ssh.UserCert {
			t.Fatal("not a user certificate of the cluster's user CA")
		}
		va, vb := time.Unix(int64(cert.ValidAfter), 0), time.Unix(int64(cert.ValidBefore), 0)
		if va.Before(before.Add(-time.Minute-time.Second)) || va.After(after.Add(-time.Minute)) {
			t.Fatalf("valid after %v, want now-1m (call between %v and %v)", va, before, after)
		}
		if vb.Sub(va) != time.Hour+time.Minute {
			t.Fatalf("validity %v, want the default 1h (from now-1m)", vb.Sub(va))
		}
		if _, ok := cert.Extensions["permit-pty"]; !ok || len(cert.Extensions) != 1 {
			t.Fatalf("extensions %v, want permit-pty alone", cert.Extensions)
		}
	}
	// Exactly one credential_issued event per certificate, naming the
	// grant, with the key's fingerprint and nothing private.
	c.WaitEvent(last.GetIndex())
	ev, err := c.Node(0).State().Event(first.GetIndex())
	if err != nil {
		t.Fatal(err)
	}
	ej, err := events.ToJSON(ev)
	if err != nil || ej.Type != "credential_issued" {
		t.Fatalf("event %s (%v)", ej.Type, err)
	}
	sp, _, _, _, _ := ssh.ParseAuthorizedKey(pub)
	p := string(ej.Payload)
	for _, want := range []string{`"id":"` + first.GetId() + `"`, `"grantPrivilege":"login:deploy"`, `"grantResource":"destinations/web-*"`, ssh.FingerprintSHA256(sp)} {
		if !strings.Contains(p, want) && !strings.Contains(p, strings.ReplaceAll(want, "grantP", "grant_p")) && !strings.Contains(p, strings.ReplaceAll(want, "grantR", "grant_r")) {
			t.Errorf("event payload %s lacks %s", p, want)
		}
	}
	for _, bad := range []string{"PRIVATE", "ssh-ed25519", "cert"} {
		if strings.Contains(p, bad) {
			t.Errorf("event payload holds %q: %s", bad, p)
		}
	}
	list, err := alice.Credentials.List(ctx, &rpc.ListCredentialsRequest{Subject: "user:alice"})
	if err != nil || len(list.GetCredentials()) != n {
		t.Fatalf("alice lists %d credentials (%v), want %d", len(list.GetCredentials()), err, n)
	}
	issued := 0
	if err := c.Node(0).State().Events(0, func(e *events.Event) bool {
		if e.GetType() == events.Type_TYPE_CREDENTIAL_ISSUED {
			issued++
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if issued != n {
		t.Fatalf("%d credential_issued events for %d certificates", issued, n)
	}
	if _, err := alice.Credentials.List(ctx, &rpc.ListCredentialsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice lists everyone's credentials without view: %v", err)
	}

	// Forwarding with login-forward only; TTL asked, capped, refused.
	r, err := alice.Credentials.IssueSSH(ctx, &rpc.IssueSSHRequest{Destination: "web-2", Login: "ops", PublicKey: pub, TtlNanos: int64(12 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, r.GetCertificate())
	if _, ok := cert.Extensions["permit-port-forwarding"]; !ok {
		t.Fatalf("extensions %v: login-forward:ops gives forwarding", cert.Extensions)
	}
	if cert.ValidBefore-cert.ValidAfter != uint64((12*time.Hour + time.Minute).Seconds()) {
		t.Fatalf("12h asked: validity %ds", cert.ValidBefore-cert.ValidAfter)
	}
	r, err = c.ClientFor(short.GetToken(), c.Addrs()...).Credentials.IssueSSH(ctx, &rpc.IssueSSHRequest{Destination: "web-1", PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	if exp := time.Unix(short.GetExpiresUnixNano()/1e9, 0); short.GetExpiresUnixNano() == 0 || time.Unix(0, r.GetValidBeforeUnixNano()).After(time.Unix(0, short.GetExpiresUnixNano())) {
		t.Fatalf("valid before %v, token expires %v: a credential outlived its token", time.Unix(0, r.GetValidBeforeUnixNano()), exp)
	}

	// Every node has applied the last issue, so that an index moving in the
	// loop below can only be a refused issue's write.
	c.WaitEvent(r.GetIndex())
	refused := []struct {
		name string
		req  *rpc.IssueSSHRequest
		code codes.Code
		want string
	}{
		{"wrong login", &rpc.IssueSSHRequest{Destination: "web-1", Login: "root", PublicKey: pub}, codes.PermissionDenied, "hpt grants add user:alice login:root destinations/web-1"},
		{"no grant", &rpc.IssueSSHRequest{Destination: "web-3", PublicKey: pub}, codes.NotFound, "destination"},
		{"several logins", &rpc.IssueSSHRequest{Destination: "web-2", PublicKey: pub}, codes.InvalidArgument, "deploy, ops"},
		{"not ssh", &rpc.IssueSSHRequest{Destination: "db-1", PublicKey: pub}, codes.InvalidArgument, "postgres destination, not ssh"},
		{"garbage key", &rpc.IssueSSHRequest{Destination: "web-1", PublicKey: []byte("ssh-ed25519 AAAAnotakey")}, codes.InvalidArgument, "public_key"},
		{"ttl above max", &rpc.IssueSSHRequest{Destination: "web-1", PublicKey: pub, TtlNanos: int64(13 * time.Hour)}, codes.InvalidArgument, "ttl"},
	}
	for _, tc := range refused {
		before := c.Node(follower).State().AppliedIndex()
		_, err := alice.Credentials.IssueSSH(ctx, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s naming %q", tc.name, err, tc.code, tc.want)
		}
		if after := c.Node(follower).State().AppliedIndex(); after != before {
			t.Errorf("%s: refused issue wrote (applied %d -> %d)", tc.name, before, after)
		}
	}
	// A login on no destination: the denial names the grant to add.
	must(admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "bob"}))
	bt, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:bob"})
	must(bt, err)
	c.WaitEvent(admin.LastIndex())
	_, err = c.ClientFor(bt.GetToken(), c.Addrs()...).Credentials.IssueSSH(ctx, &rpc.IssueSSHRequest{Destination: "web-1", PublicKey: pub})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "hpt grants add user:bob login:LOGIN destinations/web-1") {
		t.Errorf("bob without grant: %v", err)
	}

	// Revoking her own credential needs no admin; removing the grant
	// revokes the rest issued under it.
	if _, err := alice.Credentials.Revoke(ctx, &rpc.RevokeCredentialRequest{Id: first.GetId()}); err != nil {
		t.Fatalf("alice revokes her own: %v", err)
	}
	must(admin.Grants.Remove(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-*"}))
	c.WaitEvent(admin.LastIndex())
	list, err = admin.Credentials.List(ctx, &rpc.ListCredentialsRequest{Destination: "web-1", All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range list.GetCredentials() {
		if ci.GetStatus() != "revoked" {
			t.Errorf("credential %s is %s after its grant was removed", ci.GetId(), ci.GetStatus())
		}
		if ci.GetId() == first.GetId() && ci.GetRevokedReason() != "revoked" {
			t.Errorf("first revoked with reason %q", ci.GetRevokedReason())
		}
	}
}
