// Package enroll enrolls a target in a cluster: it fetches what the target
// needs to join, writes its keystore and registers its key. `hpt
// gen-target-keys` and the dev and test harnesses share it.
package enroll

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"

	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/rpc"
)

// A Target is what to enroll.
type Target struct {
	// Name is the target's name.
	Name string
	// Key is the target's new keypair; its public half is registered.
	Key ed25519.PrivateKey
	// Path is where the target keystore is written; it must not exist.
	Path string
	// Labels are registered with the key; jobs select on them.
	Labels map[string]string
}

// Register asks the cluster for what a target needs to join it (the
// cluster key, gossip key and seeds), writes the target keystore with
// them, and registers the target's key. The file comes first: if
// registering fails the file is removed, and a file left by a crash in
// between is harmless, while a registered key without its file would not
// be. Errors from the cluster are returned as they came (gRPC statuses).
func Register(ctx context.Context, keys rpc.KeysClient, e Target) (*rpc.WriteResponse, error) {
	enr, err := keys.Enrollment(ctx, &rpc.EnrollmentRequest{})
	if err != nil {
		return nil, err
	}
	if len(enr.GetClusterPublicKey()) != ed25519.PublicKeySize {
		return nil, errors.New("cluster sent a malformed cluster key")
	}
	if err := keystore.CreateTarget(e.Path, e.Name, e.Key, func(t *keystore.Keystore) error {
		return errors.Join(
			t.AddKey(keystore.Key{Name: "cluster", Role: keystore.RoleCluster, Public: enr.GetClusterPublicKey()}),
			t.SetGossipKey(enr.GetGossipKey()),
			t.SetSeeds(enr.GetSeeds()))
	}); err != nil {
		return nil, err
	}
	w, err := keys.Register(ctx, &rpc.RegisterKeyRequest{Target: e.Name, PublicKey: e.Key.Public().(ed25519.PublicKey), Labels: e.Labels})
	if err != nil {
		os.Remove(e.Path)
		return nil, err
	}
	return w, nil
}
