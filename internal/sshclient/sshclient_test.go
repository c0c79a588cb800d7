package sshclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/internal/sshclient"
	"github.com/hpt-dev/hpt/internal/sshdtest"
	"github.com/hpt-dev/hpt/internal/testlog"
)

const login = "deploy"

func newSigner(t *testing.T) ssh.Signer {
	s, _ := sshdtest.NewKey(t)
	return s
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startSSHD starts the real sshd configured by hand as a connector would:
// it trusts userCA for user certificates, lets deploy in with the
// principal deploy@web-1 and, if hostCA is set, presents a host
// certificate signed by it for 127.0.0.1 and web-1.
func startSSHD(t *testing.T, userCA, hostCA ssh.Signer) *sshdtest.Server {
	t.Helper()
	sshdtest.EnsureUser(t, login)
	s := sshdtest.New(t, sshdtest.Options{})
	userCAPath := filepath.Join(s.Dir, "user_ca.pub")
	writeFile(t, userCAPath, ssh.MarshalAuthorizedKey(userCA.PublicKey()))
	principals := filepath.Join(s.Dir, "principals")
	writeFile(t, filepath.Join(principals, login), []byte(login+"@web-1\n"))
	config := "TrustedUserCAKeys " + userCAPath + "\nAuthorizedPrincipalsFile " + principals + "/%u\n"
	if hostCA != nil {
		now := time.Now()
		cert, err := sshca.IssueHost(nil, hostCA, sshca.HostCert{
			PublicKey: s.HostKey.PublicKey(), Destination: "web-1", Principals: []string{"127.0.0.1", "web-1"},
			ValidAfter: now.Add(-time.Minute), ValidBefore: now.Add(time.Hour), Serial: 7,
		})
		if err != nil {
			t.Fatal(err)
		}
		certPath := s.HostKeyPath + "-cert.pub"
		writeFile(t, certPath, ssh.MarshalAuthorizedKey(cert))
		config += "HostCertificate " + certPath + "\n"
	}
	s.Opts.Config = config
	s.Start(t)
	return s
}

// userCert returns a certificate signer for a fresh key, signed by ca for
// the given principals.
func userCert(t *testing.T, ca ssh.Signer, serial uint64, principals ...string) ssh.Signer {
	t.Helper()
	key := newSigner(t)
	now := time.Now()
	cert, err := sshca.IssueUser(nil, ca, sshca.UserCert{
		PublicKey: ssh.MarshalAuthorizedKey(key.PublicKey()), Subject: "user:alice@example.com", CredentialID: "c_1",
		Principals: principals, ValidAfter: now.Add(-time.Minute), ValidBefore: now.Add(time.Hour), Serial: serial,
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type fixture struct {
	userCA, hostCA ssh.Signer
	sshd           *sshdtest.Server
	alice          ssh.Signer
}

func setup(t *testing.T) fixture {
	t.Helper()
	f := fixture{userCA: newSigner(t), hostCA: newSigner(t)}
	f.sshd = startSSHD(t, f.userCA, f.hostCA)
	f.alice = userCert(t, f.userCA, 1, login+"@web-1")
	return f
}

func (f fixture) dial(t *testing.T, opts sshclient.Options) *sshclient.Client {
	t.Helper()
	c, err := sshclient.Dial(ctxT(t), f.sshd.Addr, login, f.alice, f.hostCA.PublicKey(), opts)
	if err != nil {
		t.Fatalf("dial %s: %v", f.sshd.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func run(t *testing.T, c *sshclient.Client, cmd, stdin string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	var in *strings.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	var r interface{ Read([]byte) (int, error) }
	if in != nil {
		r = in
	}
	status, err := c.Run(ctxT(t), cmd, r, &out, &errb)
	if err != nil {
		t.Fatalf("run %q: %v (stderr %q)", cmd, err, errb.String())
	}
	return status, out.String(), errb.String()
}

func TestRunPassesTheExitStatusThrough(t *testing.T) {
	f := setup(t)
	c := f.dial(t, sshclient.Options{})
	if st, out, _ := run(t, c, "id -un", ""); st != 0 || out != login+"\n" {
		t.Fatalf("id -un: status %d, %q", st, out)
	}
	if st, out, errs := run(t, c, "echo out; echo err >&2; exit 3", ""); st != 3 || out != "out\n" || errs != "err\n" {
		t.Fatalf("exit 3: status %d, stdout %q, stderr %q", st, out, errs)
	}
	if st, out, _ := run(t, c, "cat", "from stdin\n"); st != 0 || out != "from stdin\n" {
		t.Fatalf("cat: status %d, %q", st, out)
	}
	// Killed by a signal: 128+N, as a shell reports it.
	if st, _, _ := run(t, c, "kill -TERM $$", ""); st != 128+15 {
		t.Fatalf("killed by TERM: status %d, want %d", st, 128+15)
	}
	// Without a pty asked for, there is none.
	if st, out, _ := run(t, c, "tty", ""); st == 0 || strings.HasPrefix(out, "/dev/") {
		t.Fatalf("tty without a pty: status %d, %q", st, out)
	}
}

func TestPTYWhenAsked(t *testing.T) {
	f := setup(t)
	c := f.dial(t, sshclient.Options{ForcePTY: true, Term: "vt100"})
	st, out, _ := run(t, c, "tty; echo $TERM", "")
	if st != 0 || !strings.HasPrefix(out, "/dev/pts/") || !strings.Contains(out, "vt100") {
		t.Fatalf("tty with ForcePTY: status %d, %q", st, out)
	}
	// A shell on the pty, fed from a non-terminal, exits with its status.
	var buf testlog.Buffer // stdout and stderr write from two goroutines
	st, err := c.Shell(ctxT(t), strings.NewReader("tty; exit 4\n"), &buf, &buf)
	if err != nil || st != 4 || !strings.Contains(buf.String(), "/dev/pts/") {
		t.Fatalf("shell with ForcePTY: status %d, %v, output %q", st, err, buf.String())
	}
}

func TestPlainHostKeyRefused(t *testing.T) {
	userCA, hostCA := newSigner(t), newSigner(t)
	sshd := startSSHD(t, userCA, nil)
	alice := userCert(t, userCA, 1, login+"@web-1")
	c, err := sshclient.Dial(ctxT(t), sshd.Addr, login, alice, hostCA.PublicKey(), sshclient.Options{})
	if err == nil {
		c.Close()
		t.Fatal("a host with a plain host key was accepted")
	}
	want := "host " + sshd.Addr + " presented a plain ssh-ed25519 key, not a certificate signed by the cluster's host CA; --insecure-host-key skips this check"
	if !errors.Is(err, sshclient.ErrUntrustedHost) || err.Error() != want {
		t.Fatalf("dial a host with a plain key: %v\nwant: %s", err, want)
	}
	c, err = sshclient.Dial(ctxT(t), sshd.Addr, login, alice, hostCA.PublicKey(), sshclient.Options{InsecureHostKey: true})
	if err != nil {
		t.Fatalf("dial with InsecureHostKey: %v", err)
	}
	defer c.Close()
	if st, out, _ := run(t, c, "id -un", ""); st != 0 || out != login+"\n" {
		t.Fatalf("id -un: status %d, %q", st, out)
	}
}

func TestHostCertificateOfAnotherCARefused(t *testing.T) {
	f := setup(t)
	other := newSigner(t)
	c, err := sshclient.Dial(ctxT(t), f.sshd.Addr, login, f.alice, other.PublicKey(), sshclient.Options{})
	if err == nil {
		c.Close()
		t.Fatal("a host certificate of another CA was accepted")
	}
	if !errors.Is(err, sshclient.ErrUntrustedHost) || !strings.Contains(err.Error(), "signed by another CA ("+ssh.FingerprintSHA256(f.hostCA.PublicKey())+")") {
		t.Fatalf("dial trusting another host CA: %v", err)
	}
}

func TestHostCertificateForAnotherNameRefused(t *testing.T) {
	f := setup(t)
	// The certificate names 127.0.0.1 and web-1: db-1 is not it.
	c, err := sshclient.Dial(ctxT(t), f.sshd.Addr, login, f.alice, f.hostCA.PublicKey(), sshclient.Options{HostPrincipal: "db-1"})
	if err == nil {
		c.Close()
		t.Fatal("a host certificate for other names was accepted as db-1")
	}
	if !errors.Is(err, sshclient.ErrUntrustedHost) || !strings.Contains(err.Error(), `does not hold for "db-1"`) {
		t.Fatalf("dial as db-1: %v", err)
	}
	c = f.dial(t, sshclient.Options{HostPrincipal: "web-1"})
	if st, _, _ := run(t, c, "true", ""); st != 0 {
		t.Fatalf("true as web-1: status %d", st)
	}
}

// TestUserCertificateRefusedBySSHD: sshd, not the client, refuses a
// certificate for another principal and one of another user CA; each is
// checked for sshd's log line about that very certificate.
func TestUserCertificateRefusedBySSHD(t *testing.T) {
	f := setup(t)
	otherCA := newSigner(t)
	for _, tc := range []struct {
		name   string
		ca     ssh.Signer
		serial uint64
		prin   string
		reason string // logged by sshd before the failure, if any
	}{
		{"another principal", f.userCA, 2, login + "@db-1", "Certificate does not contain an authorized principal"},
		{"another user CA", otherCA, 3, login + "@web-1", ""},
	} {
		n := strings.Count(f.sshd.Log(), tc.reason)
		c, err := sshclient.Dial(ctxT(t), f.sshd.Addr, login, userCert(t, tc.ca, tc.serial, tc.prin), f.hostCA.PublicKey(), sshclient.Options{})
		if err == nil {
			c.Close()
			t.Fatalf("%s: logged in", tc.name)
		}
		if errors.Is(err, sshclient.ErrUntrustedHost) || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("%s: refused for another reason: %v", tc.name, err)
		}
		f.sshd.WaitLog(t, fmt.Sprintf("(serial %d) CA ED25519 %s", tc.serial, ssh.FingerprintSHA256(tc.ca.PublicKey())))
		if tc.reason != "" && strings.Count(f.sshd.Log(), tc.reason) <= n {
			t.Fatalf("%s: sshd did not log %q:\n%s", tc.name, tc.reason, f.sshd.Log())
		}
	}
}
