package keystore

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
	"unicode"

	"github.com/hpt-dev/hpt/events"
)

// Record encoding; see the package comment. Errors returned by the decoders
// describe what is wrong with a record without quoting it: a record may hold
// a private key.

var b64 = base64.StdEncoding.Strict()

func (r Role) valid() bool {
	return r == RoleTarget || r == RoleClient || r == RoleCluster
}

// validName reports whether name may name a key or a target. A target's
// name is also its name in the cluster's log, so the keystore takes the
// log's one grammar (events.CheckName): 1 to 253 letters, digits and
// . _ @ + -, starting with a letter or digit.
func validName(name string) error {
	return events.CheckName("key", name)
}

// fingerprint prints a public key for messages.
func fingerprint(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Sprintf("(invalid, %d bytes)", len(pub))
	}
	return b64.EncodeToString(pub)
}

// checkPrivate checks that priv is a well-formed Ed25519 private key: 64
// bytes, the second half being the public key derived from the first.
func checkPrivate(priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if !bytes.Equal(ed25519.NewKeyFromSeed(priv.Seed()), priv) {
		return errors.New("private key is inconsistent: its public half does not derive from its seed")
	}
	return nil
}

// decodeStrict decodes exactly one JSON value, refusing unknown fields, and
// rewrites errors that could quote the input.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return fmt.Errorf("malformed JSON at byte %d", syn.Offset)
		case errors.As(err, &typ):
			return fmt.Errorf("field %q: JSON %s where %s belongs", typ.Field, typ.Value, typ.Type)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("malformed JSON: truncated")
		}
		return fmt.Errorf("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("malformed JSON: trailing data")
	}
	return nil
}

// keyRecord is the JSON form of the identity and of a named key.
type keyRecord struct {
	Role    Role      `json:"role,omitempty"`
	Public  string    `json:"public"`
	Private string    `json:"private,omitempty"`
	Created time.Time `json:"created"`
}

// encodeKey encodes a named key (withRole) or the identity. It validates
// everything but the name.
func encodeKey(k Key, withRole bool) ([]byte, error) {
	if len(k.Public) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key is %d bytes, want %d", len(k.Public), ed25519.PublicKeySize)
	}
	rec := keyRecord{Public: b64.EncodeToString(k.Public), Created: k.Created.UTC()}
	if withRole {
		if !k.Role.valid() {
			return nil, fmt.Errorf("unknown role %q", k.Role)
		}
		rec.Role = k.Role
	}
	if k.Private != nil {
		if err := checkPrivate(k.Private); err != nil {
			return nil, err
		}
		if !bytes.Equal(k.Private.Public().(ed25519.PublicKey), k.Public) {
			return nil, errors.New("public key does not match private key")
		}
		rec.Private = b64.EncodeToString(k.Private.Seed())
	} else if !withRole {
		return nil, errors.New("identity has no private key")
	}
	return json.Marshal(rec)
}

// decodeKey decodes a named key (withRole; Name is left empty) or the
// identity, which must hold a private key.
func decodeKey(data []byte, withRole bool) (Key, error) {
	var rec keyRecord
	if err := decodeStrict(data, &rec); err != nil {
		return Key{}, err
	}
	var k Key
	if withRole {
		if !rec.Role.valid() {
			return Key{}, fmt.Errorf("unknown role %q", rec.Role)
		}
		k.Role = rec.Role
	} else if rec.Role != "" {
		return Key{}, errors.New("identity has a role")
	}
	pub, err := b64.DecodeString(rec.Public)
	if err != nil {
		return Key{}, fmt.Errorf("public key: %v", err)
	}
	if len(pub) != ed25519.PublicKeySize {
		return Key{}, fmt.Errorf("public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	k.Public = pub
	if rec.Private != "" {
		seed, err := b64.DecodeString(rec.Private)
		if err != nil {
			return Key{}, fmt.Errorf("private key: %v", err)
		}
		if len(seed) != ed25519.SeedSize {
			return Key{}, fmt.Errorf("private key seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
		}
		k.Private = ed25519.NewKeyFromSeed(seed)
		if !bytes.Equal(k.Private.Public().(ed25519.PublicKey), pub) {
			return Key{}, errors.New("public key does not match private key")
		}
	} else if !withRole {
		return Key{}, errors.New("identity has no private key")
	}
	k.Created = rec.Created
	return k, nil
}

type gossipRecord struct {
	Key string `json:"key"`
}

const gossipKeySize = 32

func encodeGossipKey(key []byte) ([]byte, error) {
	if len(key) != gossipKeySize {
		return nil, fmt.Errorf("gossip key is %d bytes, want %d (AES-256)", len(key), gossipKeySize)
	}
	return json.Marshal(gossipRecord{Key: b64.EncodeToString(key)})
}

func decodeGossipKey(data []byte) ([]byte, error) {
	var rec gossipRecord
	if err := decodeStrict(data, &rec); err != nil {
		return nil, err
	}
	key, err := b64.DecodeString(rec.Key)
	if err != nil {
		return nil, fmt.Errorf("gossip key: %v", err)
	}
	if len(key) != gossipKeySize {
		return nil, fmt.Errorf("gossip key is %d bytes, want %d (AES-256)", len(key), gossipKeySize)
	}
	return key, nil
}

// validSeed checks a seed node address: host:port with a non-empty host and
// a port in 1-65535.
func validSeed(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("seed %q: %v (want host:port)", s, err)
	}
	if host == "" {
		return fmt.Errorf("seed %q: empty host (want host:port)", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("seed %q: port %q is not a number in 1-65535", s, port)
	}
	return nil
}

func encodeSeeds(seeds []string) ([]byte, error) {
	for _, s := range seeds {
		if err := validSeed(s); err != nil {
			return nil, err
		}
	}
	return json.Marshal(seeds)
}

func decodeSeeds(data []byte) ([]string, error) {
	var seeds []string
	if err := decodeStrict(data, &seeds); err != nil {
		return nil, err
	}
	for _, s := range seeds {
		if err := validSeed(s); err != nil {
			return nil, err
		}
	}
	return seeds, nil
}

type tokenRecord struct {
	ID           string `json:"id"`
	SecretSHA256 string `json:"secret_sha256"`
	Subject      string `json:"subject"`
}

// validText checks a token id or subject: 1 to 256 printable characters
// without spaces.
func validText(field, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", field)
	}
	if len(s) > 256 {
		return fmt.Errorf("%s is %d bytes long, at most 256 allowed", field, len(s))
	}
	for _, r := range s {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%s %q: character %q not allowed", field, s, r)
		}
	}
	return nil
}

func validToken(t BootstrapToken) error {
	if err := validText("token id", t.ID); err != nil {
		return err
	}
	if err := validText("subject", t.Subject); err != nil {
		return err
	}
	if t.SecretSHA256 == ([32]byte{}) {
		return errors.New("secret hash is all zero")
	}
	return nil
}

func encodeToken(t BootstrapToken) ([]byte, error) {
	if err := validToken(t); err != nil {
		return nil, err
	}
	return json.Marshal(tokenRecord{ID: t.ID, SecretSHA256: hex.EncodeToString(t.SecretSHA256[:]), Subject: t.Subject})
}

func decodeToken(data []byte) (BootstrapToken, error) {
	var rec tokenRecord
	if err := decodeStrict(data, &rec); err != nil {
		return BootstrapToken{}, err
	}
	t := BootstrapToken{ID: rec.ID, Subject: rec.Subject}
	if len(rec.SecretSHA256) != 2*len(t.SecretSHA256) {
		return BootstrapToken{}, fmt.Errorf("secret_sha256 is %d hex digits, want %d", len(rec.SecretSHA256), 2*len(t.SecretSHA256))
	}
	if _, err := hex.Decode(t.SecretSHA256[:], []byte(rec.SecretSHA256)); err != nil {
		return BootstrapToken{}, fmt.Errorf("secret_sha256: %v", err)
	}
	if err := validToken(t); err != nil {
		return BootstrapToken{}, err
	}
	return t, nil
}

// parseVersion parses the format version: a decimal number without sign or
// leading zeros.
func parseVersion(v []byte) (int, error) {
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 0 || strconv.Itoa(n) != string(v) {
		return 0, fmt.Errorf("is %s, want a decimal number", quote(v))
	}
	return n, nil
}
