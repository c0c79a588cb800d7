package keystore

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzDecodeKey feeds arbitrary bytes to every record decoder. None may
// panic, and whatever one accepts must encode and decode to the same value.
func FuzzDecodeKey(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	for _, k := range []Key{{Role: RoleTarget, Public: pub}, {Role: RoleClient, Public: pub, Private: priv}} {
		b, err := encodeKey(k, true)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, _ := encodeKey(Key{Public: pub, Private: priv}, false)
	f.Add(b)
	b, _ = encodeGossipKey(make([]byte, 32))
	f.Add(b)
	b, _ = encodeSeeds([]string{"a:1", "[::1]:7401"})
	f.Add(b)
	b, _ = encodeToken(BootstrapToken{ID: "id", SecretSHA256: [32]byte{1}, Subject: "user:a"})
	f.Add(b)
	f.Add([]byte(`{"public":"","created":"2025-01-01T00:00:00+05:30"}`))
	f.Add([]byte(`nul`))

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, withRole := range []bool{true, false} {
			k, err := decodeKey(data, withRole)
			if err != nil {
				continue
			}
			enc, err := encodeKey(k, withRole)
			if err != nil {
				t.Fatalf("decoded key does not encode: %v", err)
			}
			k2, err := decodeKey(enc, withRole)
			if err != nil {
				t.Fatalf("re-encoded key does not decode: %v", err)
			}
			if err := sameKey(k2, k); err != nil {
				t.Fatalf("round trip changed the key: %v", err)
			}
		}
		if g, err := decodeGossipKey(data); err == nil {
			enc, err := encodeGossipKey(g)
			if err != nil {
				t.Fatal(err)
			}
			if g2, err := decodeGossipKey(enc); err != nil || !bytes.Equal(g, g2) {
				t.Fatalf("gossip key round trip: %v", err)
			}
		}
		if s, err := decodeSeeds(data); err == nil {
			enc, err := encodeSeeds(s)
			if err != nil {
				t.Fatal(err)
			}
			if s2, err := decodeSeeds(enc); err != nil || !slices.Equal(s, s2) {
				t.Fatalf("seeds round trip: %q -> %q, %v", s, s2, err)
			}
		}
		if tok, err := decodeToken(data); err == nil {
			enc, err := encodeToken(tok)
			if err != nil {
				t.Fatal(err)
			}
			if tok2, err := decodeToken(enc); err != nil || tok2 != tok {
				t.Fatalf("token round trip: %v", err)
			}
		}
		if v, err := parseVersion(data); err == nil && v < 0 {
			t.Fatalf("parseVersion = %d", v)
		}
	})
}

// FuzzOpen writes arbitrary bytes to a file and opens it. Open must fail
// cleanly with ErrNotKeystore, and never because bbolt panicked (checkBolt
// must refuse the file first); a file it accepts must be readable, writable,
// and still accepted after bbolt has written to it.
func FuzzOpen(f *testing.F) {
	for _, kind := range []Kind{KindClient, KindTarget, KindCluster} {
		f.Add(validFile(f, kind))
	}
	valid := validFile(f, KindTarget)
	f.Add(valid[:8192])
	f.Add(valid[:4096*3+100])
	f.Add([]byte{})
	f.Add(make([]byte, 8192))

	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "k.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		k, err := Open(path)
		if err != nil {
			checkClean(t, err)
			return
		}
		defer k.Close()
		readAll(t, k)

		// Write through bbolt, then the file must still pass every check.
		pub, _, _ := ed25519.GenerateKey(nil)
		if role := rolesFor(k.Kind()); len(role) > 0 {
			if err := k.AddKey(Key{Name: "fuzz-new-key", Role: role[0], Public: pub}); err != nil && !errors.Is(err, ErrExists) {
				t.Fatalf("AddKey on an accepted file: %v", err)
			}
			if err := k.RemoveKey("fuzz-new-key"); err != nil {
				t.Fatalf("RemoveKey on an accepted file: %v", err)
			}
		}
		if _, _, err := k.EnsureIdentity(); err != nil {
			t.Fatalf("EnsureIdentity on an accepted file: %v", err)
		}
		if err := k.Close(); err != nil {
			t.Fatal(err)
		}
		k, err = Open(path)
		if err != nil {
			t.Fatalf("file accepted, written by bbolt, then refused: %v", err)
		}
		defer k.Close()
		readAll(t, k)
	})
}

// checkClean fails unless err is a clean ErrNotKeystore.
func checkClean(t *testing.T, err error) {
	t.Helper()
	var pe *panicError
	if errors.As(err, &pe) {
		t.Fatalf("bbolt panicked on a file checkBolt accepted: %v", err)
	}
	if !errors.Is(err, ErrNotKeystore) {
		t.Fatalf("error does not wrap ErrNotKeystore: %v", err)
	}
}

// readAll reads every record of an open keystore: Open validated them, so
// nothing may fail but for absence or the kind.
func readAll(t *testing.T, k *Keystore) {
	t.Helper()
	ok := func(what string, err error, allowed ...error) {
		t.Helper()
		if err == nil {
			return
		}
		for _, a := range allowed {
			if errors.Is(err, a) {
				return
			}
		}
		t.Fatalf("%s on an accepted file: %v", what, err)
	}
	_, err := k.Identity()
	ok("Identity", err, ErrNoIdentity)
	_, err = k.Name()
	ok("Name", err)
	keys, err := k.Keys()
	ok("Keys", err)
	for _, key := range keys {
		got, err := k.Key(key.Name)
		ok("Key", err)
		byPub, err := k.KeyByPublic(key.Public)
		ok("KeyByPublic", err)
		if got.Name != key.Name || byPub.Name != key.Name {
			t.Fatalf("key %q found as %q and %q", key.Name, got.Name, byPub.Name)
		}
	}
	_, err = k.GossipKey()
	ok("GossipKey", err, ErrNotFound)
	_, err = k.Seeds()
	ok("Seeds", err)
	_, err = k.BootstrapToken()
	ok("BootstrapToken", err, ErrNotFound, ErrWrongKind)
}
