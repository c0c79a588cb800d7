package node_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/agent/sshaccess"
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/internal/sshdtest"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

var errSSHRefused = errors.New("refused by sshd")

// sshLogin runs `id -un` as deploy on addr with signer, trusting only
// host certificates of hostCA for the host 127.0.0.1.
func sshLogin(addr string, hostCA ssh.PublicKey, signer ssh.Signer) (string, error) {
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return string(k.Marshal()) == string(hostCA.Marshal())
	}}
	cfg := &ssh.ClientConfig{User: "deploy", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: checker.CheckHostKey, Timeout: 10 * time.Second}
	cl, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		if strings.Contains(err.Error(), "unable to authenticate") {
			return "", errSSHRefused
		}
		return "", err
	}
	defer cl.Close()
	sess, err := cl.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput("id -un")
	return strings.TrimSpace(string(out)), err
}

// TestConnectorKeptCurrentByNodes: a real agent managing a real sshd is
// the connector of web-1; the nodes of a 3-node cluster keep its sshd
// trusting the cluster: alice's certificate for deploy@web-1 logs in (the
// host verified by the certificate the node signed for it) while her grant
// stands, is refused soon after the grant is removed, and the state
// follows the agent to another node when its node stops.
func TestConnectorKeptCurrentByNodes(t *testing.T) {
	sshdtest.EnsureUser(t, "deploy")
	c := nodetest.Start(t, 3)
	s := sshdtest.Start(t, sshdtest.Options{})
	hostPub := filepath.Join(t.TempDir(), "ssh_host_ed25519_key.pub")
	if err := os.WriteFile(hostPub, ssh.MarshalAuthorizedKey(s.HostKey.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.StartAgent("conn-1", nodetest.AgentOptions{SSHD: &sshaccess.Config{Dir: s.DropInDir, HostKeyPath: hostPub,
		Reload: []string{"kill", "-HUP", strconv.Itoa(s.PID())}}})
	c.WaitConnected("conn-1")

	admin := c.Client(0)
	ctx := ctxT(t)
	userClient(t, c, admin, "alice")
	if _, err := admin.Destinations.Add(ctx, &rpc.AddDestinationRequest{Name: "web-1", Kind: "ssh", Addr: s.Addr, Connector: "conn-1"}); err != nil {
		t.Fatal(err)
	}
	grant := &rpc.GrantRequest{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-*"}
	if _, err := admin.Grants.Add(ctx, grant); err != nil {
		t.Fatal(err)
	}
	principals := filepath.Join(s.DropInDir, "hpt", "principals", "deploy")
	c.Eventually(10*time.Second, func() error {
		b, err := os.ReadFile(principals)
		if err != nil || !strings.HasSuffix(string(b), "\ndeploy@web-1\n") {
			return fmt.Errorf("principals of deploy: %q %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(s.DropInDir, sshaccess.DropInName)); err != nil {
			return err
		}
		return nil
	})

	// alice's certificate, issued by hand with the cluster's user CA as
	// hpt credentials ssh would.
	userCA, err := ssh.NewSignerFromKey(c.SSHCAs.User)
	if err != nil {
		t.Fatal(err)
	}
	hostCA, err := ssh.NewSignerFromKey(c.SSHCAs.Host)
	if err != nil {
		t.Fatal(err)
	}
	// issue makes a certificate for alice as hpt credentials ssh would,
	// with the cluster's user CA, and records its credential_issued event
	// as the issuing node does.
	issue := func(id string, serial uint64) ssh.Signer {
		t.Helper()
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		cert, err := sshca.IssueUser(rand.Reader, userCA, sshca.UserCert{PublicKey: ssh.MarshalAuthorizedKey(key.PublicKey()),
			Subject: "user:alice", CredentialID: id, Principals: []string{"deploy@web-1"},
			ValidAfter: now.Add(-time.Minute), ValidBefore: now.Add(time.Hour), Serial: serial})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := node.ProposeForTest(ctx, c.Running()[0], &events.CredentialIssued{Id: id, Subject: "user:alice", Destination: "web-1",
			Kind: events.DestSSH, Role: "login:deploy", Principals: cert.ValidPrincipals, GrantSubject: grant.Subject,
			GrantPrivilege: grant.Privilege, GrantResource: grant.Resource, Serial: serial,
			PublicKeyFingerprint: ssh.FingerprintSHA256(key.PublicKey()),
			ValidAfterUnixNano:   int64(cert.ValidAfter) * 1e9, ValidBeforeUnixNano: int64(cert.ValidBefore) * 1e9}); err != nil {
			t.Fatalf("record credential %s: %v", id, err)
		}
		s, err := ssh.NewCertSigner(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	alice := issue("c_1", 7)
	// The first state reloads sshd, which then presents the host
	// certificate: the login checks it.
	c.Eventually(10*time.Second, func() error {
		out, err := sshLogin(s.Addr, hostCA.PublicKey(), alice)
		if err != nil || out != "deploy" {
			return fmt.Errorf("login: %q %v", out, err)
		}
		return nil
	})

	// refused measures how long after the commit of what ends alice's
	// access sshd refuses her: bounded by a second.
	refused := func(what string, commit func() (uint64, error)) {
		t.Helper()
		index, err := commit()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		start := time.Now()
		c.WaitEvent(index)
		deadline := time.Now().Add(time.Second)
		for {
			_, err := sshLogin(s.Addr, hostCA.PublicKey(), alice)
			if errors.Is(err, errSSHRefused) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still not refused 1 s after the commit applied (%v)", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("%s: refused %v after the commit", what, time.Since(start).Round(time.Millisecond))
	}
	// Revoked: the KRL refuses it.
	refused("credential revoked", func() (uint64, error) {
		w, err := admin.Credentials.Revoke(ctx, &rpc.RevokeCredentialRequest{Id: "c_1", Reason: "test"})
		return w.GetIndex(), err
	})
	alice = issue("c_2", 8)
	c.Eventually(10*time.Second, func() error {
		out, err := sshLogin(s.Addr, hostCA.PublicKey(), alice)
		if err != nil || out != "deploy" {
			return fmt.Errorf("login with a new certificate: %q %v", out, err)
		}
		return nil
	})
	refused("grant removed", func() (uint64, error) {
		w, err := admin.Grants.Remove(ctx, grant)
		return w.GetIndex(), err
	})

	// The agent's node stops: it reconnects to another one, which serves
	// it from its own applied state.
	tk, err := c.Node(0).State().TargetKey("conn-1")
	if err != nil {
		t.Fatal(err)
	}
	holder := -1
	for i := 0; i < c.Len(); i++ {
		if c.Node(i).Name() == tk.GetNode() {
			holder = i
		}
	}
	if holder < 0 {
		t.Fatalf("conn-1's stream is on %q", tk.GetNode())
	}
	gone := c.Node(holder).Name()
	c.Kill(holder)
	other := (holder + 1) % c.Len()
	admin = c.Client(other)
	c.Eventually(20*time.Second, func() error {
		tk, err := c.Node(other).State().TargetKey("conn-1")
		if err != nil || !tk.GetConnected() || tk.GetNode() == gone {
			return fmt.Errorf("conn-1 not yet reconnected away from %s: %v %v", gone, tk, err)
		}
		return nil
	})
	if _, err := admin.Grants.Add(ctx, grant); err != nil {
		t.Fatal(err)
	}
	alice = issue("c_3", 9)
	c.Eventually(10*time.Second, func() error {
		out, err := sshLogin(s.Addr, hostCA.PublicKey(), alice)
		if err != nil || out != "deploy" {
			return fmt.Errorf("login after the reconnect: %q %v", out, err)
		}
		return nil
	})
	refused("grant removed after the reconnect", func() (uint64, error) {
		w, err := admin.Grants.Remove(ctx, grant)
		return w.GetIndex(), err
	})
}
