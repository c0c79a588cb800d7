package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/internal/secretvars"
)

// The stash keeps only secret vars that match their digest, within its
// bound, and frees what it drops.
func TestSecretStash(t *testing.T) {
	key, err := secretvars.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{"pw": strings.Repeat("x", 100)}
	digest := secretvars.Digest(key, "j-1", values)
	now := time.Unix(1, 0)
	s := newSecretStash(400) // two jobs of 166 bytes
	if err := s.put("j-1", key, secretvars.Digest(key, "j-2", values), values, now); !errors.Is(err, secretvars.ErrInvalid) {
		t.Fatalf("put with another job's digest: %v, want ErrInvalid", err)
	}
	if err := s.put("j-1", key, digest, map[string]string{"pw": "other"}, now); !errors.Is(err, secretvars.ErrInvalid) || strings.Contains(err.Error(), "other") {
		t.Fatalf("put of other values: %v, want ErrInvalid without the value", err)
	}
	if err := s.put("j-1", key, digest, nil, now); err == nil {
		t.Fatal("put of no secret vars accepted")
	}
	for range 2 { // a second put of one job replaces the first
		if err := s.put("j-1", key, digest, values, now); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.get("j-1"); st == nil || st.values["pw"] != values["pw"] {
		t.Fatalf("get: %v", st)
	}
	for i, id := range []string{"j-2", "j-3"} {
		err := s.put(id, key, secretvars.Digest(key, id, values), values, now)
		if full := i == 1; full != errors.Is(err, errStashFull) {
			t.Fatalf("put %s: %v (full %v)", id, err, full)
		}
	}
	s.drop("j-1")
	if err := s.put("j-3", key, secretvars.Digest(key, "j-3", values), values, now); err != nil {
		t.Fatalf("put after a drop: %v", err)
	}
	if got := len(s.held()); got != 2 || s.get("j-1") != nil {
		t.Fatalf("held %d jobs, j-1 %v", got, s.get("j-1"))
	}
}
