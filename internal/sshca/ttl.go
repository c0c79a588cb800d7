package sshca

import (
	"time"
)

// Backdate is how far before "now" a user certificate becomes valid, so
// that a destination whose clock is a little behind the node's accepts it.
const Backdate = time.Minute

// TTLPolicy decides how long a user certificate lives.
type TTLPolicy struct {
	// Default is the lifetime when the client asks for none. Default 1h.
	Default time.Duration
	// Max is the longest lifetime a client may ask for. Default 12h.
	Max time.Duration
}

// DefaultTTLPolicy returns the policy of SPEC §11: 1 h by default, 12 h at
// most.
func DefaultTTLPolicy() TTLPolicy {
	return TTLPolicy{Default: time.Hour, Max: 12 * time.Hour}
}

// Validity returns the validity of a certificate issued at now for the
// requested lifetime (0: the policy's default): from now−Backdate until
// now+TTL, cut short at the grant's expiry and the token's (a zero time:
// that one does not expire), because a credential never outlives what
// allowed it. A requested TTL that is negative or above Max is refused
// (field "ttl"); a grant or token already expired at now is refused with
// ErrExpired (field "grant_expiry" or "token_expiry").
func (p TTLPolicy) Validity(now time.Time, requested time.Duration, grantExpiry, tokenExpiry time.Time) (validAfter, validBefore time.Time, err error) {
	if p.Default <= 0 || p.Max <= 0 || p.Default > p.Max {
		return time.Time{}, time.Time{}, invalid("ttl_policy", "default %s and max %s must be positive with default <= max", p.Default, p.Max)
	}
	ttl := requested
	switch {
	case requested < 0:
		return time.Time{}, time.Time{}, invalid("ttl", "%s is negative", requested)
	case requested == 0:
		ttl = p.Default
	case requested > p.Max:
		return time.Time{}, time.Time{}, invalid("ttl", "%s is longer than the maximum %s", requested, p.Max)
	}
	validBefore = now.Add(ttl)
	for _, c := range []struct {
		field string
		at    time.Time
	}{{"grant_expiry", grantExpiry}, {"token_expiry", tokenExpiry}} {
		if c.at.IsZero() {
			continue
		}
		if !c.at.After(now) {
			return time.Time{}, time.Time{}, expired(c.field, "expired at %s", c.at.UTC().Format(time.RFC3339))
		}
		if c.at.Before(validBefore) {
			validBefore = c.at
		}
	}
	return now.Add(-Backdate), validBefore, nil
}
