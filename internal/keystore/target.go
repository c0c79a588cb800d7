package keystore

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
)

// CreateTarget writes a new target keystore at path holding the target's
// keypair and name, then lets trust add what the target trusts (a client
// key for direct mode; the cluster key, gossip key and seeds for cluster
// mode). On any error the file is removed: a half-written keystore is
// never left behind.
func CreateTarget(path, name string, priv ed25519.PrivateKey, trust func(*Keystore) error) error {
	ks, err := Create(path, KindTarget)
	if err != nil {
		return err
	}
	err = errors.Join(ks.SetIdentity(priv), ks.SetName(name))
	if err == nil && trust != nil {
		err = trust(ks)
	}
	if cerr := ks.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write target keystore %s: %w", path, err)
	}
	return nil
}
