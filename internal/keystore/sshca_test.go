package keystore

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/internal/secrettest"
)

func TestWriteClusterStoresSSHCAs(t *testing.T) {
	s, err := NewClusterSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if !s.SSH.Complete() || s.SSH.User.Equal(s.SSH.Host) {
		t.Fatalf("NewClusterSecrets: SSH CAs %v, want two distinct keys", s.SSH)
	}
	path := filepath.Join(t.TempDir(), "cluster.keystore.db")
	if err := WriteCluster(path, s); err != nil {
		t.Fatal(err)
	}
	ks, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	cas, err := ks.SSHCAs()
	if err != nil {
		t.Fatal(err)
	}
	if !cas.User.Equal(s.SSH.User) || !cas.Host.Equal(s.SSH.Host) {
		t.Fatalf("read back %v, want %v", cas, s.SSH)
	}
}

// oldClusterKeystore writes a cluster keystore as hpt wrote it before the
// SSH CAs existed.
func oldClusterKeystore(t *testing.T) (string, ClusterSecrets) {
	t.Helper()
	s, err := NewClusterSecrets()
	if err != nil {
		t.Fatal(err)
	}
	s.SSH = SSHCAs{}
	path := filepath.Join(t.TempDir(), "cluster.keystore.db")
	if err := WriteCluster(path, s); err != nil {
		t.Fatal(err)
	}
	return path, s
}

func TestEnsureSSHCAsUpgradesInPlace(t *testing.T) {
	path, s := oldClusterKeystore(t)
	ks, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cas, err := ks.SSHCAs()
	if err != nil || cas.User != nil || cas.Host != nil {
		t.Fatalf("old keystore: SSHCAs = %v, %v; want none and no error", cas, err)
	}
	cas, added, err := ks.EnsureSSHCAs()
	if err != nil {
		t.Fatal(err)
	}
	if !cas.Complete() || strings.Join(added, ",") != "user CA,host CA" {
		t.Fatalf("EnsureSSHCAs = %v, added %q", cas, added)
	}
	ks.Close()

	// The rest of the keystore is untouched, the CAs persist, and a
	// second run adds nothing.
	ks, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if id, err := ks.Identity(); err != nil || !id.Equal(s.Identity) {
		t.Fatalf("identity changed by the upgrade: %v", err)
	}
	if bt, err := ks.BootstrapToken(); err != nil || bt != s.BootstrapToken() {
		t.Fatalf("bootstrap token changed by the upgrade: %v", err)
	}
	again, added, err := ks.EnsureSSHCAs()
	if err != nil || len(added) != 0 {
		t.Fatalf("second EnsureSSHCAs: added %q, %v; want nothing", added, err)
	}
	if !again.User.Equal(cas.User) || !again.Host.Equal(cas.Host) {
		t.Fatal("second EnsureSSHCAs replaced a CA")
	}

	// A different CA is never silently put over the one in place.
	other, err := NewSSHCAs()
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.SetSSHCAs(SSHCAs{Host: other.Host}); !errors.Is(err, ErrExists) {
		t.Fatalf("SetSSHCAs over another host CA: %v, want ErrExists", err)
	}
	if err := ks.SetSSHCAs(cas); err != nil {
		t.Fatalf("SetSSHCAs of the same CAs: %v, want a no-op", err)
	}
}

func TestEnsureSSHCAsAddsOnlyTheMissingOne(t *testing.T) {
	path, _ := oldClusterKeystore(t)
	ks, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	only, err := NewSSHCAs()
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.SetSSHCAs(SSHCAs{User: only.User}); err != nil {
		t.Fatal(err)
	}
	cas, added, err := ks.EnsureSSHCAs()
	if err != nil || strings.Join(added, ",") != "host CA" || !cas.User.Equal(only.User) || cas.Host == nil {
		t.Fatalf("EnsureSSHCAs = %v, added %q, %v; want the user CA kept and a host CA added", cas, added, err)
	}
}

func TestSSHCAsOnlyInClusterKeystores(t *testing.T) {
	for _, kind := range []Kind{KindClient, KindTarget} {
		ks, err := Create(filepath.Join(t.TempDir(), "ks.db"), kind)
		if err != nil {
			t.Fatal(err)
		}
		cas, err := NewSSHCAs()
		if err != nil {
			t.Fatal(err)
		}
		if err := ks.SetSSHCAs(cas); !errors.Is(err, ErrWrongKind) {
			t.Errorf("%s keystore: SetSSHCAs = %v, want ErrWrongKind", kind, err)
		}
		if _, _, err := ks.EnsureSSHCAs(); !errors.Is(err, ErrWrongKind) {
			t.Errorf("%s keystore: EnsureSSHCAs = %v, want ErrWrongKind", kind, err)
		}
		ks.Close()
	}
}

func TestSetSSHCAsRefusesMalformedKey(t *testing.T) {
	path, _ := oldClusterKeystore(t)
	ks, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	bad := make(ed25519.PrivateKey, ed25519.PrivateKeySize) // public half does not derive from the seed
	bad[0] = 1
	err = ks.SetSSHCAs(SSHCAs{User: bad})
	if err == nil || !strings.Contains(err.Error(), "user CA") {
		t.Fatalf("SetSSHCAs(malformed) = %v, want an error naming the user CA", err)
	}
	if cas, err := ks.SSHCAs(); err != nil || cas.User != nil {
		t.Fatalf("a refused SetSSHCAs changed the keystore: %v, %v", cas, err)
	}
}

func TestFormattingClusterSecretsHidesSecrets(t *testing.T) {
	s, err := NewClusterSecrets()
	if err != nil {
		t.Fatal(err)
	}
	needles := secrettest.Needles{}.
		Ed25519("user CA", s.SSH.User).Ed25519("host CA", s.SSH.Host).Ed25519("cluster key", s.Identity).
		Bytes("gossip key", s.Gossip).Text("admin token", s.Admin.Secret())

	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		for _, v := range []any{s, &s, s.SSH, &s.SSH, []any{s}, struct{ S ClusterSecrets }{s}} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
	}
	slog.New(slog.NewTextHandler(&out, nil)).Info("secrets", "s", s, "cas", s.SSH)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("secrets", "s", s, "cas", s.SSH)
	needles.Check(t, "formatted ClusterSecrets", out.Bytes())
	if !strings.Contains(out.String(), CAFingerprint(s.SSH.User)) || !strings.Contains(out.String(), s.Fingerprint()) {
		t.Errorf("formatting shows no fingerprints:\n%s", out.String()[:200])
	}
}
