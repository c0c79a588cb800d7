package keystore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func newKeystore(t *testing.T, kind Kind) *Keystore {
	t.Helper()
	k, err := Create(filepath.Join(t.TempDir(), "test.keystore.db"), kind)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func reopen(t *testing.T, k *Keystore) *Keystore {
	t.Helper()
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	k2, err := Open(k.Path())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { k2.Close() })
	return k2
}

// fill stores everything a keystore of k's kind can hold and returns the
// named keys it added.
func fill(t testing.TB, k *Keystore, gossip []byte, tok BootstrapToken) []Key {
	t.Helper()
	if _, _, err := k.EnsureIdentity(); err != nil {
		t.Fatal(err)
	}
	var keys []Key
	for i, role := range rolesFor(k.Kind()) {
		pub, priv := newKey(t)
		key := Key{Name: fmt.Sprintf("%s-%d.example.com", role, i), Role: role, Public: pub,
			Created: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)}
		if i == 0 {
			key.Private = priv // a held private key round-trips too
		}
		if err := k.AddKey(key); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	if k.Kind() == KindTarget {
		if err := k.SetName("web-1"); err != nil {
			t.Fatal(err)
		}
	}
	if k.Kind() != KindClient {
		if err := k.SetGossipKey(gossip); err != nil {
			t.Fatal(err)
		}
		if err := k.SetSeeds([]string{"10.0.0.1:7401", "[::1]:7401"}); err != nil {
			t.Fatal(err)
		}
	}
	if k.Kind() == KindCluster {
		if err := k.SetBootstrapToken(tok); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestRoundTrip(t *testing.T) {
	gossip := bytes.Repeat([]byte{7}, 32)
	tok := BootstrapToken{ID: "sk_abc123", SecretSHA256: sha256.Sum256([]byte("secret")), Subject: "user:admin"}
	for _, kind := range []Kind{KindClient, KindTarget, KindCluster} {
		t.Run(string(kind), func(t *testing.T) {
			k := newKeystore(t, kind)
			keys := fill(t, k, gossip, tok)
			id, err := k.Identity()
			if err != nil {
				t.Fatal(err)
			}

			k = reopen(t, k)
			if k.Kind() != kind {
				t.Errorf("Kind = %q, want %q", k.Kind(), kind)
			}
			id2, err := k.Identity()
			if err != nil || !bytes.Equal(id, id2) {
				t.Errorf("Identity after reopen = %x, %v; want the stored one", id2.Public(), err)
			}
			got, err := k.Keys()
			if err != nil {
				t.Fatal(err)
			}
			sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
			if len(got) != len(keys) {
				t.Fatalf("Keys = %d keys, want %d", len(got), len(keys))
			}
			for i := range keys {
				if err := sameKey(got[i], keys[i]); err != nil {
					t.Errorf("key %d: %v", i, err)
				}
			}
			name, err := k.Name()
			if wantName := map[Kind]string{KindTarget: "web-1"}[kind]; err != nil || name != wantName {
				t.Errorf("Name = %q, %v; want %q", name, err, wantName)
			}
			g, err := k.GossipKey()
			switch kind {
			case KindClient:
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("client GossipKey: err = %v, want ErrNotFound", err)
				}
			default:
				if err != nil || !bytes.Equal(g, gossip) {
					t.Errorf("GossipKey = %x, %v; want %x", g, err, gossip)
				}
				seeds, err := k.Seeds()
				if err != nil || strings.Join(seeds, ",") != "10.0.0.1:7401,[::1]:7401" {
					t.Errorf("Seeds = %q, %v", seeds, err)
				}
			}
			gotTok, err := k.BootstrapToken()
			if kind == KindCluster {
				if err != nil || gotTok != tok {
					t.Errorf("BootstrapToken = %+v, %v; want %+v", gotTok, err, tok)
				}
			} else if !errors.Is(err, ErrWrongKind) {
				t.Errorf("%s BootstrapToken: err = %v, want ErrWrongKind", kind, err)
			}
		})
	}
}

func sameKey(got, want Key) error {
	if got.Name != want.Name || got.Role != want.Role || !bytes.Equal(got.Public, want.Public) ||
		!bytes.Equal(got.Private, want.Private) || !got.Created.Equal(want.Created) {
		return fmt.Errorf("got %s/%s pub %x priv held %v created %v; want %s/%s pub %x priv held %v created %v",
			got.Name, got.Role, got.Public, got.Private != nil, got.Created,
			want.Name, want.Role, want.Public, want.Private != nil, want.Created)
	}
	return nil
}

func TestCreatePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no unix permissions")
	}
	dir := filepath.Join(t.TempDir(), "new", "sub")
	path := filepath.Join(dir, "k.db")
	k, err := Create(path, KindClient)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %04o, want 0600", fi.Mode().Perm())
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		di, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm()&0o077 != 0 {
			t.Errorf("created directory %s mode = %04o, want no group/other access", d, di.Mode().Perm())
		}
	}
}

func TestOpenInsecurePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no unix permissions")
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o606, 0o666} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			k := newKeystore(t, KindClient)
			k.Close()
			if err := os.Chmod(k.Path(), mode); err != nil {
				t.Fatal(err)
			}
			_, err := Open(k.Path())
			if !errors.Is(err, ErrInsecurePerms) {
				t.Fatalf("Open: err = %v, want ErrInsecurePerms", err)
			}
			for _, want := range []string{fmt.Sprintf("%04o", mode), "chmod 600", k.Path()} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestCreateExists(t *testing.T) {
	k := newKeystore(t, KindTarget)
	if _, _, err := k.EnsureIdentity(); err != nil {
		t.Fatal(err)
	}
	id, _ := k.Identity()
	k.Close()

	for _, kind := range []Kind{KindTarget, KindClient} {
		if _, err := Create(k.Path(), kind); !errors.Is(err, ErrExists) {
			t.Errorf("Create over existing keystore as %s: err = %v, want ErrExists", kind, err)
		}
	}
	k2, err := Open(k.Path())
	if err != nil {
		t.Fatalf("Open after failed Create: %v", err)
	}
	defer k2.Close()
	if id2, err := k2.Identity(); err != nil || !bytes.Equal(id, id2) {
		t.Errorf("identity changed by failed Create: %v", err)
	}
}

func TestCreateInvalidKind(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	if _, err := Create(path, Kind("server")); err == nil || !strings.Contains(err.Error(), `"server"`) {
		t.Errorf("Create with kind server: err = %v, want an error naming the kind", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Create with a bad kind left a file behind: %v", err)
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "nope.db"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open missing file: err = %v, want fs.ErrNotExist", err)
	}
}

func TestOpenOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir", "k.db")
	k, err := OpenOrCreate(path, KindCluster)
	if err != nil {
		t.Fatal(err)
	}
	priv, created, err := k.EnsureIdentity()
	if err != nil || !created {
		t.Fatalf("EnsureIdentity = %v, %v", created, err)
	}
	k.Close()

	k, err = OpenOrCreate(path, KindCluster)
	if err != nil {
		t.Fatalf("OpenOrCreate existing: %v", err)
	}
	if got, err := k.Identity(); err != nil || !bytes.Equal(got, priv) {
		t.Errorf("OpenOrCreate existing did not open the same keystore: %v", err)
	}
	k.Close()

	for _, kind := range []Kind{KindClient, KindTarget} {
		_, err = OpenOrCreate(path, kind)
		if !errors.Is(err, ErrWrongKind) {
			t.Fatalf("OpenOrCreate cluster keystore as %s: err = %v, want ErrWrongKind", kind, err)
		}
		if !strings.Contains(err.Error(), "is a cluster keystore, not a "+string(kind)) {
			t.Errorf("error %q does not say which kinds", err)
		}
	}
	// The failed attempts must have released the file.
	k, err = Open(path)
	if err != nil {
		t.Fatalf("Open after kind mismatch: %v", err)
	}
	k.Close()
}

func TestIdentity(t *testing.T) {
	k := newKeystore(t, KindTarget)
	if _, err := k.Identity(); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("Identity of a new keystore: err = %v, want ErrNoIdentity", err)
	}
	priv, created, err := k.EnsureIdentity()
	if err != nil || !created || len(priv) != ed25519.PrivateKeySize {
		t.Fatalf("EnsureIdentity = %d bytes, %v, %v", len(priv), created, err)
	}
	priv2, created, err := k.EnsureIdentity()
	if err != nil || created || !bytes.Equal(priv, priv2) {
		t.Fatalf("second EnsureIdentity = created %v, same %v, %v", created, bytes.Equal(priv, priv2), err)
	}
	msg := []byte("hello")
	if !ed25519.Verify(priv.Public().(ed25519.PublicKey), msg, ed25519.Sign(priv2, msg)) {
		t.Error("identity does not sign verifiably")
	}
	if err := k.SetIdentity(priv); err != nil {
		t.Errorf("SetIdentity with the same key: %v", err)
	}
	_, other := newKey(t)
	if err := k.SetIdentity(other); !errors.Is(err, ErrExists) {
		t.Errorf("SetIdentity replacing the identity: err = %v, want ErrExists", err)
	}

	// A second keystore never generates the same identity.
	k2 := newKeystore(t, KindTarget)
	priv3, _, err := k2.EnsureIdentity()
	if err != nil || bytes.Equal(priv3, priv) {
		t.Errorf("two keystores got the same identity (err %v)", err)
	}

	// SetIdentity on an empty keystore, then reopen.
	k3 := newKeystore(t, KindClient)
	if err := k3.SetIdentity(other); err != nil {
		t.Fatal(err)
	}
	k3 = reopen(t, k3)
	if got, err := k3.Identity(); err != nil || !bytes.Equal(got, other) {
		t.Errorf("Identity after SetIdentity and reopen: %v", err)
	}
}

func TestSetIdentityInvalid(t *testing.T) {
	_, priv := newKey(t)
	bad := bytes.Clone(priv)
	bad[40] ^= 1 // public half no longer derives from the seed
	for name, p := range map[string]ed25519.PrivateKey{
		"nil":          nil,
		"short":        priv[:32],
		"inconsistent": bad,
	} {
		t.Run(name, func(t *testing.T) {
			k := newKeystore(t, KindTarget)
			err := k.SetIdentity(p)
			if err == nil {
				t.Fatal("SetIdentity accepted an invalid key")
			}
			if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(priv.Seed())) {
				t.Errorf("error contains the private key: %v", err)
			}
			if _, err := k.Identity(); !errors.Is(err, ErrNoIdentity) {
				t.Errorf("an invalid SetIdentity stored something: %v", err)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	k := newKeystore(t, KindClient)
	if keys, err := k.Keys(); err != nil || len(keys) != 0 {
		t.Fatalf("Keys of a new keystore = %v, %v", keys, err)
	}
	if _, err := k.Key("foo"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Key missing: err = %v, want ErrNotFound", err)
	}
	var added []Key
	for _, name := range []string{"zeta", "alpha", "mid.example.com"} {
		pub, _ := newKey(t)
		before := time.Now()
		key := Key{Name: name, Role: RoleTarget, Public: pub}
		if err := k.AddKey(key); err != nil {
			t.Fatalf("AddKey %s: %v", name, err)
		}
		got, err := k.Key(name)
		if err != nil {
			t.Fatal(err)
		}
		if got.Created.Before(before.Add(-time.Second)) || got.Created.After(time.Now().Add(time.Second)) {
			t.Errorf("zero Created was set to %v, want about now", got.Created)
		}
		if got.Private != nil {
			t.Errorf("key %s has a private key; none was given", name)
		}
		key.Created = got.Created
		if err := sameKey(got, key); err != nil {
			t.Error(err)
		}
		added = append(added, key)
	}
	keys, err := k.Keys()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, key := range keys {
		names = append(names, key.Name)
	}
	if got := strings.Join(names, ","); got != "alpha,mid.example.com,zeta" {
		t.Errorf("Keys order = %s, want sorted by name", got)
	}

	pub, _ := newKey(t)
	if err := k.AddKey(Key{Name: "alpha", Role: RoleTarget, Public: pub}); !errors.Is(err, ErrExists) {
		t.Errorf("AddKey with a taken name: err = %v, want ErrExists", err)
	}
	if err := k.AddKey(Key{Name: "beta", Role: RoleTarget, Public: added[0].Public}); !errors.Is(err, ErrExists) {
		t.Errorf("AddKey with a taken public key: err = %v, want ErrExists", err)
	}

	if err := k.RemoveKey("alpha"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Key("alpha"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Key after RemoveKey: err = %v, want ErrNotFound", err)
	}
	if err := k.RemoveKey("alpha"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveKey twice: err = %v, want ErrNotFound", err)
	}
	// The name is free again.
	if err := k.AddKey(Key{Name: "alpha", Role: RoleTarget, Public: pub}); err != nil {
		t.Errorf("AddKey after RemoveKey: %v", err)
	}
}

func TestAddKeyInvalid(t *testing.T) {
	pub, priv := newKey(t)
	otherPub, _ := newKey(t)
	tests := []struct {
		name string
		kind Kind
		key  Key
		want error // nil: any error
	}{
		{"unknown role", KindClient, Key{Name: "a", Role: "admin", Public: pub}, nil},
		{"empty role", KindClient, Key{Name: "a", Public: pub}, nil},
		{"short public", KindClient, Key{Name: "a", Role: RoleTarget, Public: pub[:31]}, nil},
		{"no public", KindClient, Key{Name: "a", Role: RoleTarget}, nil},
		{"private of another key", KindClient, Key{Name: "a", Role: RoleTarget, Public: otherPub, Private: priv}, nil},
		{"short private", KindClient, Key{Name: "a", Role: RoleTarget, Public: pub, Private: priv[:32]}, nil},
		{"client role in client keystore", KindClient, Key{Name: "a", Role: RoleClient, Public: pub}, ErrWrongKind},
		{"target role in target keystore", KindTarget, Key{Name: "a", Role: RoleTarget, Public: pub}, ErrWrongKind},
		{"any key in cluster keystore", KindCluster, Key{Name: "a", Role: RoleCluster, Public: pub}, ErrWrongKind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKeystore(t, tt.kind)
			err := k.AddKey(tt.key)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("AddKey: err = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(priv.Seed())) {
				t.Errorf("error contains the private key: %v", err)
			}
			if keys, err := k.Keys(); err != nil || len(keys) != 0 {
				t.Errorf("a refused AddKey stored %d keys (%v)", len(keys), err)
			}
		})
	}
	// The roles each kind does allow.
	for _, kind := range []Kind{KindClient, KindTarget, KindCluster} {
		for _, role := range rolesFor(kind) {
			k := newKeystore(t, kind)
			pub, _ := newKey(t)
			if err := k.AddKey(Key{Name: "x", Role: role, Public: pub}); err != nil {
				t.Errorf("AddKey %s key to %s keystore: %v", role, kind, err)
			}
		}
	}
}

func TestKeyNames(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"foo", true},
		{"web-1.prod.example.com", true},
		{"alice@example.com", true},
		{"a_b", true},
		{"A9", true},
		{"x", true},
		{strings.Repeat("a", 253), true},
		{strings.Repeat("a", 254), false},
		{"", false},
		{".hidden", false},
		{"-flag", false},
		{"a b", false},
		{"a/b", false},
		{"a:b", false},
		{"ümlaut", false},
		{"tab\t", false},
		{"nul\x00", false},
	}
	k := newKeystore(t, KindClient)
	for _, tt := range tests {
		pub, _ := newKey(t)
		err := k.AddKey(Key{Name: tt.name, Role: RoleTarget, Public: pub})
		if (err == nil) != tt.ok {
			t.Errorf("AddKey(%q): err = %v, want ok %v", tt.name, err, tt.ok)
			continue
		}
		if !tt.ok {
			if _, err := k.Key(tt.name); err == nil || errors.Is(err, ErrNotFound) {
				t.Errorf("Key(%q): err = %v, want an invalid name error", tt.name, err)
			}
			continue
		}
		if got, err := k.Key(tt.name); err != nil || got.Name != tt.name {
			t.Errorf("Key(%q) = %q, %v", tt.name, got.Name, err)
		}
	}
}

func TestKeyByPublic(t *testing.T) {
	k := newKeystore(t, KindTarget)
	clientPub, _ := newKey(t)
	clusterPub, _ := newKey(t)
	if err := k.AddKey(Key{Name: "laptop", Role: RoleClient, Public: clientPub}); err != nil {
		t.Fatal(err)
	}
	if err := k.AddKey(Key{Name: "cluster", Role: RoleCluster, Public: clusterPub}); err != nil {
		t.Fatal(err)
	}
	own, _, err := k.EnsureIdentity()
	if err != nil {
		t.Fatal(err)
	}
	unknown, _ := newKey(t)
	tests := []struct {
		pub      ed25519.PublicKey
		wantName string
		wantRole Role
	}{
		{clientPub, "laptop", RoleClient},
		{clusterPub, "cluster", RoleCluster},
		{unknown, "", ""},
		{own.Public().(ed25519.PublicKey), "", ""}, // the identity is not a named key
		{nil, "", ""},
		{clientPub[:16], "", ""},
	}
	for i, tt := range tests {
		got, err := k.KeyByPublic(tt.pub)
		if tt.wantName == "" {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%d: KeyByPublic = %q, %v; want ErrNotFound", i, got.Name, err)
			}
			continue
		}
		if err != nil || got.Name != tt.wantName || got.Role != tt.wantRole || !bytes.Equal(got.Public, tt.pub) {
			t.Errorf("%d: KeyByPublic = %q %q, %v; want %q %q", i, got.Name, got.Role, err, tt.wantName, tt.wantRole)
		}
	}
}

func TestName(t *testing.T) {
	k := newKeystore(t, KindTarget)
	if name, err := k.Name(); err != nil || name != "" {
		t.Errorf("Name unset = %q, %v; want empty", name, err)
	}
	for _, bad := range []string{"", "-x", "a b"} {
		if err := k.SetName(bad); err == nil {
			t.Errorf("SetName(%q) accepted", bad)
		}
	}
	for _, name := range []string{"web-1", "web-2"} {
		if err := k.SetName(name); err != nil {
			t.Fatal(err)
		}
		if got, err := k.Name(); err != nil || got != name {
			t.Errorf("Name = %q, %v; want %q", got, err, name)
		}
	}
	for _, kind := range []Kind{KindClient, KindCluster} {
		if err := newKeystore(t, kind).SetName("x"); !errors.Is(err, ErrWrongKind) {
			t.Errorf("SetName on %s keystore: err = %v, want ErrWrongKind", kind, err)
		}
	}
}

func TestGossipKey(t *testing.T) {
	k := newKeystore(t, KindTarget)
	if _, err := k.GossipKey(); !errors.Is(err, ErrNotFound) {
		t.Errorf("GossipKey unset: err = %v, want ErrNotFound", err)
	}
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		err := k.SetGossipKey(make([]byte, n))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("is %d bytes", n)) {
			t.Errorf("SetGossipKey(%d bytes): err = %v, want an error naming the length", n, err)
		}
	}
	if _, err := k.GossipKey(); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused gossip keys were stored: %v", err)
	}
	for _, fill := range []byte{1, 2} { // set, then rotate
		key := bytes.Repeat([]byte{fill}, 32)
		if err := k.SetGossipKey(key); err != nil {
			t.Fatal(err)
		}
		if got, err := k.GossipKey(); err != nil || !bytes.Equal(got, key) {
			t.Errorf("GossipKey = %x, %v; want %x", got, err, key)
		}
	}
	if err := newKeystore(t, KindClient).SetGossipKey(make([]byte, 32)); !errors.Is(err, ErrWrongKind) {
		t.Errorf("SetGossipKey on client keystore: err = %v, want ErrWrongKind", err)
	}
}

func TestSeeds(t *testing.T) {
	k := newKeystore(t, KindTarget)
	if seeds, err := k.Seeds(); err != nil || seeds != nil {
		t.Errorf("Seeds unset = %q, %v; want none", seeds, err)
	}
	tests := []struct {
		seed string
		ok   bool
	}{
		{"node1:7401", true},
		{"10.0.0.1:7401", true},
		{"[::1]:7401", true},
		{"[fe80::1%eth0]:1", true},
		{"node1.example.com:65535", true},
		{"node1", false},
		{"node1:", false},
		{":7401", false},
		{"node1:http", false},
		{"node1:0", false},
		{"node1:65536", false},
		{"node1:-1", false},
		{"::1:7401", false},
		{"", false},
	}
	var stored []string
	for _, tt := range tests {
		err := k.SetSeeds([]string{"ok:1", tt.seed})
		if (err == nil) != tt.ok {
			t.Errorf("SetSeeds(%q): err = %v, want ok %v", tt.seed, err, tt.ok)
			continue
		}
		if !tt.ok && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.seed)) {
			t.Errorf("SetSeeds(%q): error %q does not name the seed", tt.seed, err)
		}
		if tt.ok {
			stored = []string{"ok:1", tt.seed}
		}
		// A refused list leaves the stored one alone.
		if got, err := k.Seeds(); err != nil || !slices.Equal(got, stored) {
			t.Errorf("Seeds after SetSeeds(%q) = %q, %v; want %q", tt.seed, got, err, stored)
		}
	}
	if err := k.SetSeeds(nil); err != nil {
		t.Fatal(err)
	}
	if seeds, err := k.Seeds(); err != nil || seeds != nil {
		t.Errorf("Seeds after SetSeeds(nil) = %q, %v; want none", seeds, err)
	}
	if err := newKeystore(t, KindClient).SetSeeds([]string{"a:1"}); !errors.Is(err, ErrWrongKind) {
		t.Errorf("SetSeeds on client keystore: err = %v, want ErrWrongKind", err)
	}
}

func TestBootstrapToken(t *testing.T) {
	k := newKeystore(t, KindCluster)
	if _, err := k.BootstrapToken(); !errors.Is(err, ErrNotFound) {
		t.Errorf("BootstrapToken unset: err = %v, want ErrNotFound", err)
	}
	good := BootstrapToken{ID: "sk_0123", SecretSHA256: sha256.Sum256([]byte("s")), Subject: "user:admin@example.com"}
	for name, tok := range map[string]BootstrapToken{
		"empty id":      {SecretSHA256: good.SecretSHA256, Subject: good.Subject},
		"empty subject": {ID: good.ID, SecretSHA256: good.SecretSHA256},
		"zero hash":     {ID: good.ID, Subject: good.Subject},
		"space in id":   {ID: "a b", SecretSHA256: good.SecretSHA256, Subject: good.Subject},
	} {
		if err := k.SetBootstrapToken(tok); err == nil {
			t.Errorf("SetBootstrapToken with %s accepted", name)
		}
	}
	if err := k.SetBootstrapToken(good); err != nil {
		t.Fatal(err)
	}
	if got, err := k.BootstrapToken(); err != nil || got != good {
		t.Errorf("BootstrapToken = %+v, %v; want %+v", got, err, good)
	}
	for _, kind := range []Kind{KindClient, KindTarget} {
		if err := newKeystore(t, kind).SetBootstrapToken(good); !errors.Is(err, ErrWrongKind) {
			t.Errorf("SetBootstrapToken on %s keystore: err = %v, want ErrWrongKind", kind, err)
		}
	}
}

func TestLocked(t *testing.T) {
	k := newKeystore(t, KindClient)
	// Open gives up after lockTimeout; the deadline here only catches an
	// Open that waits forever.
	type result struct{ err error }
	opened := make(chan result, 1)
	go func() {
		other, err := Open(k.Path())
		if err == nil {
			other.Close()
		}
		opened <- result{err}
	}()
	var err error
	select {
	case r := <-opened:
		err = r.err
	case <-time.After(60 * lockTimeout):
		t.Fatal("Open of a locked keystore never gave up")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open while open elsewhere: err = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), k.Path()+" is in use by another process") {
		t.Errorf("error %q does not say the path is in use", err)
	}
	if _, err := OpenOrCreate(k.Path(), KindClient); !errors.Is(err, ErrLocked) {
		t.Errorf("OpenOrCreate while open elsewhere: err = %v, want ErrLocked", err)
	}
	// The first handle still works, and after Close the file opens.
	if _, _, err := k.EnsureIdentity(); err != nil {
		t.Fatalf("first handle after a refused Open: %v", err)
	}
	k.Close()
	k2, err := Open(k.Path())
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	k2.Close()
}

// validFile returns the bytes of a filled keystore of the given kind.
func validFile(t testing.TB, kind Kind) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "valid.db")
	k, err := Create(path, kind)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, k, bytes.Repeat([]byte{9}, 32), BootstrapToken{ID: "id", SecretSHA256: [32]byte{1}, Subject: "user:a"})
	k.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantNotKeystore opens path and checks that it fails cleanly with
// ErrNotKeystore naming the path and each of mention.
func wantNotKeystore(t *testing.T, path string, mention ...string) {
	t.Helper()
	k, err := Open(path)
	if err == nil {
		k.Close()
		t.Fatal("Open accepted a bad file")
	}
	if !errors.Is(err, ErrNotKeystore) {
		t.Fatalf("Open: err = %v, want ErrNotKeystore", err)
	}
	var pe *panicError
	if errors.As(err, &pe) {
		t.Errorf("bbolt panicked; checkBolt should have refused the file first: %v", err)
	}
	for _, m := range append(mention, path) {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

func TestOpenGarbage(t *testing.T) {
	valid := validFile(t, KindTarget)
	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	tests := map[string][]byte{
		"empty":         {},
		"one byte":      {0},
		"text":          []byte("[keystore]\nname = \"foo\"\n"),
		"random 100":    random(100),
		"random 4096":   random(4096),
		"random 32768":  random(32768),
		"zeros 32768":   make([]byte, 32768),
		"meta pages 0s": append(make([]byte, 8192), valid[8192:]...),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			wantNotKeystore(t, writeFile(t, b))
		})
	}
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := Open(dir); err == nil {
			t.Error("Open accepted a directory")
		}
	})
}

func TestOpenTruncated(t *testing.T) {
	valid := validFile(t, KindCluster)
	// The pages in use end where the current meta page says; bbolt grows
	// files ahead of use, so the rest is unused.
	m0, m1 := parseMeta(valid), parseMeta(valid[4096:])
	if m1.txid > m0.txid {
		m0 = m1
	}
	used := int(m0.pgid * m0.pageSize)
	if !m0.valid || used < 4*4096 || used > len(valid) {
		t.Fatalf("unexpected test file: %d bytes, meta %+v", len(valid), m0)
	}
	for _, n := range []int{1, 100, 4095, 4096, 4097, 8192, 3 * 4096, used / 2, used - 4096, used - 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if n < pageHeaderSize+metaSize { // too short to tell from garbage
				wantNotKeystore(t, writeFile(t, valid[:n]), "no valid meta page")
				return
			}
			wantNotKeystore(t, writeFile(t, valid[:n]), "truncated")
		})
	}
	// Cutting only unused pages loses nothing.
	if used < len(valid) {
		k, err := Open(writeFile(t, valid[:used]))
		if err != nil {
			t.Fatalf("Open without the unused tail: %v", err)
		}
		defer k.Close()
		if tok, err := k.BootstrapToken(); err != nil || tok.ID != "id" {
			t.Errorf("BootstrapToken = %+v, %v", tok, err)
		}
	}
}

// pageOf returns the number of the bbolt page of b holding needle.
func pageOf(t *testing.T, b, needle []byte) int {
	t.Helper()
	i := bytes.Index(b, needle)
	if i < 0 {
		t.Fatalf("%q not in file", needle)
	}
	return i / 4096
}

func TestOpenCorruptPage(t *testing.T) {
	valid := validFile(t, KindClient)
	tests := []struct {
		name    string
		corrupt func(b []byte)
		mention string
	}{
		{"page flags", func(b []byte) { b[pageOf(t, b, []byte("hpt-keystore"))*4096+8] = 0x20 }, "type 0x20"},
		{"page id", func(b []byte) { b[pageOf(t, b, []byte("hpt-keystore"))*4096] ^= 0x40 }, "identifies as page"},
		{"element offset", func(b []byte) {
			p := pageOf(t, b, []byte("hpt-keystore")) * 4096
			ne.PutUint32(b[p+pageHeaderSize+4:], 1<<20)
		}, "run past the page"},
		{"element count", func(b []byte) {
			p := pageOf(t, b, []byte("hpt-keystore")) * 4096
			ne.PutUint16(b[p+10:], 0x3000)
		}, "elements do not fit the page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(valid)
			tt.corrupt(b)
			wantNotKeystore(t, writeFile(t, b), tt.mention)
		})
	}
}

// writeBolt creates a bbolt file at a new path and runs fn in an update.
func writeBolt(t *testing.T, fn func(tx *bolt.Tx) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	return path
}

func putAll(tx *bolt.Tx, bucket string, kv ...string) error {
	b, err := tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return err
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if err := b.Put([]byte(kv[i]), []byte(kv[i+1])); err != nil {
			return err
		}
	}
	return nil
}

func TestOpenForeign(t *testing.T) {
	tests := []struct {
		name    string
		meta    []string // nil: no meta bucket
		other   func(tx *bolt.Tx) error
		mention string
	}{
		{"empty bbolt", nil, nil, `no "meta" bucket`},
		{"other program", nil, func(tx *bolt.Tx) error { return putAll(tx, "raft", "k", "v") }, `no "meta" bucket`},
		{"wrong format", []string{"format", "other", "version", "1", "kind", "client"}, nil, `"format"`},
		{"no version", []string{"format", "hpt-keystore", "kind", "client"}, nil, `"version"`},
		{"bad version", []string{"format", "hpt-keystore", "version", "01", "kind", "client"}, nil, `"version"`},
		{"version 0", []string{"format", "hpt-keystore", "version", "0", "kind", "client"}, nil, "unknown version 0"},
		{"newer version", []string{"format", "hpt-keystore", "version", "2", "kind", "client"}, nil, "format version 2 is newer"},
		{"unknown kind", []string{"format", "hpt-keystore", "version", "1", "kind", "server"}, nil, `"server"`},
		{"extra meta record", []string{"format", "hpt-keystore", "version", "1", "kind", "client", "x", "y"}, nil, `record "x"`},
		{"unknown bucket", []string{"format", "hpt-keystore", "version", "1", "kind", "client"},
			func(tx *bolt.Tx) error { return putAll(tx, "extra", "k", "v") }, `unknown bucket "extra"`},
		{"value at top level", []string{"format", "hpt-keystore", "version", "1", "kind", "client"},
			func(tx *bolt.Tx) error { return tx.Cursor().Bucket().Put([]byte("loose"), []byte("v")) }, `"loose" is not a bucket`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeBolt(t, func(tx *bolt.Tx) error {
				if tt.meta != nil {
					if err := putAll(tx, "meta", tt.meta...); err != nil {
						return err
					}
				}
				if tt.other != nil {
					return tt.other(tx)
				}
				return nil
			})
			wantNotKeystore(t, path, tt.mention)
		})
	}
}

func TestOpenBadRecord(t *testing.T) {
	pub, priv := newKey(t)
	otherPub, _ := newKey(t)
	enc := base64.StdEncoding.EncodeToString
	seed := enc(priv.Seed())
	keyJSON := func(role, public, private string) string {
		s := `{"role":"` + role + `","public":"` + public + `"`
		if private != "" {
			s += `,"private":"` + private + `"`
		}
		return s + `,"created":"2025-01-01T00:00:00Z"}`
	}
	idJSON := func(public, private string) string {
		return `{"public":"` + public + `","private":"` + private + `","created":"2025-01-01T00:00:00Z"}`
	}
	tests := []struct {
		name    string
		kind    Kind
		bucket  string
		rec     string
		value   string
		mention string
	}{
		{"not JSON", KindClient, "keys", "foo", "hello", "malformed JSON"},
		{"trailing data", KindClient, "keys", "foo", keyJSON("target", enc(pub), "") + "{}", "trailing data"},
		{"unknown field", KindClient, "keys", "foo", `{"role":"target","public":"` + enc(pub) + `","extra":1}`, `unknown field "extra"`},
		{"bad base64 public", KindClient, "keys", "foo", keyJSON("target", "!!!not base64", ""), "public key: illegal base64"},
		{"short public", KindClient, "keys", "foo", keyJSON("target", enc(pub[:31]), ""), "public key is 31 bytes"},
		{"long public", KindClient, "keys", "foo", keyJSON("target", enc(append(pub, 0)), ""), "public key is 33 bytes"},
		{"bad role", KindClient, "keys", "foo", keyJSON("admin", enc(pub), ""), `unknown role "admin"`},
		{"role not for kind", KindClient, "keys", "foo", keyJSON("client", enc(pub), ""), "holds no client keys"},
		{"bad key name", KindClient, "keys", "-foo", keyJSON("target", enc(pub), ""), `record "-foo"`},
		{"mismatched private", KindClient, "keys", "foo", keyJSON("target", enc(otherPub), seed), "does not match private key"},
		{"bad base64 private", KindClient, "keys", "foo", keyJSON("target", enc(pub), "%%%"+seed), "private key: illegal base64"},
		{"short private", KindClient, "keys", "foo", keyJSON("target", enc(pub), enc(priv.Seed()[:16])), "seed is 16 bytes"},
		{"identity without private", KindTarget, "identity", "key", `{"public":"` + enc(pub) + `"}`, "identity has no private key"},
		{"identity mismatched", KindTarget, "identity", "key", idJSON(enc(otherPub), seed), "does not match private key"},
		{"identity with role", KindTarget, "identity", "key", keyJSON("client", enc(pub), seed), "identity has a role"},
		{"name in client", KindClient, "identity", "name", "foo", "has no name"},
		{"bad name", KindTarget, "identity", "name", "a b", `record "name"`},
		{"unknown identity record", KindTarget, "identity", "other", "x", "unknown record"},
		{"gossip short", KindTarget, "cluster", "gossip_key", `{"key":"` + enc(make([]byte, 16)) + `"}`, "gossip key is 16 bytes"},
		{"gossip in client", KindClient, "cluster", "gossip_key", `{"key":"` + enc(make([]byte, 32)) + `"}`, "client keystore has no gossip_key"},
		{"bad seed", KindTarget, "cluster", "seeds", `["node1:7401","node2"]`, `seed "node2"`},
		{"seeds not a list", KindTarget, "cluster", "seeds", `{"a":1}`, `record "seeds"`},
		{"token in target", KindTarget, "cluster", "bootstrap_token", `{"id":"a","secret_sha256":"` + strings.Repeat("ab", 32) + `","subject":"u"}`, "target keystore has no bootstrap_token"},
		{"token bad hex", KindCluster, "cluster", "bootstrap_token", `{"id":"a","secret_sha256":"` + strings.Repeat("zz", 32) + `","subject":"u"}`, "secret_sha256"},
		{"token short hash", KindCluster, "cluster", "bootstrap_token", `{"id":"a","secret_sha256":"abcd","subject":"u"}`, "4 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKeystore(t, tt.kind)
			k.Close()
			db, err := bolt.Open(k.Path(), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error { return putAll(tx, tt.bucket, tt.rec, tt.value) })
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			wantNotKeystore(t, k.Path(), fmt.Sprintf("bucket %q", tt.bucket), fmt.Sprintf("record %q", tt.rec), tt.mention)
			_, err = Open(k.Path())
			if strings.Contains(err.Error(), seed) || strings.Contains(err.Error(), seed[:8]) {
				t.Errorf("error contains the private key: %v", err)
			}
		})
	}
}

func TestDuplicatePublicKeyOnDisk(t *testing.T) {
	k := newKeystore(t, KindClient)
	pub, _ := newKey(t)
	if err := k.AddKey(Key{Name: "a", Role: RoleTarget, Public: pub}); err != nil {
		t.Fatal(err)
	}
	k.Close()
	db, err := bolt.Open(k.Path(), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("keys"))
		return b.Put([]byte("b"), bytes.Clone(b.Get([]byte("a"))))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	wantNotKeystore(t, k.Path(), `record "b"`, "another name")
}

func TestUseAfterClose(t *testing.T) {
	k := newKeystore(t, KindClient)
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Keys(); err == nil || !strings.Contains(err.Error(), k.Path()) {
		t.Errorf("Keys after Close: err = %v, want an error naming the keystore", err)
	}
	if err := k.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestOpenCraftedMeta sets meta page fields to nonsense with valid
// checksums, as only a deliberately crafted file would have them.
func TestOpenCraftedMeta(t *testing.T) {
	valid := validFile(t, KindTarget)
	const ps = 4096
	m := parseMeta(valid)
	tests := []struct {
		name    string
		off     int // field offset within the meta
		val     uint64
		mention string
	}{
		{"page size 0", 8, 0, "page size 0 is not supported"},
		{"page size 512", 8, 512, "page size 512 is not supported"},
		{"page size 3000", 8, 3000, "page size 3000 is not supported"},
		{"page size 64k", 8, 1 << 16, ""},
		{"root on meta page", 16, 1, "page 1 is outside"},
		{"root past the end", 16, 1000, "page 1000 is outside"},
		{"root is the freelist", 16, m.freelist, "referenced twice"},
		{"freelist on meta page", 32, 0, "page 0 is outside"},
		{"freelist is the root", 32, m.root, "has type 0x"},
		{"freelist not synced", 32, noFreelist, "freelist not synced"},
		{"pgid huge", 40, 1 << 60, "truncated"},
		{"pgid 3", 40, 3, "outside the file's 3 pages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(valid)
			for _, p := range []int{0, ps} { // both meta pages alike
				meta := b[p+pageHeaderSize : p+pageHeaderSize+metaSize]
				if tt.off == 8 {
					ne.PutUint32(meta[8:], uint32(tt.val))
				} else {
					ne.PutUint64(meta[tt.off:], tt.val)
				}
				h := fnv.New64a()
				h.Write(meta[:56])
				ne.PutUint64(meta[56:], h.Sum64())
			}
			if !parseMeta(b).valid {
				t.Fatal("test did not produce a valid meta checksum")
			}
			var mention []string
			if tt.mention != "" {
				mention = append(mention, tt.mention)
			}
			wantNotKeystore(t, writeFile(t, b), mention...)
		})
	}
}
