package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/internal/sshdtest"
	"github.com/hpt-dev/hpt/internal/testenv"
)

// handSSHD starts a real sshd set up by hand as docs/access.md says for a
// host without an agent: it trusts userCA, lets deploy in with principal
// deploy@DEST, and presents a host certificate from hostCA if it is set.
func handSSHD(t *testing.T, dest string, userCAPub []byte, hostCA ssh.Signer) *sshdtest.Server {
	t.Helper()
	s := sshdtest.New(t, sshdtest.Options{})
	caPath := filepath.Join(s.Dir, "user_ca.pub")
	principals := filepath.Join(s.Dir, "principals")
	if err := os.MkdirAll(principals, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{caPath: userCAPub, filepath.Join(principals, "deploy"): []byte("deploy@" + dest + "\n")} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config := "TrustedUserCAKeys " + caPath + "\nAuthorizedPrincipalsFile " + principals + "/%u\n"
	if hostCA != nil {
		now := time.Now()
		cert, err := sshca.IssueHost(nil, hostCA, sshca.HostCert{
			PublicKey: s.HostKey.PublicKey(), Destination: dest, Principals: []string{"127.0.0.1", dest},
			ValidAfter: now.Add(-time.Minute), ValidBefore: now.Add(time.Hour), Serial: 9,
		})
		if err != nil {
			t.Fatal(err)
		}
		certPath := s.HostKeyPath + "-cert.pub"
		if err := os.WriteFile(certPath, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
			t.Fatal(err)
		}
		config += "HostCertificate " + certPath + "\n"
	}
	s.Opts.Config = config
	s.Start(t)
	return s
}

// TestSSHAccess: alice with login:deploy on destinations/web-* logs in to a
// real sshd with hpt ssh (exit status passed through) and with the OpenSSH
// client and the files hpt credentials ssh wrote; she is refused on db-1
// and as root; a host without a host certificate is refused unless
// --insecure-host-key, which warns.
func TestSSHAccess(t *testing.T) {
	sshBin := testenv.NeedTool(t, "ssh", "openssh-client")
	sshdtest.EnsureUser(t, "deploy")
	admin, _ := startServers(t, 3)
	ks, err := keystore.Open(filepath.Join(admin["HOME"], "keys", clusterKeystoreName))
	if err != nil {
		t.Fatal(err)
	}
	cas, err := ks.SSHCAs()
	ks.Close()
	if err != nil || !cas.Complete() {
		t.Fatalf("keystore CAs: %v", err)
	}
	hostCA, err := ssh.NewSignerFromKey(cas.Host)
	if err != nil {
		t.Fatal(err)
	}
	var show struct {
		UserCA struct {
			PublicKey string `json:"public_key"`
		} `json:"user_ca"`
	}
	out := mustHPT(t, admin, "ca", "show", "-o", "json")
	if err := json.Unmarshal([]byte(out), &show); err != nil || show.UserCA.PublicKey == "" {
		t.Fatalf("ca show -o json: %s (%v)", out, err)
	}
	web1 := handSSHD(t, "web-1", []byte(show.UserCA.PublicKey+"\n"), hostCA)
	web2 := handSSHD(t, "web-2", []byte(show.UserCA.PublicKey+"\n"), nil)

	mustHPT(t, admin, "users", "add", "alice")
	mustHPT(t, admin, "destinations", "add", "web-1", "--kind", "ssh", "--addr", web1.Addr)
	mustHPT(t, admin, "destinations", "add", "web-2", "--kind", "ssh", "--addr", web2.Addr)
	mustHPT(t, admin, "destinations", "add", "db-1", "--kind", "ssh", "--addr", web1.Addr)
	mustHPT(t, admin, "grants", "add", "user:alice", "login:deploy", "destinations/web-*")
	var tok struct {
		Token string `json:"token"`
	}
	out = mustHPT(t, admin, "tokens", "create", "--for", "user:alice", "-o", "json")
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	alice := env{"HOME": home, "HPT_TOKEN": tok.Token, "HPT_CLUSTER_KEY": admin["HPT_CLUSTER_KEY"], "HPT_ADDR": admin["HPT_ADDR"]}

	r := hpt(t, alice, "ssh", "deploy@web-1", "--", "sh", "-c", "echo hello $(id -un); exit 3")
	if r.code != 3 || !strings.Contains(r.stdout, "hello deploy") {
		t.Fatalf("hpt ssh: exit %d, stdout %q, stderr %q; want 3 and hello deploy", r.code, r.stdout, r.stderr)
	}
	if r := hpt(t, alice, "ssh", "web-1", "--", "true"); r.code != 0 {
		t.Fatalf("hpt ssh web-1 true: exit %d %s", r.code, r.stderr)
	}

	prefix := filepath.Join(t.TempDir(), "web-1")
	out = mustHPT(t, alice, "credentials", "ssh", "web-1", "--out", prefix)
	if st, err := os.Stat(prefix); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", err, st)
	}
	if !strings.Contains(out, "@cert-authority * ssh-ed25519 ") || !strings.Contains(out, "CertificateFile "+prefix+"-cert.pub") {
		t.Fatalf("credentials ssh printed:\n%s", out)
	}
	_, block, ok := strings.Cut(out, "-ssh_config):\n")
	if !ok {
		t.Fatalf("no ssh_config block:\n%s", out)
	}
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(block+"  BatchMode yes\n  StrictHostKeyChecking yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sshRun := func(args ...string) (string, error) {
		cmd := exec.Command(sshBin, append([]string{"-F", cfg}, args...)...)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if got, err := sshRun("web-1", "id", "-un"); err != nil || strings.TrimSpace(got) != "deploy" {
		t.Fatalf("OpenSSH ssh with the printed config: %v\n%s", err, got)
	}
	if got, err := sshRun("-l", "root", "web-1", "true"); err == nil {
		t.Fatalf("the certificate let root in:\n%s", got)
	}

	// The default prefix, and ssh-config printing its block again.
	mustHPT(t, alice, "credentials", "ssh", "web-1")
	cfgOut := mustHPT(t, alice, "ssh-config")
	def := filepath.Join(home, ".config", "hpt", "ssh", "web-1")
	if !strings.Contains(cfgOut, "Host web-1\n") || !strings.Contains(cfgOut, "IdentityFile "+def+"\n") || strings.Count(cfgOut, "Host ") != 1 {
		t.Fatalf("ssh-config printed:\n%s", cfgOut)
	}
	if err := os.WriteFile(cfg, []byte(cfgOut+"  BatchMode yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := sshRun("web-1", "id", "-un"); err != nil || strings.TrimSpace(got) != "deploy" {
		t.Fatalf("OpenSSH ssh with hpt ssh-config: %v\n%s", err, got)
	}

	if r := hpt(t, alice, "ssh", "db-1", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "no login on destinations/db-1") {
		t.Fatalf("db-1 without a grant: exit %d %s", r.code, r.stderr)
	}
	if r := hpt(t, alice, "ssh", "root@web-1", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "login:root") {
		t.Fatalf("root@web-1: exit %d %s", r.code, r.stderr)
	}

	r = hpt(t, alice, "ssh", "web-2", "--", "true")
	if r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "host") {
		t.Fatalf("host with a plain key: exit %d %s; want refused", r.code, r.stderr)
	}
	r = hpt(t, alice, "ssh", "--insecure-host-key", "web-2", "--", "true")
	if r.code != 0 || !strings.Contains(r.stderr, "WARNING: --insecure-host-key: NOT verifying") {
		t.Fatalf("--insecure-host-key: exit %d %s", r.code, r.stderr)
	}

	var creds []map[string]any
	out = mustHPT(t, alice, "credentials", "list", "-o", "json")
	if err := json.Unmarshal([]byte(out), &creds); err != nil || len(creds) != 6 {
		t.Fatalf("alice's credentials: %s (%v), want 6", out, err)
	}
	for _, k := range []string{"id", "subject", "destination", "kind", "role", "valid_before", "status"} {
		if _, ok := creds[0][k]; !ok || len(creds[0]) != 7 {
			t.Fatalf("credential JSON %v: want exactly id, subject, destination, kind, role, valid_before, status", creds[0])
		}
	}
	id := creds[0]["id"].(string)
	mustHPT(t, alice, "credentials", "revoke", id)
	out = mustHPT(t, admin, "credentials", "list", "-o", "json", "--all")
	if !strings.Contains(out, `"status": "revoked"`) && !strings.Contains(out, `"status":"revoked"`) {
		t.Fatalf("after revoke: %s", out)
	}
}
