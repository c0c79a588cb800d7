package sshca

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every error about bad input (a *FieldError).
var ErrInvalid = errors.New("invalid")

// ErrExpired is wrapped when a certificate cannot be issued because what
// allows it (the grant or the token) has already expired.
var ErrExpired = errors.New("expired")

// FieldError is bad input: Field names the request field ("public_key",
// "ttl", "principals", …), Msg says what is wrong with it. It unwraps to
// ErrInvalid, or to ErrExpired when the field is an expiry already past.
type FieldError struct {
	Field string
	Msg   string
	kind  error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func (e *FieldError) Unwrap() error { return e.kind }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...), kind: ErrInvalid}
}

func expired(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...), kind: ErrExpired}
}
