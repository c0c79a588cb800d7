package keystore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// CreateTarget writes identity, name and what trust adds; when anything
// fails, no file is left behind.
func TestCreateTarget(t *testing.T) {
	dir := t.TempDir()
	_, priv := newKey(t)
	clientPub, _ := newKey(t)
	path := filepath.Join(dir, "web-1.keystore.db")
	if err := CreateTarget(path, "web-1", priv, func(k *Keystore) error {
		return k.AddKey(Key{Name: "client", Role: RoleClient, Public: clientPub})
	}); err != nil {
		t.Fatal(err)
	}
	k, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	name, _ := k.Name()
	id, _ := k.Identity()
	_, kerr := k.Key("client")
	k.Close()
	if name != "web-1" || !id.Equal(priv) || kerr != nil {
		t.Fatalf("keystore holds name %q, identity ok %v, client key %v", name, id.Equal(priv), kerr)
	}

	boom := errors.New("boom")
	bad := filepath.Join(dir, "web-2.keystore.db")
	if err := CreateTarget(bad, "web-2", priv, func(*Keystore) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing trust: %v, want it returned", err)
	}
	if err := CreateTarget(filepath.Join(dir, "x.db"), "_web", priv, nil); err == nil {
		t.Fatal("a bad name was accepted")
	}
	for _, p := range []string{bad, filepath.Join(dir, "x.db")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind after a failure: %v", p, err)
		}
	}
}
