// Package auth authenticates API callers and authorizes every RPC.
//
// Tokens are "sk_" followed by 44 base62 characters: a 12-character public
// id and a 32-character secret (about 190 bits). The state holds only the id
// and the SHA-256 of the secret; a high-entropy secret needs no slow hash.
// Secrets are compared in constant time and never logged, stored or put in
// an error.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

const (
	tokenPrefix = "sk_"
	// IDLen and SecretLen are the lengths of a token's two parts.
	IDLen     = 12
	SecretLen = 32
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ErrBadToken is returned for a string that is not an hpt token. Its text
// never includes the token.
var ErrBadToken = errors.New("malformed token: want sk_ followed by 44 letters and digits")

// A Token is a parsed API token. Secret returns the usable form; String and
// %v print only the public id, so a token that reaches a log line by
// accident does not leak.
type Token struct {
	ID     string
	secret string
}

// NewToken mints a token from crypto/rand.
func NewToken() (Token, error) {
	s, err := randomBase62(IDLen + SecretLen)
	if err != nil {
		return Token{}, fmt.Errorf("mint token: %w", err)
	}
	return Token{ID: s[:IDLen], secret: s[IDLen:]}, nil
}

func randomBase62(n int) (string, error) {
	max := big.NewInt(int64(len(base62)))
	var b strings.Builder
	for range n {
		i, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		b.WriteByte(base62[i.Int64()])
	}
	return b.String(), nil
}

// ParseToken splits a token into id and secret.
func ParseToken(s string) (Token, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), tokenPrefix)
	if !ok || len(rest) != IDLen+SecretLen {
		return Token{}, ErrBadToken
	}
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(base62, rest[i]) < 0 {
			return Token{}, ErrBadToken
		}
	}
	return Token{ID: rest[:IDLen], secret: rest[IDLen:]}, nil
}

// Secret returns the full token, to be shown once to the user it was made
// for and sent as a bearer credential.
func (t Token) Secret() string { return tokenPrefix + t.ID + t.secret }

// String returns the token with its secret part elided.
func (t Token) String() string { return tokenPrefix + t.ID + "…" }

// SecretSHA256 is what the state stores.
func (t Token) SecretSHA256() [32]byte { return sha256.Sum256([]byte(t.secret)) }

// GoString keeps the secret out of %#v.
func (t Token) GoString() string { return fmt.Sprintf("auth.Token{ID: %q}", t.ID) }
