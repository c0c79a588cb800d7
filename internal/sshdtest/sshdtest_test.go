package sshdtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestPlainKeyLogin: the harness's sshd accepts a static authorized key
// for a real account, runs a command as that account, and refuses a key
// it was not given. The host key the client sees is the harness's.
func TestPlainKeyLogin(t *testing.T) {
	EnsureUser(t, "deploy")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	s := New(t, Options{})
	s.Opts.Config = "AuthorizedKeysFile " + filepath.Join(s.Dir, "authorized_keys_%u")
	if err := os.WriteFile(filepath.Join(s.Dir, "authorized_keys_deploy"), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Start(t)

	cfg := &ssh.ClientConfig{
		User:            "deploy",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey.PublicKey()),
	}
	c, err := ssh.Dial("tcp", s.Addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.CombinedOutput("id -un; echo $0")
	if err != nil || string(out) != "deploy\nsh\n" {
		t.Fatalf("id -un: %q, %v", out, err)
	}
	s.WaitLog(t, "Accepted publickey for deploy")

	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := ssh.NewSignerFromKey(other)
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(otherSigner)}
	if c, err := ssh.Dial("tcp", s.Addr, cfg); err == nil {
		c.Close()
		t.Fatal("an unknown key logged in")
	}

	// A reload keeps the server answering on the same port.
	s.Reload(t)
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
	c2, err := ssh.Dial("tcp", s.Addr, cfg)
	if err != nil {
		t.Fatalf("dial after reload: %v", err)
	}
	c2.Close()
	if !bytes.Contains([]byte(s.Log()), []byte("Received SIGHUP")) {
		t.Errorf("sshd did not log the reload:\n%s", s.Log())
	}
}
