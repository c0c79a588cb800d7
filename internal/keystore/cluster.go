package keystore

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"

	"github.com/hpt-dev/hpt/rpc/auth"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// BootstrapSubject is who the first admin token speaks for.
const BootstrapSubject = "user:admin"

// ClusterSecrets are what a cluster is made of: the cluster keypair every
// server presents, the gossip encryption key, the first admin token and
// the SSH CAs. `hpt init` mints them once for production; `hpt dev` and
// the test harnesses mint fresh ones per run.
//
// Formatting ClusterSecrets with any fmt verb, or logging them with slog,
// prints public fingerprints and the token's id only.
type ClusterSecrets struct {
	Identity ed25519.PrivateKey
	Gossip   []byte
	Admin    auth.Token // the bootstrap token for BootstrapSubject
	// SSH are the SSH user and host CAs; zero in secrets read from a
	// keystore made before them.
	SSH SSHCAs
}

// NewClusterSecrets generates fresh cluster secrets from crypto/rand.
func NewClusterSecrets() (ClusterSecrets, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return ClusterSecrets{}, fmt.Errorf("generate cluster key: %w", err)
	}
	gossip := make([]byte, 32)
	if _, err := rand.Read(gossip); err != nil {
		return ClusterSecrets{}, fmt.Errorf("generate gossip key: %w", err)
	}
	admin, err := auth.NewToken()
	if err != nil {
		return ClusterSecrets{}, fmt.Errorf("generate admin token: %w", err)
	}
	cas, err := NewSSHCAs()
	if err != nil {
		return ClusterSecrets{}, err
	}
	return ClusterSecrets{Identity: priv, Gossip: gossip, Admin: admin, SSH: cas}, nil
}

// String prints what identifies the secrets, never a secret.
func (s ClusterSecrets) String() string {
	return fmt.Sprintf("ClusterSecrets{cluster key: %s, admin token: %s, %s}", s.fingerprint(), s.Admin, s.SSH)
}

// GoString keeps the secrets out of %#v.
func (s ClusterSecrets) GoString() string { return "keystore." + s.String() }

// Format keeps the secrets out of every verb (%d and %x of the plain
// struct would print their bytes).
func (s ClusterSecrets) Format(f fmt.State, verb rune) {
	formatRedacted(f, verb, s.String(), s.GoString())
}

// LogValue logs what identifies the secrets.
func (s ClusterSecrets) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("cluster_key", s.fingerprint()),
		slog.String("admin_token", s.Admin.String()),
		slog.Any("ssh_ca", s.SSH),
	)
}

func (s ClusterSecrets) fingerprint() string {
	if len(s.Identity) != ed25519.PrivateKeySize {
		return "none"
	}
	return s.Fingerprint()
}

// Fingerprint of the cluster public key, as HPT_CLUSTER_KEY carries it.
func (s ClusterSecrets) Fingerprint() string {
	return pinned.Fingerprint(s.Identity.Public().(ed25519.PublicKey))
}

// BootstrapToken is the admin token's record: its id and the hash of its
// secret, never the secret.
func (s ClusterSecrets) BootstrapToken() BootstrapToken {
	return BootstrapToken{ID: s.Admin.ID, SecretSHA256: s.Admin.SecretSHA256(), Subject: BootstrapSubject}
}

// WriteCluster creates a cluster keystore at path holding s. It refuses to
// overwrite an existing file, as Create does.
func WriteCluster(path string, s ClusterSecrets) error {
	ks, err := Create(path, KindCluster)
	if err != nil {
		return err
	}
	if err := ks.SetIdentity(s.Identity); err != nil {
		ks.Close()
		return err
	}
	if err := ks.SetGossipKey(s.Gossip); err != nil {
		ks.Close()
		return err
	}
	if err := ks.SetBootstrapToken(s.BootstrapToken()); err != nil {
		ks.Close()
		return err
	}
	if err := ks.SetSSHCAs(s.SSH); err != nil {
		ks.Close()
		return err
	}
	return ks.Close()
}
