package sshca

import (
	"bytes"
	"crypto/rsa"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Limits on the client keys ParseClientKey accepts.
const (
	// MaxClientKeyLen bounds the authorized_keys line a client sends; an
	// RSA-16384 key with a long comment fits.
	MaxClientKeyLen = 16 << 10
	// MinRSABits is the smallest RSA modulus certified, as OpenSSH's own
	// minimum for new keys and Teleport's.
	MinRSABits = 2048
	// MaxRSABits bounds the RSA modulus, as OpenSSH does (SSH_RSA_MAXIMUM_MODULUS_SIZE).
	MaxRSABits = 16384
)

// acceptedKeyTypes are the key types certified: the ones OpenSSH and
// Teleport accept. DSA (broken), security-key types (sk-*: the hpt client
// cannot use them yet) and Go-only types (ML-DSA, unknown to OpenSSH) are
// refused.
var acceptedKeyTypes = map[string]bool{
	ssh.KeyAlgoED25519:  true,
	ssh.KeyAlgoECDSA256: true,
	ssh.KeyAlgoECDSA384: true,
	ssh.KeyAlgoECDSA521: true,
	ssh.KeyAlgoRSA:      true,
}

// ParseClientKey parses the public key a client asks to have certified:
// exactly one key in authorized_keys format ("ssh-ed25519 AAAA… [comment]"),
// without options, of an accepted type (Ed25519, ECDSA P-256/384/521, RSA of
// 2048 to 16384 bits), and not itself a certificate. The comment is
// ignored. Errors name the field "public_key".
func ParseClientKey(b []byte) (ssh.PublicKey, error) {
	if len(b) == 0 {
		return nil, invalid("public_key", "empty")
	}
	if len(b) > MaxClientKeyLen {
		return nil, invalid("public_key", "%d bytes, at most %d allowed", len(b), MaxClientKeyLen)
	}
	line := bytes.TrimRight(b, "\r\n")
	if i := bytes.IndexAny(line, "\r\n"); i >= 0 {
		return nil, invalid("public_key", "more than one line; send exactly one key")
	}
	if s := strings.TrimSpace(string(line)); s == "" || strings.HasPrefix(s, "#") {
		return nil, invalid("public_key", "no key (empty or a comment)")
	}
	pub, _, options, rest, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return nil, invalid("public_key", "not an OpenSSH public key (authorized_keys format): %v", err)
	}
	if len(options) > 0 || len(bytes.TrimSpace(rest)) > 0 {
		return nil, invalid("public_key", "authorized_keys options are not accepted; send the key alone")
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, invalid("public_key", "is a certificate (%s); send the plain public key", pub.Type())
	}
	if err := checkKeyType("public_key", pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// checkKeyType accepts the key types certified and RSA keys of an accepted
// size.
func checkKeyType(field string, pub ssh.PublicKey) error {
	if !acceptedKeyTypes[pub.Type()] {
		return invalid(field, "key type %q is not accepted (use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa of at least %d bits)", pub.Type(), MinRSABits)
	}
	if pub.Type() != ssh.KeyAlgoRSA {
		return nil
	}
	var rk *rsa.PublicKey
	if ck, ok := pub.(ssh.CryptoPublicKey); ok {
		rk, _ = ck.CryptoPublicKey().(*rsa.PublicKey)
	}
	if rk == nil {
		return invalid(field, "RSA key cannot be inspected")
	}
	if n := rk.N.BitLen(); n < MinRSABits || n > MaxRSABits {
		return invalid(field, "RSA key has %d bits, want %d to %d", n, MinRSABits, MaxRSABits)
	}
	return nil
}
