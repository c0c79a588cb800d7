package sshca

import (
	"errors"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzParseClientKey: client-sent keys either parse into an accepted,
// non-certificate key that round-trips, or fail with a *FieldError naming
// public_key; never a panic.
func FuzzParseClientKey(f *testing.F) {
	f.Add([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb2Pf2y7HHkEDxUm2qiGf2Vq8e5dh0rD8nNq8tFqZ3m alice\n"))
	f.Add([]byte("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBA==\n"))
	f.Add([]byte(`command="id" ssh-ed25519 AAAA`))
	f.Add([]byte("ssh-ed25519-cert-v01@openssh.com AAAA\n"))
	f.Add([]byte("\n\n# c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := ParseClientKey(b)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "public_key" || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not a public_key FieldError", err)
			}
			return
		}
		if _, ok := pub.(*ssh.Certificate); ok || !acceptedKeyTypes[pub.Type()] {
			t.Fatalf("accepted %s", pub.Type())
		}
		again, err := ParseClientKey(ssh.MarshalAuthorizedKey(pub))
		if err != nil || string(again.Marshal()) != string(pub.Marshal()) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}
