package keystore

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"github.com/hpt-dev/hpt/rpc/auth"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// BootstrapSubject is who the first admin token speaks for.
const BootstrapSubject = "user:admin"

// ClusterSecrets are what a cluster is made of: the cluster keypair every
// server presents, the gossip encryption key, and the first admin token.
// `hpt init` mints them once for production; `hpt dev` and the test
// harnesses mint fresh ones per run.
type ClusterSecrets struct {
	Identity ed25519.PrivateKey
	Gossip   []byte
	Admin    auth.Token // the bootstrap token for BootstrapSubject
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
	return ClusterSecrets{Identity: priv, Gossip: gossip, Admin: admin}, nil
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
	return ks.Close()
}
