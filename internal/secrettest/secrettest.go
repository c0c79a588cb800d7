// Package secrettest finds secrets where they must never be: tests give
// it a secret and the bytes that must not contain it (logs, events,
// snapshots, files, formatted values), and it looks for the secret in
// every encoding a leak is likely to take.
package secrettest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// Needles are the byte strings a secret could leak as, by description.
type Needles map[string][]byte

// Bytes adds the forms of a raw secret named name: the bytes, hex (both
// cases), decimal as fmt prints a []byte, and base64 (standard and URL
// alphabets) at each of the three alignments the secret can have inside a
// longer encoded stream (so an OpenSSH or PKCS#8 PEM holding it is found
// too). secret should be at least 16 bytes.
func (n Needles) Bytes(name string, secret []byte) Needles {
	n[name] = secret
	n[name+" hex"] = []byte(hex.EncodeToString(secret))
	n[name+" HEX"] = []byte(strings.ToUpper(hex.EncodeToString(secret)))
	n[name+" decimal"] = []byte(strings.Trim(fmt.Sprint(secret), "[]"))
	for shift := range 3 {
		part := secret[shift:]
		part = part[:len(part)/3*3]
		n[fmt.Sprintf("%s base64 (offset %d)", name, shift)] = []byte(base64.StdEncoding.EncodeToString(part))
		n[fmt.Sprintf("%s base64url (offset %d)", name, shift)] = []byte(base64.URLEncoding.EncodeToString(part))
	}
	return n
}

// Ed25519 adds the forms of a private key: its seed and its 64-byte form
// (seed and public half), and any PEM private key block at all.
func (n Needles) Ed25519(name string, priv ed25519.PrivateKey) Needles {
	n.Bytes(name+" seed", priv.Seed())
	n.Bytes(name+" private key", priv)
	n["a PEM private key"] = []byte("PRIVATE KEY-----")
	return n
}

// Text adds a secret that only leaks verbatim (a token).
func (n Needles) Text(name, secret string) Needles {
	n[name] = []byte(secret)
	return n
}

// Find returns the descriptions of the needles in haystack.
func (n Needles) Find(haystack []byte) []string {
	var found []string
	for what, b := range n {
		if bytes.Contains(haystack, b) {
			found = append(found, what)
		}
	}
	return found
}

// Check fails t for each needle found in haystack, which is where.
func (n Needles) Check(t testing.TB, where string, haystack []byte) {
	t.Helper()
	for _, what := range n.Find(haystack) {
		t.Errorf("%s contains the %s", where, what)
	}
}
