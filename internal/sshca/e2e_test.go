package sshca_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/internal/sshdtest"
	"github.com/hpt-dev/hpt/internal/testenv"
)

// host is a real sshd configured as a connector configures it: through the
// rendered drop-in, with a host certificate from the host CA.
type host struct {
	*sshdtest.Server
	userCA, hostCA ssh.Signer
	files          sshca.SSHDConfig
}

func signer(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	return sshdtest.NewKey(t)
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if _, err := sshca.WriteFileAtomic(path, data, sshca.ModeFile); err != nil {
		t.Fatal(err)
	}
}

// startHost starts sshd trusting userCA, with deploy allowed deploy@web-1,
// an empty KRL, and (withHostCert) a host certificate for 127.0.0.1/web-1.
func startHost(t *testing.T, userCA, hostCA ssh.Signer, withHostCert bool) *host {
	t.Helper()
	sshdtest.EnsureUser(t, "deploy")
	s := sshdtest.New(t, sshdtest.Options{})
	h := &host{Server: s, userCA: userCA, hostCA: hostCA}
	h.files = sshca.SSHDConfig{
		UserCAKeys:    filepath.Join(s.Dir, "user_ca.pub"),
		PrincipalsDir: filepath.Join(s.Dir, "principals"),
		RevokedKeys:   filepath.Join(s.Dir, "revoked.krl"),
	}
	write(t, h.files.UserCAKeys, ssh.MarshalAuthorizedKey(userCA.PublicKey()))
	if _, err := sshca.WritePrincipalsDir(h.files.PrincipalsDir, map[string][]string{"deploy": {"deploy@web-1"}}); err != nil {
		t.Fatal(err)
	}
	h.revoke(t)
	if withHostCert {
		ps, err := sshca.HostPrincipals("web-1", "127.0.0.1:22")
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		cert, err := sshca.IssueHost(nil, hostCA, sshca.HostCert{PublicKey: s.HostKey.PublicKey(), Destination: "web-1", Principals: ps, ValidAfter: now.Add(-time.Minute), ValidBefore: now.Add(time.Hour), Serial: 1})
		if err != nil {
			t.Fatal(err)
		}
		h.files.HostCertificate = s.HostKeyPath + "-cert.pub"
		write(t, h.files.HostCertificate, ssh.MarshalAuthorizedKey(cert))
	}
	dropIn, err := h.files.Render()
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(s.DropInDir, "hpt.conf"), dropIn)
	s.Start(t)
	return h
}

// revoke rewrites the KRL with the given serials of the user CA revoked.
func (h *host) revoke(t *testing.T, serials ...uint64) {
	t.Helper()
	b, err := sshca.KRL{Version: uint64(len(serials)), Certs: []sshca.RevokedCerts{{CA: h.userCA.PublicKey(), Serials: serials}}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	write(t, h.files.RevokedKeys, b)
}

// client is a user's key and certificate on disk, as hpt credentials ssh
// writes them: PREFIX and PREFIX-cert.pub.
type client struct {
	key, cert string
	signer    ssh.Signer
	c         *ssh.Certificate
}

func newClient(t *testing.T, ca ssh.Signer, serial uint64, forward bool, validBefore time.Time, principals ...string) *client {
	t.Helper()
	s, priv := signer(t)
	now := time.Now()
	cert, err := sshca.IssueUser(nil, ca, sshca.UserCert{
		PublicKey:       ssh.MarshalAuthorizedKey(s.PublicKey()),
		Subject:         "user:alice@example.com",
		CredentialID:    "c_" + strconv.FormatUint(serial, 10),
		Principals:      principals,
		ValidAfter:      now.Add(-2 * time.Hour),
		ValidBefore:     validBefore,
		Serial:          serial,
		AllowForwarding: forward,
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &client{key: filepath.Join(dir, "id"), cert: filepath.Join(dir, "id-cert.pub"), signer: s, c: cert}
	if err := sshdtest.WritePrivateKey(c.key, priv); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.cert, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// knownHosts writes a known_hosts trusting host certificates of ca only.
func knownHosts(t *testing.T, ca ssh.Signer) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := "@cert-authority * " + string(ssh.MarshalAuthorizedKey(ca.PublicKey()))
	if err := os.WriteFile(p, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// openssh runs the real OpenSSH client with only the given files: no
// agent, no user config, no other known hosts.
func openssh(t *testing.T, h *host, c *client, kh, login string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.NeedTool(t, "ssh", "openssh-client")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := []string{"-F", "/dev/null", "-i", c.key, "-o", "CertificateFile=" + c.cert,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + kh,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
		"-p", strconv.Itoa(h.Port), login + "@127.0.0.1"}
	out, err := exec.CommandContext(ctx, bin, append(argv, args...)...).CombinedOutput()
	return string(out), err
}

func TestOpenSSHLoginWithCertificates(t *testing.T) {
	userCA, _ := signer(t)
	hostCA, _ := signer(t)
	h := startHost(t, userCA, hostCA, true)
	kh := knownHosts(t, hostCA)
	hour := time.Now().Add(time.Hour)

	web := newClient(t, userCA, 11, false, hour, "deploy@web-1")
	out, err := openssh(t, h, web, kh, "deploy", "id -un")
	if err != nil || out != "deploy\n" {
		t.Fatalf("login with deploy@web-1: %v\n%s", err, out)
	}
	h.WaitLog(t, "ID user:alice@example.com cred:c_11 (serial 11)")
	out, err = openssh(t, h, web, kh, "deploy", "-tt", "tty")
	if err != nil || !strings.HasPrefix(out, "/dev/pts/") {
		t.Fatalf("pty (permit-pty): %v\n%s", err, out)
	}

	// Each refusal is checked for sshd's reason, so that it is refused for
	// the reason the case is about.
	refused := func(c *client, login, reason string) {
		t.Helper()
		n := strings.Count(h.Log(), reason)
		if out, err := openssh(t, h, c, kh, login, "true"); err == nil {
			t.Fatalf("%s logged in as %s:\n%s", c.c.KeyId, login, out)
		}
		h.WaitLog(t, "Failed publickey for "+login+" from 127.0.0.1")
		h.WaitLog(t, "ID "+c.c.KeyId+" (serial "+strconv.FormatUint(c.c.Serial, 10)+")")
		if strings.Count(h.Log(), reason) <= n {
			t.Fatalf("%s refused as %s, but sshd did not log %q:\n%s", c.c.KeyId, login, reason, h.Log())
		}
	}
	db := newClient(t, userCA, 12, false, hour, "deploy@db-1")
	refused(db, "deploy", "Certificate does not contain an authorized principal")
	// Principals files are read at each attempt too: listing deploy@db-1
	// lets that certificate in without a reload, and unlisting it ends that.
	if _, err := sshca.WritePrincipalsDir(h.files.PrincipalsDir, map[string][]string{"deploy": {"deploy@web-1", "deploy@db-1"}}); err != nil {
		t.Fatal(err)
	}
	if out, err := openssh(t, h, db, kh, "deploy", "true"); err != nil {
		t.Fatalf("deploy@db-1 refused once listed: %v\n%s", err, out)
	}
	if _, err := sshca.WritePrincipalsDir(h.files.PrincipalsDir, map[string][]string{"deploy": {"deploy@web-1"}}); err != nil {
		t.Fatal(err)
	}
	refused(db, "deploy", "Certificate does not contain an authorized principal")
	refused(web, "root", "Certificate does not contain an authorized principal")
	refused(newClient(t, userCA, 13, false, time.Now().Add(-time.Minute), "deploy@web-1"), "deploy", "Certificate invalid: expired")

	// Revocation needs no reload: sshd reads the KRL at each attempt.
	h.revoke(t, 11)
	refused(web, "deploy", "revoked by file "+h.files.RevokedKeys)
	other := newClient(t, userCA, 14, false, hour, "deploy@web-1")
	if out, err := openssh(t, h, other, kh, "deploy", "true"); err != nil {
		t.Fatalf("an unrevoked certificate was refused after a revocation: %v\n%s", err, out)
	}

	// The host is verified by the host CA: a client trusting another CA
	// refuses this host.
	wrongCA, _ := signer(t)
	if out, err := openssh(t, h, other, knownHosts(t, wrongCA), "deploy", "true"); err == nil || !strings.Contains(out, "Host key verification failed") {
		t.Fatalf("host accepted without its CA: %v\n%s", err, out)
	}

	// A missing KRL fails closed: every key is refused.
	if err := os.Remove(h.files.RevokedKeys); err != nil {
		t.Fatal(err)
	}
	refused(other, "deploy", "Error checking authentication key ED25519-CERT")
}

// dialGo connects with the Go SSH client, accepting only host certificates
// of hostCA.
func dialGo(h *host, hostCA ssh.Signer, c *client) (*ssh.Client, error) {
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
			return string(auth.Marshal()) == string(hostCA.PublicKey().Marshal())
		},
	}
	certSigner, err := ssh.NewCertSigner(c.c, c.signer)
	if err != nil {
		return nil, err
	}
	return ssh.Dial("tcp", h.Addr, &ssh.ClientConfig{
		User:            "deploy",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(certSigner)},
		HostKeyCallback: checker.CheckHostKey,
		// The certificate first; a host without one offers its plain key,
		// which CheckHostKey refuses (no fallback is set).
		HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01, ssh.KeyAlgoED25519},
		Timeout:           10 * time.Second,
	})
}

func TestGoClientHostCertificate(t *testing.T) {
	userCA, _ := signer(t)
	hostCA, _ := signer(t)
	hour := time.Now().Add(time.Hour)
	h := startHost(t, userCA, hostCA, true)

	plain := newClient(t, userCA, 21, false, hour, "deploy@web-1")
	c, err := dialGo(h, hostCA, plain)
	if err != nil {
		t.Fatalf("dial a host with a host certificate: %v", err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sess.CombinedOutput("id -un"); err != nil || string(out) != "deploy\n" {
		t.Fatalf("id -un: %q, %v", out, err)
	}
	// Without permit-port-forwarding, sshd refuses a direct-tcpip channel.
	if conn, err := c.Dial("tcp", h.Addr); err == nil {
		conn.Close()
		t.Error("port forwarding allowed by a certificate without permit-port-forwarding")
	}
	c.Close()

	fwd := newClient(t, userCA, 22, true, hour, "deploy@web-1")
	c, err = dialGo(h, hostCA, fwd)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := c.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatalf("port forwarding refused with permit-port-forwarding: %v", err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 8)
	if _, err := conn.Read(buf); err != nil || string(buf) != "SSH-2.0-" {
		t.Errorf("through the tunnel: %q, %v", buf, err)
	}
	conn.Close()
	c.Close()

	// A host presenting only its plain key is refused, and so is a host
	// certificate from another CA.
	bare := startHost(t, userCA, hostCA, false)
	if c, err := dialGo(bare, hostCA, plain); err == nil {
		c.Close()
		t.Fatal("a host with a plain host key was accepted")
	} else if !strings.Contains(err.Error(), "non-certificate host key") {
		t.Fatalf("plain host key refused for another reason: %v", err)
	}
	wrongCA, _ := signer(t)
	if c, err := dialGo(h, wrongCA, plain); err == nil {
		c.Close()
		t.Fatal("a host certificate of another CA was accepted")
	}
}
