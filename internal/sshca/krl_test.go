package sshca

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/internal/testenv"
)

// queryKRL asks the real ssh-keygen whether the certificate is revoked by
// the KRL: ssh-keygen -Q exits 1 and prints "REVOKED" for a revoked key.
func queryKRL(t *testing.T, keygen string, krl []byte, cert *ssh.Certificate) bool {
	t.Helper()
	dir := t.TempDir()
	krlPath, certPath := filepath.Join(dir, "krl"), filepath.Join(dir, "key-cert.pub")
	if err := os.WriteFile(krlPath, krl, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(keygen, "-Q", "-f", krlPath, certPath).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil && strings.Contains(string(out), ": ok"):
		return false
	case errors.As(err, &exit) && exit.ExitCode() == 1 && strings.Contains(string(out), "REVOKED"):
		return true
	}
	t.Fatalf("ssh-keygen -Q: %v: %s", err, out)
	return false
}

func TestKRLWithSSHKeygen(t *testing.T) {
	keygen := testenv.NeedTool(t, "ssh-keygen", "openssh-client")
	ca, otherCA := newSigner(t), newSigner(t)
	issue := func(signer ssh.Signer, serial uint64, cred string) *ssh.Certificate {
		req := userReq(t)
		req.Serial, req.CredentialID = serial, cred
		c, err := IssueUser(nil, signer, req)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	krl := KRL{Version: 3, Generated: time.Now(), Comment: "hpt test", Certs: []RevokedCerts{
		{CA: ca.PublicKey(), Serials: []uint64{1 << 63, 5, 9, 5}},
		{KeyIDs: []string{"user:alice@example.com cred:c_gone"}},
	}}
	b, err := krl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cert    *ssh.Certificate
		revoked bool
	}{
		{"revoked serial", issue(ca, 5, "c_1"), true},
		{"another revoked serial", issue(ca, 9, "c_1"), true},
		{"highest bit serial", issue(ca, 1<<63, "c_1"), true},
		{"unrevoked serial", issue(ca, 6, "c_1"), false},
		{"same serial, another CA", issue(otherCA, 5, "c_1"), false},
		{"revoked key id, any CA", issue(otherCA, 6, "c_gone"), true},
	} {
		if got := queryKRL(t, keygen, b, tc.cert); got != tc.revoked {
			t.Errorf("%s: revoked %v, want %v", tc.name, got, tc.revoked)
		}
	}
	// An empty KRL is valid and revokes nothing.
	empty, err := KRL{}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if queryKRL(t, keygen, empty, issue(ca, 5, "c_1")) {
		t.Error("the empty KRL revoked a certificate")
	}
	// ssh-keygen -Q -l lists what it read back.
	path := filepath.Join(t.TempDir(), "krl")
	os.WriteFile(path, b, 0o644)
	out, err := exec.Command(keygen, "-Q", "-l", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -Q -l: %v: %s", err, out)
	}
	for _, want := range []string{"KRL version 3", "hpt test", "serial: 5", "serial: 9", "id: user:alice@example.com cred:c_gone"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ssh-keygen -Q -l lacks %q:\n%s", want, out)
		}
	}
}

func TestKRLDeterministicAndBadInput(t *testing.T) {
	ca := newSigner(t)
	a, _ := KRL{Version: 1, Certs: []RevokedCerts{{CA: ca.PublicKey(), Serials: []uint64{3, 1, 2}, KeyIDs: []string{"b", "a"}}}}.Marshal()
	b, _ := KRL{Version: 1, Certs: []RevokedCerts{{CA: ca.PublicKey(), Serials: []uint64{1, 2, 3, 3}, KeyIDs: []string{"a", "b", "a"}}}}.Marshal()
	if !bytes.Equal(a, b) {
		t.Error("equal KRLs marshal differently")
	}
	if _, err := (KRL{Certs: []RevokedCerts{{Serials: []uint64{0}}}}).Marshal(); err == nil {
		t.Error("serial 0 accepted")
	} else {
		wantField(t, err, "certs.serials", ErrInvalid)
	}
	if _, err := (KRL{Certs: []RevokedCerts{{KeyIDs: []string{"a\x00b"}}}}).Marshal(); err == nil {
		t.Error("key id with NUL accepted")
	} else {
		wantField(t, err, "certs.key_ids", ErrInvalid)
	}
}
