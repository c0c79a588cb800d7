package sshaccess_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/agent/sshaccess"
	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/internal/sshdtest"
	"github.com/hpt-dev/hpt/internal/testenv"
	"github.com/hpt-dev/hpt/internal/testlog"
	"github.com/hpt-dev/hpt/rpc"
)

func newSigner(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	return sshdtest.NewKey(t)
}

// user is a certificate as hpt credentials ssh would issue it, with its
// key: as a Go signer and as files for the OpenSSH client.
type user struct {
	signer    ssh.Signer
	cert      *ssh.Certificate
	key, file string
}

func newUser(t *testing.T, ca ssh.Signer, serial uint64, principals ...string) *user {
	t.Helper()
	s, priv := newSigner(t)
	now := time.Now()
	cert, err := sshca.IssueUser(nil, ca, sshca.UserCert{
		PublicKey: ssh.MarshalAuthorizedKey(s.PublicKey()), Subject: "user:alice@example.com",
		CredentialID: "c_" + strconv.FormatUint(serial, 10), Principals: principals,
		ValidAfter: now.Add(-time.Minute), ValidBefore: now.Add(time.Hour), Serial: serial,
	})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(cert, s)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	u := &user{signer: cs, cert: cert, key: filepath.Join(dir, "id"), file: filepath.Join(dir, "id-cert.pub")}
	if err := sshdtest.WritePrivateKey(u.key, priv); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(u.file, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

// errRefused is sshd refusing the certificate (as opposed to the
// connection failing).
var errRefused = errors.New("refused by sshd")

// login runs `id -un` as deploy with the Go client, trusting only host
// certificates of hostCA, and returns the output or errRefused.
func login(s *sshdtest.Server, hostCA ssh.PublicKey, u *user) (string, error) {
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return string(k.Marshal()) == string(hostCA.Marshal())
	}}
	cfg := &ssh.ClientConfig{User: "deploy", Auth: []ssh.AuthMethod{ssh.PublicKeys(u.signer)},
		HostKeyCallback: checker.CheckHostKey, Timeout: 10 * time.Second}
	c, err := ssh.Dial("tcp", s.Addr, cfg)
	if err != nil {
		if strings.Contains(err.Error(), "unable to authenticate") {
			return "", errRefused
		}
		return "", err
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput("id -un")
	return string(out), err
}

// TestConnectorKeepsRealSSHDCurrent: a Manager configures a real sshd
// through its drop-in directory alone, as a connector agent does, and
// reloads it with kill -HUP: certificates for the granted principal log
// in (with the host verified by its certificate), others are refused, and
// a revocation takes effect at the next login.
func TestConnectorKeepsRealSSHDCurrent(t *testing.T) {
	sshdtest.EnsureUser(t, "deploy")
	s := sshdtest.New(t, sshdtest.Options{})
	hostPub := s.HostKeyPath + ".pub"
	if err := os.WriteFile(hostPub, ssh.MarshalAuthorizedKey(s.HostKey.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Start(t)
	userCA, _ := newSigner(t)
	hostCA, _ := newSigner(t)

	var logs testlog.Buffer
	m, err := sshaccess.New(sshaccess.Config{Dir: s.DropInDir, HostKeyPath: hostPub,
		Reload: []string{"kill", "-HUP", strconv.Itoa(s.PID())}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hk, err := m.HostKeys()
	if err != nil || len(hk.PublicKeys) != 1 || string(hk.PublicKeys[0]) != string(ssh.MarshalAuthorizedKey(s.HostKey.PublicKey())) {
		t.Fatalf("HostKeys: %v, %v", hk, err)
	}
	// The node signs the key the agent reported.
	reported, _, _, _, err := ssh.ParseAuthorizedKey(hk.PublicKeys[0])
	if err != nil {
		t.Fatal(err)
	}
	ps, err := sshca.HostPrincipals("web-1", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	hostCert, err := sshca.IssueHost(nil, hostCA, sshca.HostCert{PublicKey: reported, Destination: "web-1", Principals: ps,
		ValidAfter: now.Add(-time.Minute), ValidBefore: now.Add(time.Hour), Serial: 1})
	if err != nil {
		t.Fatal(err)
	}
	acc := &rpc.SSHAccess{
		Index:             10,
		UserCaPublicKey:   ssh.MarshalAuthorizedKey(userCA.PublicKey()),
		PrincipalsByLogin: map[string]*rpc.Principals{"deploy": {Principals: []string{"deploy@web-1"}}},
		HostCertificate:   ssh.MarshalAuthorizedKey(hostCert),
	}
	ctx := context.Background()
	apply := func(wantChanged bool) {
		t.Helper()
		listening := s.Listening()
		reloads := m.Reloads()
		changed, err := m.Apply(ctx, acc)
		if err != nil || changed != wantChanged {
			t.Fatalf("Apply (index %d): changed %v, %v; want changed %v", acc.Index, changed, err, wantChanged)
		}
		if m.Reloads() > reloads {
			// kill returns at once; sshd re-executes and binds again.
			s.WaitListening(t, listening)
		}
	}
	apply(true)
	if m.Reloads() != 1 || s.Reloads() != 1 {
		t.Fatalf("reloads after the first Apply: manager %d, sshd %d; want 1", m.Reloads(), s.Reloads())
	}

	web := newUser(t, userCA, 11, "deploy@web-1")
	if out, err := login(s, hostCA.PublicKey(), web); err != nil || out != "deploy\n" {
		t.Fatalf("deploy@web-1 as deploy: %q, %v", out, err)
	}
	s.WaitLog(t, "ID user:alice@example.com cred:c_11 (serial 11)")
	// The plain OpenSSH client, trusting only the host CA, gets in too:
	// sshd presents the host certificate the drop-in names.
	openssh(t, s, hostCA.PublicKey(), web)

	db := newUser(t, userCA, 12, "deploy@db-1")
	if out, err := login(s, hostCA.PublicKey(), db); !errors.Is(err, errRefused) {
		t.Fatalf("deploy@db-1 as deploy: %q, %v; want refused", out, err)
	}
	s.WaitLog(t, "Certificate does not contain an authorized principal")

	// The same state again: nothing written, sshd not reloaded.
	acc.Index = 11
	apply(false)
	if m.Reloads() != 1 || s.Reloads() != 1 {
		t.Fatalf("an identical Apply reloaded sshd: manager %d, sshd %d", m.Reloads(), s.Reloads())
	}

	// Revocation: the KRL is read at every authentication, so the next
	// login after Apply is refused. SPEC §11: within one second of the
	// commit; here, of Apply returning, polled for at most a second.
	acc.Index, acc.RevokedSerials = 12, []uint64{11}
	start := time.Now()
	apply(true)
	applied := time.Since(start)
	var refusedAfter time.Duration
	for i := 0; ; i++ {
		_, err := login(s, hostCA.PublicKey(), web)
		if errors.Is(err, errRefused) {
			refusedAfter = time.Since(start)
			break
		}
		if err != nil {
			t.Fatalf("login after revocation: %v", err)
		}
		if time.Since(start)-applied > time.Second || i >= 100 {
			t.Fatalf("revoked certificate still logs in %s after Apply returned", time.Since(start)-applied)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("revocation: Apply took %s; first refusal %s after Apply started", applied, refusedAfter)
	s.WaitLog(t, "revoked by file")
	if m.Reloads() != 1 {
		t.Errorf("a revocation reloaded sshd (%d reloads)", m.Reloads())
	}

	// A new certificate for deploy@web-1 gets in, until the login has no
	// principals left (its grant removed).
	web2 := newUser(t, userCA, 13, "deploy@web-1")
	if out, err := login(s, hostCA.PublicKey(), web2); err != nil || out != "deploy\n" {
		t.Fatalf("a fresh deploy@web-1 certificate: %q, %v", out, err)
	}
	acc.Index, acc.PrincipalsByLogin = 13, nil
	apply(true)
	if out, err := login(s, hostCA.PublicKey(), web2); !errors.Is(err, errRefused) {
		t.Fatalf("login whose principals were removed: %q, %v; want refused", out, err)
	}

	// Bad input against the live sshd: named, nothing written, no reload.
	before := dirSnapshot(t, s.DropInDir)
	acc.Index = 14
	acc.UserCaPublicKey = []byte("garbage")
	if _, err := m.Apply(ctx, acc); err == nil || !strings.Contains(err.Error(), "user_ca_public_key") {
		t.Fatalf("garbage CA key: %v", err)
	}
	if after := dirSnapshot(t, s.DropInDir); after != before {
		t.Fatal("bad input changed the drop-in directory")
	}
	if m.Reloads() != 1 || s.Reloads() != 1 {
		t.Fatalf("reloads: manager %d, sshd %d; want 1", m.Reloads(), s.Reloads())
	}
	// The main config was never touched: it is still the harness's.
	if b, err := os.ReadFile(s.ConfigPath); err != nil || !strings.HasPrefix(string(b), "Include "+s.DropInDir+"/*.conf\n") {
		t.Fatalf("sshd_config: %v\n%s", err, b)
	}
}

func dirSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s %d\n", p, info.Mode(), info.Size())
		if !info.IsDir() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.Write(c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// openssh logs in with the real OpenSSH client with only the given files,
// the host verified by an @cert-authority line.
func openssh(t *testing.T, s *sshdtest.Server, hostCA ssh.PublicKey, u *user) {
	t.Helper()
	bin := testenv.NeedTool(t, "ssh", "openssh-client")
	kh := filepath.Join(t.TempDir(), "known_hosts")
	host, _, _ := net.SplitHostPort(s.Addr)
	if err := os.WriteFile(kh, []byte("@cert-authority "+host+" "+string(ssh.MarshalAuthorizedKey(hostCA))), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-F", "/dev/null", "-i", u.key, "-o", "CertificateFile="+u.file,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+kh, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=10", "-p", strconv.Itoa(s.Port), "deploy@"+host, "id -un").CombinedOutput()
	if err != nil || string(out) != "deploy\n" {
		t.Fatalf("OpenSSH client: %v\n%s", err, out)
	}
}
