// Package sshca is hpt's SSH certificate authority: it validates the public
// keys clients send, issues OpenSSH user and host certificates, computes how
// long a user certificate may live, writes OpenSSH key revocation lists
// (KRLs), and renders the sshd drop-in and principals files a connector
// keeps on its host.
//
// Everything here is pure except the file writers, which write atomically
// (a temporary file renamed over the target) so that sshd, which reads the
// principals files, the CA keys and the KRL on every authentication, never
// sees a half-written file. The package reads no clock: callers pass "now".
//
// Errors for bad input are *FieldError values naming the offending field;
// errors.Is(err, ErrInvalid) holds for all of them.
package sshca
