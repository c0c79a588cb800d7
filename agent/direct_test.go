package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/agent/provision"
	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

func genKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// targetKeystore writes a target keystore for name trusting client.
func targetKeystore(t *testing.T, name string, priv ed25519.PrivateKey, client ed25519.PublicKey) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".keystore.db")
	ks, err := keystore.Create(path, keystore.KindTarget)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if err := errors.Join(ks.SetIdentity(priv), ks.SetName(name),
		ks.AddKey(keystore.Key{Name: "client", Role: keystore.RoleClient, Public: client})); err != nil {
		t.Fatal(err)
	}
	return path
}

func startAgent(t *testing.T, ksPath string) *Agent {
	t.Helper()
	a, err := New(Config{Keystore: ksPath, Listen: "127.0.0.1:0", Labels: map[string]string{"role": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func bundle(path string) *provision.Bundle {
	return &provision.Bundle{Name: "t.toml", Config: []byte(`
[[file]]
path = "` + path + `"
template = true
content = "{{ .Target.Name }} {{ .Target.Labels.role }} {{ .Vars.x }}"
`)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestDirectProvisionStreamsResults(t *testing.T) {
	clientPub, clientPriv := genKey(t)
	targetPub, targetPriv := genKey(t)
	// Several agents on one host, each on its own free port.
	a1 := startAgent(t, targetKeystore(t, "web-1", targetPriv, clientPub))
	a2 := startAgent(t, targetKeystore(t, "web-1", targetPriv, clientPub))
	if a1.Addr() == a2.Addr() {
		t.Fatal("two agents share an address")
	}
	out := filepath.Join(t.TempDir(), "hello")
	var streamed []provision.BlockResult
	done, err := ProvisionDirect(ctx(t), DirectRequest{
		Addr: a2.Addr(), Target: "web-1", TargetKey: targetPub, ClientKey: clientPriv,
		Bundle: bundle(out), Vars: map[string]string{"x": "42"},
		OnBlock: func(b provision.BlockResult) { streamed = append(streamed, b) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(streamed) != 1 || streamed[0].Outcome != provision.OutcomeChanged || done.GetTotals().GetChanged() != 1 || done.GetTarget() != "web-1" {
		t.Fatalf("streamed %+v, done %v", streamed, done)
	}
	if b, _ := os.ReadFile(out); string(b) != "web-1 web 42" {
		t.Fatalf("file content %q, want the target's facts and vars", b)
	}
}

func TestDirectRefusals(t *testing.T) {
	clientPub, clientPriv := genKey(t)
	targetPub, targetPriv := genKey(t)
	_, strangerPriv := genKey(t)
	otherTargetPub, _ := genKey(t)
	a := startAgent(t, targetKeystore(t, "web-1", targetPriv, clientPub))

	tests := []struct {
		name      string
		client    ed25519.PrivateKey
		targetKey ed25519.PublicKey
		config    []byte
		want      []string
	}{
		{
			name: "client key not trusted", client: strangerPriv, targetKey: targetPub,
			want: []string{"does not trust this client's key", pinned.Fingerprint(strangerPriv.Public().(ed25519.PublicKey)), "nothing was applied"},
		},
		{
			name: "target presents another key", client: clientPriv, targetKey: otherTargetPub,
			want: []string{"target web-1 key " + pinned.Fingerprint(targetPub), "expected " + pinned.Fingerprint(otherTargetPub), "nothing was applied"},
		},
		{
			name: "invalid config", client: clientPriv, targetKey: targetPub,
			config: []byte("[[file]]\npath = \"/x\"\nperms = 0600\n"), want: []string{"t.toml:3", `"0600"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "never")
			b := bundle(out)
			if tc.config != nil {
				b.Config = tc.config
			}
			var streamed int
			_, err := ProvisionDirect(ctx(t), DirectRequest{
				Addr: a.Addr(), Target: "web-1", TargetKey: tc.targetKey, ClientKey: tc.client, Bundle: b,
				OnBlock: func(provision.BlockResult) { streamed++ },
			})
			if err == nil {
				t.Fatal("provisioning was not refused")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.config != nil && status.Code(err) != codes.InvalidArgument {
				t.Errorf("code %v, want InvalidArgument", status.Code(err))
			}
			if _, serr := os.Stat(out); serr == nil || streamed != 0 {
				t.Fatal("something was applied")
			}
		})
	}
}

func TestAgentRefusesWrongKeystores(t *testing.T) {
	dir := t.TempDir()
	client := filepath.Join(dir, "client.db")
	ks, err := keystore.Create(client, keystore.KindClient)
	if err != nil {
		t.Fatal(err)
	}
	ks.EnsureIdentity()
	ks.Close()
	if _, err := New(Config{Keystore: client, Listen: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "target keystore") {
		t.Fatalf("agent started from a client keystore: %v", err)
	}
	lonely := filepath.Join(dir, "lonely.db")
	ks, _ = keystore.Create(lonely, keystore.KindTarget)
	_, priv := genKey(t)
	ks.SetIdentity(priv)
	ks.Close()
	if _, err := New(Config{Keystore: lonely, Listen: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "trusts no client") {
		t.Fatalf("agent started trusting nobody: %v", err)
	}
}
