package sshclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// ErrUntrustedHost: the host did not prove itself with a valid certificate
// of the cluster's host CA. The error wrapping it says what it presented.
var ErrUntrustedHost = errors.New("host not verified by the cluster's host CA")

// Options tune a connection; the zero value is the safe default.
type Options struct {
	// InsecureHostKey accepts whatever key the host presents: no host
	// verification at all. For a host not (yet) certified by the cluster.
	InsecureHostKey bool
	// HostPrincipal is the name the host certificate must carry. Default:
	// the host part of the address dialled.
	HostPrincipal string
	// ForcePTY requests a pty for Run and Shell even when stdin is not a
	// terminal (ssh -t).
	ForcePTY bool
	// Term is the TERM of a pty. Default "xterm-256color".
	Term string
	// Dial opens the connection. Default: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock host certificates are judged by. Default time.Now.
	Now func() time.Time
}

// Client is a connection to one SSH server. Close it when done.
type Client struct {
	c    *ssh.Client
	opts Options
}

// Dial connects to addr (host:port) as login, authenticating with signer
// (a certificate signer, ssh.NewCertSigner) and verifying the host by
// hostCA, which may be nil only with Options.InsecureHostKey. ctx bounds
// the connection and handshake.
func Dial(ctx context.Context, addr, login string, signer ssh.Signer, hostCA ssh.PublicKey, opts Options) (*Client, error) {
	if signer == nil {
		return nil, errors.New("ssh: no signer to authenticate with")
	}
	if hostCA == nil && !opts.InsecureHostKey {
		return nil, fmt.Errorf("ssh %s: no host CA to verify the host by: %w", addr, ErrUntrustedHost)
	}
	principal := opts.HostPrincipal
	if principal == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("ssh: address %q: want HOST:PORT: %w", addr, err)
		}
		principal = host
	}
	if opts.Dial == nil {
		var d net.Dialer
		opts.Dial = d.DialContext
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Term == "" {
		opts.Term = "xterm-256color"
	}
	conn, err := opts.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssh: dial %s: %w", addr, err)
	}
	// The handshake has no context of its own: a deadline bounds it and
	// cancellation closes the connection under it.
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              login,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hostKeyCallback(hostCA, principal, opts),
		HostKeyAlgorithms: hostKeyAlgorithms,
	})
	if !stop() {
		if cc != nil {
			cc.Close()
		}
		conn.Close()
		return nil, fmt.Errorf("ssh %s: %w", addr, ctx.Err())
	}
	if err != nil {
		conn.Close()
		var he *hostError
		if errors.As(err, &he) {
			return nil, he
		}
		return nil, fmt.Errorf("ssh %s@%s: %w", login, addr, err)
	}
	conn.SetDeadline(time.Time{})
	return &Client{c: ssh.NewClient(cc, chans, reqs), opts: opts}, nil
}

// hostKeyAlgorithms asks for a certificate first, so that a host with one
// presents it; a host without one presents its plain key, which is
// refused with an error that says so rather than a bare "no common
// algorithm".
var hostKeyAlgorithms = []string{
	ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// hostError is a host refused by hostKeyCallback.
type hostError struct{ msg string }

func (e *hostError) Error() string { return e.msg }
func (e *hostError) Unwrap() error { return ErrUntrustedHost }

func hostKeyCallback(hostCA ssh.PublicKey, principal string, opts Options) ssh.HostKeyCallback {
	if opts.InsecureHostKey {
		return ssh.InsecureIgnoreHostKey()
	}
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool { return bytes.Equal(auth.Marshal(), hostCA.Marshal()) },
		Clock:           opts.Now,
	}
	return func(addr string, _ net.Addr, key ssh.PublicKey) error {
		refuse := func(format string, args ...any) error {
			return &hostError{fmt.Sprintf("host %s presented ", addr) + fmt.Sprintf(format, args...) + "; --insecure-host-key skips this check"}
		}
		cert, ok := key.(*ssh.Certificate)
		if !ok {
			return refuse("a plain %s key, not a certificate signed by the cluster's host CA", key.Type())
		}
		if cert.CertType != ssh.HostCert {
			return refuse("a user certificate as its host key")
		}
		if !checker.IsHostAuthority(cert.SignatureKey, addr) {
			return refuse("a certificate signed by another CA (%s), not by the cluster's host CA (%s)",
				ssh.FingerprintSHA256(cert.SignatureKey), ssh.FingerprintSHA256(hostCA))
		}
		if err := checker.CheckCert(principal, cert); err != nil {
			return refuse("a host certificate (key id %q, principals %q) that does not hold for %q: %v", cert.KeyId, cert.ValidPrincipals, principal, err)
		}
		return nil
	}
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// Run runs cmd on the host with the given streams (nil stdin: none) and
// returns its exit status: 0, the status it exited with, or 128+N when a
// signal N ended it (as a shell reports it). err is for everything else:
// the session failed, ctx ended (the session is then closed), or the host
// sent no status. A pty is requested only with Options.ForcePTY.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return c.run(ctx, stdin, stdout, stderr, c.opts.ForcePTY, func(s *ssh.Session) error { return s.Start(cmd) })
}

// Shell starts the login shell with a pty when stdin is a terminal (in
// raw mode until Shell returns) or with Options.ForcePTY, and returns as
// Run does once it exits.
func (c *Client) Shell(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	_, tty := terminal(stdin)
	return c.run(ctx, stdin, stdout, stderr, tty || c.opts.ForcePTY, (*ssh.Session).Shell)
}

func (c *Client) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, pty bool, start func(*ssh.Session) error) (int, error) {
	sess, err := c.c.NewSession()
	if err != nil {
		return -1, fmt.Errorf("ssh: open session: %w", err)
	}
	defer sess.Close()
	if pty {
		restore, err := c.requestPTY(ctx, sess, stdin)
		if err != nil {
			return -1, err
		}
		defer restore()
	}
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	if err := start(sess); err != nil {
		return -1, fmt.Errorf("ssh: start: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	err = sess.Wait()
	if ctx.Err() != nil {
		return -1, fmt.Errorf("ssh: %w", ctx.Err())
	}
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		return exit.ExitStatus(), nil
	case errors.As(err, &missing):
		return -1, errors.New("ssh: the remote command ended without an exit status")
	}
	return -1, fmt.Errorf("ssh: %w", err)
}

// requestPTY asks for a pty sized as stdin's terminal (80x24 when stdin
// is none) and, for a terminal, puts it in raw mode and passes window
// size changes on until the returned restore is called.
func (c *Client) requestPTY(ctx context.Context, sess *ssh.Session, stdin io.Reader) (restore func(), err error) {
	fd, tty := terminal(stdin)
	w, h := 80, 24
	if tty {
		if tw, th, err := term.GetSize(fd); err == nil {
			w, h = tw, th
		}
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	if err := sess.RequestPty(c.opts.Term, h, w, modes); err != nil {
		return nil, fmt.Errorf("ssh: request a pty: %w", err)
	}
	if !tty {
		return func() {}, nil
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("ssh: raw mode: %w", err)
	}
	stopWatch := watchWindow(ctx, fd, sess)
	return func() {
		stopWatch()
		term.Restore(fd, old)
	}, nil
}

// terminal reports whether r is a terminal, and its descriptor.
func terminal(r io.Reader) (int, bool) {
	f, ok := r.(*os.File)
	if !ok || f == nil {
		return -1, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}
