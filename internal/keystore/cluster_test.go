package keystore

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestWriteClusterRoundTrip(t *testing.T) {
	s, err := NewClusterSecrets()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cluster.keystore.db")
	if err := WriteCluster(path, s); err != nil {
		t.Fatal(err)
	}
	if err := WriteCluster(path, s); err == nil {
		t.Fatal("WriteCluster overwrote an existing keystore")
	}
	ks, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if ks.Kind() != KindCluster {
		t.Fatalf("kind = %s, want cluster", ks.Kind())
	}
	id, err := ks.Identity()
	if err != nil || !id.Equal(s.Identity) {
		t.Fatalf("identity = %v, %v; want the generated key", id, err)
	}
	g, err := ks.GossipKey()
	if err != nil || !bytes.Equal(g, s.Gossip) {
		t.Fatalf("gossip key = %x, %v; want %x", g, err, s.Gossip)
	}
	bt, err := ks.BootstrapToken()
	if err != nil || bt != s.BootstrapToken() {
		t.Fatalf("bootstrap token = %+v, %v; want %+v", bt, err, s.BootstrapToken())
	}
	if bytes.Contains([]byte(bt.ID), []byte(s.Admin.Secret())) {
		t.Fatal("the stored record contains the secret")
	}
}
