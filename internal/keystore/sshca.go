package keystore

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/ssh"
)

// SSHCAs are a cluster's SSH certificate authorities, its keys of
// authority for SSH (SPEC section 11): the user CA signs the certificates
// users log in with, the host CA the certificates hosts prove themselves
// with. Both are Ed25519. A nil field is a CA the keystore does not hold
// (a keystore made before hpt had them).
//
// Formatting an SSHCAs with any fmt verb or logging it with slog prints
// the public fingerprints only.
type SSHCAs struct {
	User ed25519.PrivateKey
	Host ed25519.PrivateKey
}

// NewSSHCAs generates both CAs from crypto/rand.
func NewSSHCAs() (SSHCAs, error) {
	var cas SSHCAs
	for _, p := range []*ed25519.PrivateKey{&cas.User, &cas.Host} {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return SSHCAs{}, fmt.Errorf("generate SSH CA: %w", err)
		}
		*p = priv
	}
	return cas, nil
}

// Complete reports whether both CAs are present.
func (c SSHCAs) Complete() bool { return c.User != nil && c.Host != nil }

// CAFingerprint is the SHA256 fingerprint of a CA's public key as
// ssh-keygen -l prints it, or "none" for a missing key.
func CAFingerprint(priv ed25519.PrivateKey) string {
	if len(priv) != ed25519.PrivateKeySize {
		return "none"
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return "invalid"
	}
	return ssh.FingerprintSHA256(pub)
}

// String prints the public fingerprints, never a private key.
func (c SSHCAs) String() string {
	return fmt.Sprintf("SSHCAs{user: %s, host: %s}", CAFingerprint(c.User), CAFingerprint(c.Host))
}

// GoString keeps the private keys out of %#v.
func (c SSHCAs) GoString() string { return "keystore." + c.String() }

// Format keeps the private keys out of every verb (%d and %x of the plain
// struct would print their bytes).
func (c SSHCAs) Format(f fmt.State, verb rune) { formatRedacted(f, verb, c.String(), c.GoString()) }

// LogValue logs the fingerprints.
func (c SSHCAs) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", CAFingerprint(c.User)), slog.String("host", CAFingerprint(c.Host)))
}

// formatRedacted writes s for every verb but %#v, which gets gostring.
func formatRedacted(f fmt.State, verb rune, s, gostring string) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, gostring)
		return
	}
	fmt.Fprint(f, s)
}

// SSHCAs returns the SSH CAs of a cluster keystore. A CA the keystore
// does not hold is nil; that is not an error (see EnsureSSHCAs).
func (k *Keystore) SSHCAs() (SSHCAs, error) {
	if err := k.needKind("SSH CAs", KindCluster); err != nil {
		return SSHCAs{}, err
	}
	var cas SSHCAs
	err := k.view("read SSH CAs", func(tx *bolt.Tx) error {
		var err error
		cas, err = k.sshCAs(tx)
		return err
	})
	return cas, err
}

func (k *Keystore) sshCAs(tx *bolt.Tx) (SSHCAs, error) {
	var cas SSHCAs
	for _, f := range []struct {
		rec string
		key *ed25519.PrivateKey
	}{{recSSHUserCA, &cas.User}, {recSSHHostCA, &cas.Host}} {
		v := get(tx, bucketCluster, f.rec)
		if v == nil {
			continue
		}
		key, err := decodeKey(v, false)
		if err != nil {
			return SSHCAs{}, k.corrupt(bucketCluster, []byte(f.rec), err)
		}
		*f.key = key.Private
	}
	return cas, nil
}

// SetSSHCAs stores the given CAs (nil fields are skipped) in a cluster
// keystore. Storing a CA the keystore already holds is a no-op; a
// different one fails with ErrExists: a CA is never silently replaced,
// since every certificate it signed would stop being trusted.
func (k *Keystore) SetSSHCAs(cas SSHCAs) error {
	if err := k.needKind("SSH CAs", KindCluster); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		priv ed25519.PrivateKey
	}{{"user CA", cas.User}, {"host CA", cas.Host}} {
		if f.priv == nil {
			continue
		}
		if err := checkPrivate(f.priv); err != nil {
			return fmt.Errorf("keystore %s: set SSH %s: %w", k.path, f.name, err)
		}
	}
	return k.update(func(tx *bolt.Tx) error { return k.setSSHCAs(tx, cas) })
}

func (k *Keystore) setSSHCAs(tx *bolt.Tx, cas SSHCAs) error {
	old, err := k.sshCAs(tx)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name, rec string
		old, new  ed25519.PrivateKey
	}{{"user CA", recSSHUserCA, old.User, cas.User}, {"host CA", recSSHHostCA, old.Host, cas.Host}} {
		switch {
		case f.new == nil:
			continue
		case f.old != nil && f.old.Equal(f.new):
			continue
		case f.old != nil:
			return fmt.Errorf("keystore %s: SSH %s: %w (a different key, %s)", k.path, f.name, ErrExists, CAFingerprint(f.old))
		}
		v, err := encodeKey(Key{Public: f.new.Public().(ed25519.PublicKey), Private: f.new, Created: time.Now()}, false)
		if err != nil {
			return fmt.Errorf("keystore %s: SSH %s: %w", k.path, f.name, err)
		}
		if err := put(tx, bucketCluster, f.rec, v); err != nil {
			return err
		}
	}
	return nil
}

// EnsureSSHCAs adds the SSH CAs a cluster keystore lacks, generated from
// crypto/rand, in one transaction, and returns the CAs in effect and the
// names ("user CA", "host CA") of those it added. This is how a keystore
// made before hpt had SSH CAs gets them; every node must then be given
// the same file.
func (k *Keystore) EnsureSSHCAs() (cas SSHCAs, added []string, err error) {
	if err := k.needKind("SSH CAs", KindCluster); err != nil {
		return SSHCAs{}, nil, err
	}
	fresh, err := NewSSHCAs()
	if err != nil {
		return SSHCAs{}, nil, err
	}
	err = k.update(func(tx *bolt.Tx) error {
		old, err := k.sshCAs(tx)
		if err != nil {
			return err
		}
		cas, added = old, nil
		if old.User == nil {
			cas.User, added = fresh.User, append(added, "user CA")
		}
		if old.Host == nil {
			cas.Host, added = fresh.Host, append(added, "host CA")
		}
		if len(added) == 0 {
			return nil
		}
		return k.setSSHCAs(tx, cas)
	})
	if err != nil {
		return SSHCAs{}, nil, err
	}
	return cas, added, nil
}
