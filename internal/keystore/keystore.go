package keystore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Kind is the kind of a keystore, fixed when it is created.
type Kind string

// The kinds of keystore.
const (
	KindClient  Kind = "client"
	KindTarget  Kind = "target"
	KindCluster Kind = "cluster"
)

func (k Kind) valid() bool {
	return k == KindClient || k == KindTarget || k == KindCluster
}

// Role says what a named key is for.
type Role string

// The roles of a named key.
const (
	// RoleTarget is a target we provision (in a client keystore).
	RoleTarget Role = "target"
	// RoleClient is a client we accept provisioning from (in a target keystore).
	RoleClient Role = "client"
	// RoleCluster is the cluster key.
	RoleCluster Role = "cluster"
)

// rolesFor lists the roles a keystore of the given kind may hold.
func rolesFor(k Kind) []Role {
	switch k {
	case KindClient:
		return []Role{RoleTarget, RoleCluster}
	case KindTarget:
		return []Role{RoleClient, RoleCluster}
	}
	return nil // a cluster keystore holds no named keys
}

func (k Kind) allows(r Role) bool {
	for _, a := range rolesFor(k) {
		if a == r {
			return true
		}
	}
	return false
}

// Errors callers branch on. Returned errors wrap them with the keystore path
// and the name involved; test with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("already exists")
	ErrNoIdentity    = errors.New("no identity keypair")
	ErrNotKeystore   = errors.New("not a valid hpt keystore")
	ErrLocked        = errors.New("in use by another process")
	ErrInsecurePerms = errors.New("insecure file permissions")
	// ErrWrongKind: the keystore is of another kind than the caller expects,
	// or cannot hold what the caller tries to store.
	ErrWrongKind = errors.New("wrong keystore kind")
)

// lockTimeout is how long Open waits for another process to release the file.
const lockTimeout = time.Second

// Key is a named public key, with its private key if the keystore holds it.
type Key struct {
	Name    string
	Role    Role
	Public  ed25519.PublicKey
	Private ed25519.PrivateKey // nil unless held
	Created time.Time
}

// BootstrapToken is the record of the first admin token: its public id and
// the SHA-256 of its secret, never the secret itself.
type BootstrapToken struct {
	ID           string
	SecretSHA256 [32]byte
	Subject      string
}

// Keystore is an open keystore file. Close it to release the file lock.
type Keystore struct {
	path string
	kind Kind
	db   *bolt.DB
}

// Bucket and record names; see the package comment for the layout.
const (
	bucketMeta     = "meta"
	bucketIdentity = "identity"
	bucketKeys     = "keys"
	bucketCluster  = "cluster"

	recFormat  = "format"
	recVersion = "version"
	recKind    = "kind"

	recIdentity = "key"
	recName     = "name"

	recGossipKey      = "gossip_key"
	recSeeds          = "seeds"
	recBootstrapToken = "bootstrap_token"
	recSSHUserCA      = "ssh_user_ca"
	recSSHHostCA      = "ssh_host_ca"

	formatMarker  = "hpt-keystore"
	formatVersion = 1
)

// Create creates a new keystore of the given kind at path with mode 0600,
// creating missing parent directories with mode 0700. It fails with
// ErrExists if path exists.
func Create(path string, kind Kind) (*Keystore, error) {
	if !kind.valid() {
		return nil, fmt.Errorf("create keystore %s: unknown kind %q (want client, target or cluster)", path, kind)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create keystore: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create keystore %s: %w", path, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("create keystore: %w", err)
	}
	// The umask may have taken bits away; make it exactly 0600.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create keystore: %w", err)
	}
	k, err := openFile(path, f, kind)
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return k, nil
}

// Open opens an existing keystore for reading and writing. If path does not
// exist the error satisfies errors.Is(err, fs.ErrNotExist). The file is
// locked until Close: if another process (or another Keystore in this one)
// has it open, Open waits up to a second and fails with ErrLocked. The whole
// file is checked first; see the package comment.
func Open(path string) (*Keystore, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open keystore: %w", err)
	}
	return openFile(path, f, "")
}

// OpenOrCreate opens the keystore at path, or creates it with the given kind
// if it does not exist. An existing keystore of another kind is an error
// wrapping ErrWrongKind.
func OpenOrCreate(path string, kind Kind) (*Keystore, error) {
	k, err := Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err = Create(path, kind)
		if errors.Is(err, ErrExists) { // lost a race with another creator
			k, err = Open(path)
		}
	}
	if err != nil {
		return nil, err
	}
	if k.kind != kind {
		k.Close()
		return nil, fmt.Errorf("keystore %s is a %s keystore, not a %s keystore: %w", path, k.kind, kind, ErrWrongKind)
	}
	return k, nil
}

// openFile takes ownership of f. With create set, f is a new empty file and
// a keystore of that kind is written into it; otherwise f is checked and
// validated as an existing keystore.
func openFile(path string, f *os.File, create Kind) (*Keystore, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open keystore: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("keystore %s: %w: not a regular file", path, ErrNotKeystore)
	}
	if create == "" && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		f.Close()
		return nil, fmt.Errorf("keystore %s: %w: mode %04o lets group or others access it (private keys are inside); run: chmod 600 %s",
			path, ErrInsecurePerms, fi.Mode().Perm(), path)
	}
	// Lock before reading: another process may be writing the file.
	if err := lockFile(f, lockTimeout); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("keystore %s is %w (waited %s)", path, ErrLocked, lockTimeout)
		}
		return nil, fmt.Errorf("lock keystore %s: %w", path, err)
	}
	if create == "" {
		if fi.Size() == 0 {
			f.Close()
			return nil, fmt.Errorf("keystore %s: %w: empty file", path, ErrNotKeystore)
		}
		if err := checkBolt(f, fi.Size()); err != nil {
			f.Close()
			return nil, fmt.Errorf("keystore %s: %w: bbolt structure: %v", path, ErrNotKeystore, err)
		}
	}

	k := &Keystore{path: path, kind: create}
	err = k.guard("open", func() error {
		var err error
		k.db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout: lockTimeout,
			// Hand bbolt the file we checked and locked; its own flock on
			// the same open file succeeds at once.
			OpenFile: func(string, int, os.FileMode) (*os.File, error) { return f, nil },
		})
		return err
	})
	if err != nil {
		f.Close() // bbolt closes it on error, not on panic
		switch {
		case errors.Is(err, ErrNotKeystore):
			return nil, err
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("keystore %s is %w (waited %s)", path, ErrLocked, lockTimeout)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
			return nil, fmt.Errorf("keystore %s: %w: %v", path, ErrNotKeystore, err)
		}
		return nil, fmt.Errorf("open keystore %s: %w", path, err)
	}

	if create != "" {
		err = k.update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte(bucketMeta))
			if err != nil {
				return err
			}
			for _, kv := range [][2]string{{recFormat, formatMarker}, {recVersion, fmt.Sprint(formatVersion)}, {recKind, string(create)}} {
				if err := b.Put([]byte(kv[0]), []byte(kv[1])); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			err = fmt.Errorf("create keystore %s: %w", path, err)
		}
	} else {
		k.kind, err = k.validate()
	}
	if err != nil {
		k.db.Close()
		return nil, err
	}
	return k, nil
}

// Path returns the file the keystore was opened from.
func (k *Keystore) Path() string { return k.path }

// Kind returns the kind of the keystore.
func (k *Keystore) Kind() Kind { return k.kind }

// Close releases the file and its lock.
func (k *Keystore) Close() error {
	if err := k.db.Close(); err != nil {
		return fmt.Errorf("close keystore %s: %w", k.path, err)
	}
	return nil
}

// panicError is a panic or memory fault recovered from bbolt.
type panicError struct{ v any }

func (e *panicError) Error() string { return fmt.Sprintf("bbolt panicked: %v", e.v) }

// guard runs fn, turning a panic or a memory fault (bbolt reads its file
// through a memory map) into an error wrapping ErrNotKeystore.
func (k *Keystore) guard(op string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("keystore %s: %w: %s: file is corrupt: %w", k.path, ErrNotKeystore, op, &panicError{v})
		}
	}()
	err = fn()
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		err = fmt.Errorf("keystore %s: %s: %w", k.path, op, err)
	}
	return err
}

func (k *Keystore) view(op string, fn func(*bolt.Tx) error) error {
	return k.guard(op, func() error { return k.db.View(fn) })
}

func (k *Keystore) update(fn func(*bolt.Tx) error) error {
	return k.guard("write", func() error { return k.db.Update(fn) })
}

// corrupt reports a malformed record. detail must not contain key material.
func (k *Keystore) corrupt(bucket string, rec []byte, detail error) error {
	return fmt.Errorf("keystore %s: %w: bucket %q record %s: %v", k.path, ErrNotKeystore, bucket, quote(rec), detail)
}

// quote prints a record name read from the file, shortened.
func quote(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%q...", b[:64])
	}
	return fmt.Sprintf("%q", b)
}

// validate checks the meta bucket and decodes every record, returning the
// keystore's kind.
func (k *Keystore) validate() (Kind, error) {
	var kind Kind
	err := k.view("validate", func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte(bucketMeta))
		if meta == nil {
			return fmt.Errorf("keystore %s: %w: no %q bucket (a bbolt file, but not an hpt keystore)", k.path, ErrNotKeystore, bucketMeta)
		}
		if v := meta.Get([]byte(recFormat)); string(v) != formatMarker {
			return k.corrupt(bucketMeta, []byte(recFormat), fmt.Errorf("is %s, want %q", quote(v), formatMarker))
		}
		v := meta.Get([]byte(recVersion))
		version, err := parseVersion(v)
		if err != nil {
			return k.corrupt(bucketMeta, []byte(recVersion), err)
		}
		if version > formatVersion {
			return fmt.Errorf("keystore %s: %w: format version %d is newer than this hpt supports (%d); upgrade hpt",
				k.path, ErrNotKeystore, version, formatVersion)
		}
		if version < formatVersion {
			return k.corrupt(bucketMeta, []byte(recVersion), fmt.Errorf("unknown version %d", version))
		}
		kind = Kind(meta.Get([]byte(recKind)))
		if !kind.valid() {
			return k.corrupt(bucketMeta, []byte(recKind), fmt.Errorf("unknown kind %s", quote([]byte(kind))))
		}
		publics := make(map[string]bool)
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if b == nil {
				return fmt.Errorf("keystore %s: %w: top-level value %s is not a bucket", k.path, ErrNotKeystore, quote(name))
			}
			bucket := string(name)
			return b.ForEach(func(rec, v []byte) error {
				if v == nil {
					return k.corrupt(bucket, rec, errors.New("is a nested bucket"))
				}
				if err := checkRecord(kind, bucket, rec, v, publics); err != nil {
					if errors.Is(err, errUnknownBucket) {
						return fmt.Errorf("keystore %s: %w: unknown bucket %s", k.path, ErrNotKeystore, quote(name))
					}
					return k.corrupt(bucket, rec, err)
				}
				return nil
			})
		})
	})
	return kind, err
}

var errUnknownBucket = errors.New("unknown bucket")

// checkRecord decodes one record of an existing keystore of the given kind.
// publics collects the public keys of named keys, which must be unique.
func checkRecord(kind Kind, bucket string, rec, v []byte, publics map[string]bool) error {
	switch bucket {
	case bucketMeta:
		switch string(rec) {
		case recFormat, recVersion, recKind: // checked by validate
			return nil
		}
	case bucketIdentity:
		switch string(rec) {
		case recIdentity:
			_, err := decodeKey(v, false)
			return err
		case recName:
			if kind != KindTarget {
				return fmt.Errorf("a %s keystore has no name", kind)
			}
			return validName(string(v))
		}
	case bucketKeys:
		if err := validName(string(rec)); err != nil {
			return err
		}
		key, err := decodeKey(v, true)
		if err != nil {
			return err
		}
		if !kind.allows(key.Role) {
			return fmt.Errorf("a %s keystore holds no %s keys", kind, key.Role)
		}
		if publics[string(key.Public)] {
			return errors.New("public key also registered under another name")
		}
		publics[string(key.Public)] = true
		return nil
	case bucketCluster:
		switch string(rec) {
		case recGossipKey, recSeeds:
			if kind == KindClient {
				return fmt.Errorf("a %s keystore has no %s", kind, rec)
			}
			if string(rec) == recSeeds {
				_, err := decodeSeeds(v)
				return err
			}
			_, err := decodeGossipKey(v)
			return err
		case recBootstrapToken:
			if kind != KindCluster {
				return fmt.Errorf("a %s keystore has no %s", kind, rec)
			}
			_, err := decodeToken(v)
			return err
		case recSSHUserCA, recSSHHostCA:
			if kind != KindCluster {
				return fmt.Errorf("a %s keystore has no %s", kind, rec)
			}
			_, err := decodeKey(v, false)
			return err
		}
	default:
		return errUnknownBucket
	}
	return errors.New("unknown record")
}

// get reads one record; it returns nil if the bucket or record is absent.
func get(tx *bolt.Tx, bucket, rec string) []byte {
	b := tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	return b.Get([]byte(rec))
}

func put(tx *bolt.Tx, bucket, rec string, v []byte) error {
	b, err := tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return err
	}
	return b.Put([]byte(rec), v)
}

func (k *Keystore) needKind(what string, kinds ...Kind) error {
	for _, kd := range kinds {
		if k.kind == kd {
			return nil
		}
	}
	return fmt.Errorf("keystore %s: a %s keystore has no %s: %w", k.path, k.kind, what, ErrWrongKind)
}

// Identity returns the keystore's own private key, or an error wrapping
// ErrNoIdentity if none is set.
func (k *Keystore) Identity() (ed25519.PrivateKey, error) {
	var priv ed25519.PrivateKey
	err := k.view("read identity", func(tx *bolt.Tx) error {
		var err error
		priv, err = k.identity(tx)
		return err
	})
	return priv, err
}

func (k *Keystore) identity(tx *bolt.Tx) (ed25519.PrivateKey, error) {
	v := get(tx, bucketIdentity, recIdentity)
	if v == nil {
		return nil, fmt.Errorf("keystore %s: %w", k.path, ErrNoIdentity)
	}
	key, err := decodeKey(v, false)
	if err != nil {
		return nil, k.corrupt(bucketIdentity, []byte(recIdentity), err)
	}
	return key.Private, nil
}

// SetIdentity stores priv as the keystore's own keypair. It is a no-op if
// priv is already the identity, and fails with ErrExists if another identity
// is set: an identity is never silently replaced.
func (k *Keystore) SetIdentity(priv ed25519.PrivateKey) error {
	if err := checkPrivate(priv); err != nil {
		return fmt.Errorf("keystore %s: set identity: %w", k.path, err)
	}
	return k.update(func(tx *bolt.Tx) error {
		_, err := k.setIdentity(tx, priv)
		return err
	})
}

// setIdentity stores priv unless an identity exists, and returns the
// identity in effect.
func (k *Keystore) setIdentity(tx *bolt.Tx, priv ed25519.PrivateKey) (ed25519.PrivateKey, error) {
	old, err := k.identity(tx)
	switch {
	case err == nil && priv == nil:
		return old, nil
	case err == nil && bytes.Equal(old, priv):
		return old, nil
	case err == nil:
		return nil, fmt.Errorf("keystore %s: identity: %w (a different keypair)", k.path, ErrExists)
	case !errors.Is(err, ErrNoIdentity):
		return nil, err
	}
	if priv == nil {
		_, priv, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate identity: %w", err)
		}
	}
	v, err := encodeKey(Key{Public: priv.Public().(ed25519.PublicKey), Private: priv, Created: time.Now()}, false)
	if err != nil {
		return nil, err
	}
	return priv, put(tx, bucketIdentity, recIdentity, v)
}

// EnsureIdentity returns the keystore's own private key, generating and
// storing a new one (from crypto/rand) if none is set; created reports
// whether it did.
func (k *Keystore) EnsureIdentity() (priv ed25519.PrivateKey, created bool, err error) {
	err = k.update(func(tx *bolt.Tx) error {
		_, err := k.identity(tx)
		created = errors.Is(err, ErrNoIdentity)
		priv, err = k.setIdentity(tx, nil)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return priv, created, nil
}

// Name returns the keystore's own name (a target's name), or "" if unset.
func (k *Keystore) Name() (string, error) {
	var name string
	err := k.view("read name", func(tx *bolt.Tx) error {
		v := get(tx, bucketIdentity, recName)
		if v == nil {
			return nil
		}
		if err := validName(string(v)); err != nil {
			return k.corrupt(bucketIdentity, []byte(recName), err)
		}
		name = string(v)
		return nil
	})
	return name, err
}

// SetName sets the keystore's own name; only target keystores have one.
func (k *Keystore) SetName(name string) error {
	if err := k.needKind("name", KindTarget); err != nil {
		return err
	}
	if err := validName(name); err != nil {
		return fmt.Errorf("keystore %s: set name: %w", k.path, err)
	}
	return k.update(func(tx *bolt.Tx) error { return put(tx, bucketIdentity, recName, []byte(name)) })
}

// AddKey adds a named key. The name must be unused (else ErrExists), and so
// must the public key, so that KeyByPublic is unambiguous. The role must fit
// the keystore's kind (else ErrWrongKind). A zero Created is set to now.
func (k *Keystore) AddKey(key Key) error {
	if err := validName(key.Name); err != nil {
		return fmt.Errorf("keystore %s: add key: %w", k.path, err)
	}
	if !key.Role.valid() {
		return fmt.Errorf("keystore %s: add key %q: unknown role %q (want target, client or cluster)", k.path, key.Name, key.Role)
	}
	if !k.kind.allows(key.Role) {
		return fmt.Errorf("keystore %s: add key %q: a %s keystore holds no %s keys: %w", k.path, key.Name, k.kind, key.Role, ErrWrongKind)
	}
	if key.Created.IsZero() {
		key.Created = time.Now()
	}
	v, err := encodeKey(key, true)
	if err != nil {
		return fmt.Errorf("keystore %s: add key %q: %w", k.path, key.Name, err)
	}
	return k.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucketKeys))
		if err != nil {
			return err
		}
		if b.Get([]byte(key.Name)) != nil {
			return fmt.Errorf("keystore %s: key %q: %w", k.path, key.Name, ErrExists)
		}
		if other, err := k.keyByPublic(b, key.Public); err == nil {
			return fmt.Errorf("keystore %s: key %q: public key %w as %q", k.path, key.Name, ErrExists, other.Name)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return b.Put([]byte(key.Name), v)
	})
}

// Key returns the named key, or an error wrapping ErrNotFound.
func (k *Keystore) Key(name string) (Key, error) {
	if err := validName(name); err != nil {
		return Key{}, fmt.Errorf("keystore %s: key: %w", k.path, err)
	}
	var key Key
	err := k.view("read key", func(tx *bolt.Tx) error {
		v := get(tx, bucketKeys, name)
		if v == nil {
			return fmt.Errorf("keystore %s: key %q: %w", k.path, name, ErrNotFound)
		}
		var err error
		key, err = decodeKey(v, true)
		if err != nil {
			return k.corrupt(bucketKeys, []byte(name), err)
		}
		key.Name = name
		return nil
	})
	return key, err
}

// Keys returns all named keys sorted by name.
func (k *Keystore) Keys() ([]Key, error) {
	var keys []Key
	err := k.view("read keys", func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketKeys))
		if b == nil {
			return nil
		}
		return b.ForEach(func(name, v []byte) error {
			key, err := decodeKey(v, true)
			if err != nil {
				return k.corrupt(bucketKeys, name, err)
			}
			key.Name = string(name)
			keys = append(keys, key)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
	return keys, nil
}

// RemoveKey removes the named key, or returns an error wrapping ErrNotFound.
func (k *Keystore) RemoveKey(name string) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("keystore %s: remove key: %w", k.path, err)
	}
	return k.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketKeys))
		if b == nil || b.Get([]byte(name)) == nil {
			return fmt.Errorf("keystore %s: key %q: %w", k.path, name, ErrNotFound)
		}
		return b.Delete([]byte(name))
	})
}

// KeyByPublic returns the named key whose public key is pub, or an error
// wrapping ErrNotFound. The keystore's own identity is not a named key.
func (k *Keystore) KeyByPublic(pub ed25519.PublicKey) (Key, error) {
	var key Key
	err := k.view("read keys", func(tx *bolt.Tx) error {
		var err error
		key, err = k.keyByPublic(tx.Bucket([]byte(bucketKeys)), pub)
		return err
	})
	return key, err
}

func (k *Keystore) keyByPublic(b *bolt.Bucket, pub ed25519.PublicKey) (Key, error) {
	notFound := fmt.Errorf("keystore %s: public key %s: %w", k.path, fingerprint(pub), ErrNotFound)
	if b == nil || len(pub) != ed25519.PublicKeySize {
		return Key{}, notFound
	}
	c := b.Cursor()
	for name, v := c.First(); name != nil; name, v = c.Next() {
		key, err := decodeKey(v, true)
		if err != nil {
			return Key{}, k.corrupt(bucketKeys, name, err)
		}
		if bytes.Equal(key.Public, pub) {
			key.Name = string(name)
			return key, nil
		}
	}
	return Key{}, notFound
}

// GossipKey returns the memberlist gossip key, or an error wrapping
// ErrNotFound if none is set.
func (k *Keystore) GossipKey() ([]byte, error) {
	var key []byte
	err := k.view("read gossip key", func(tx *bolt.Tx) error {
		v := get(tx, bucketCluster, recGossipKey)
		if v == nil {
			return fmt.Errorf("keystore %s: gossip key: %w", k.path, ErrNotFound)
		}
		var err error
		key, err = decodeGossipKey(v)
		if err != nil {
			return k.corrupt(bucketCluster, []byte(recGossipKey), err)
		}
		return nil
	})
	return key, err
}

// SetGossipKey stores the memberlist gossip key: exactly 32 bytes (AES-256).
// Target and cluster keystores only.
func (k *Keystore) SetGossipKey(key []byte) error {
	if err := k.needKind("gossip key", KindTarget, KindCluster); err != nil {
		return err
	}
	v, err := encodeGossipKey(key)
	if err != nil {
		return fmt.Errorf("keystore %s: set gossip key: %w", k.path, err)
	}
	return k.update(func(tx *bolt.Tx) error { return put(tx, bucketCluster, recGossipKey, v) })
}

// Seeds returns the seed node addresses (host:port); none is not an error.
func (k *Keystore) Seeds() ([]string, error) {
	var seeds []string
	err := k.view("read seeds", func(tx *bolt.Tx) error {
		v := get(tx, bucketCluster, recSeeds)
		if v == nil {
			return nil
		}
		var err error
		seeds, err = decodeSeeds(v)
		if err != nil {
			return k.corrupt(bucketCluster, []byte(recSeeds), err)
		}
		return nil
	})
	return seeds, err
}

// SetSeeds replaces the seed node addresses; each must be host:port. An
// empty list removes them. Target and cluster keystores only.
func (k *Keystore) SetSeeds(seeds []string) error {
	if err := k.needKind("seeds", KindTarget, KindCluster); err != nil {
		return err
	}
	if len(seeds) == 0 {
		return k.update(func(tx *bolt.Tx) error {
			if b := tx.Bucket([]byte(bucketCluster)); b != nil {
				return b.Delete([]byte(recSeeds))
			}
			return nil
		})
	}
	v, err := encodeSeeds(seeds)
	if err != nil {
		return fmt.Errorf("keystore %s: set seeds: %w", k.path, err)
	}
	return k.update(func(tx *bolt.Tx) error { return put(tx, bucketCluster, recSeeds, v) })
}

// BootstrapToken returns the bootstrap admin token record of a cluster
// keystore, or an error wrapping ErrNotFound if none is set.
func (k *Keystore) BootstrapToken() (BootstrapToken, error) {
	if err := k.needKind("bootstrap token", KindCluster); err != nil {
		return BootstrapToken{}, err
	}
	var tok BootstrapToken
	err := k.view("read bootstrap token", func(tx *bolt.Tx) error {
		v := get(tx, bucketCluster, recBootstrapToken)
		if v == nil {
			return fmt.Errorf("keystore %s: bootstrap token: %w", k.path, ErrNotFound)
		}
		var err error
		tok, err = decodeToken(v)
		if err != nil {
			return k.corrupt(bucketCluster, []byte(recBootstrapToken), err)
		}
		return nil
	})
	return tok, err
}

// SetBootstrapToken stores the bootstrap admin token record of a cluster
// keystore, replacing any previous one.
func (k *Keystore) SetBootstrapToken(tok BootstrapToken) error {
	if err := k.needKind("bootstrap token", KindCluster); err != nil {
		return err
	}
	v, err := encodeToken(tok)
	if err != nil {
		return fmt.Errorf("keystore %s: set bootstrap token: %w", k.path, err)
	}
	return k.update(func(tx *bolt.Tx) error { return put(tx, bucketCluster, recBootstrapToken, v) })
}
