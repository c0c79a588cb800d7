// Package sshdtest runs the real OpenSSH server (Debian's openssh-server)
// for tests: `sshd -D -e -f CONFIG` on a free loopback port, with its
// config, host key and drop-in directory under the test's temporary
// directory, stopped (and waited for) when the test ends.
//
// sshd must run as root (it changes to the logged-in user), so the helpers
// need root and the sshd binary through internal/testenv: under CI=true
// their absence fails the test.
package sshdtest

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/internal/testenv"
	"github.com/hpt-dev/hpt/internal/testlog"
)

// Options configure a server.
type Options struct {
	// HostKey is sshd's host key; nil generates one.
	HostKey ed25519.PrivateKey
	// Config is placed near the top of sshd_config, after the Include of
	// the drop-in directory and before the harness's defaults. sshd keeps
	// the first value of most keywords, so it overrides the defaults.
	Config string
}

// Server is one sshd, prepared by New and started by Start.
type Server struct {
	// Dir holds everything of this server (config, host key, drop-ins).
	// It and its parent are world-readable: sshd reads AuthorizedKeysFile
	// and AuthorizedPrincipalsFile as the logging-in user.
	Dir string
	// DropInDir is included by the config (DropInDir/*.conf), as
	// /etc/ssh/sshd_config.d is by Debian's sshd_config.
	DropInDir string
	// ConfigPath is the sshd_config.
	ConfigPath string
	// HostKeyPath is the private host key; HostKey signs as it.
	HostKeyPath string
	HostKey     ssh.Signer
	// Addr is 127.0.0.1:PORT once started; Port its port.
	Addr string
	Port int

	// Opts are the options given to New; a test may change Config until
	// Start (e.g. to name files under Dir).
	Opts Options

	sshd string
	log  testlog.Buffer
	done chan struct{}
	cmd  *exec.Cmd
}

// Start prepares and starts a server: New, then Start.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(t, opts)
	s.Start(t)
	return s
}

// New prepares a server without starting it, so that a test can write
// drop-ins (or a host certificate for HostKey) first.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	testenv.NeedRoot(t)
	sshd := testenv.NeedTool(t, "sshd", "openssh-server")
	// sshd's privilege separation directory; Debian's unit creates it.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("mkdir /run/sshd: %v", err)
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{
		Dir:         dir,
		DropInDir:   filepath.Join(dir, "sshd_config.d"),
		ConfigPath:  filepath.Join(dir, "sshd_config"),
		HostKeyPath: filepath.Join(dir, "ssh_host_ed25519_key"),
		sshd:        sshd,
		Opts:        opts,
	}
	if err := os.Mkdir(s.DropInDir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := opts.HostKey
	if key == nil {
		var err error
		if _, key, err = ed25519.GenerateKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	if err := WritePrivateKey(s.HostKeyPath, key); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s.HostKey = signer
	return s
}

// NewKey makes a fresh Ed25519 key for a test: a CA, a host or a client
// key, as a signer and as the raw private key (for WritePrivateKey).
func NewKey(t testing.TB) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

// WritePrivateKey writes key in OpenSSH's format with mode 0600, which sshd
// and ssh require of private keys.
func WritePrivateKey(path string, key ed25519.PrivateKey) error {
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return fmt.Errorf("marshal private key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("write private key: %w", err)
	}
	return nil
}

func (s *Server) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Include %s/*.conf\n", s.DropInDir)
	if s.Opts.Config != "" {
		b.WriteString(strings.TrimRight(s.Opts.Config, "\n") + "\n")
	}
	fmt.Fprintf(&b, `ListenAddress 127.0.0.1:%d
HostKey %s
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile none
PermitRootLogin prohibit-password
LogLevel VERBOSE
Subsystem sftp internal-sftp
`, s.Port, s.HostKeyPath)
	return b.String()
}

// Start starts sshd on a free loopback port and returns once it answers
// with its SSH banner. The test's cleanup stops it and waits for it.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if s.done != nil {
		t.Fatal("sshdtest: Start called twice")
	}
	// Another process can take the port between picking it and sshd's bind;
	// then sshd exits at once and another port is tried.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := os.WriteFile(s.ConfigPath, []byte(s.config()), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(s.sshd, "-t", "-f", s.ConfigPath).CombinedOutput(); err != nil {
			t.Fatalf("sshd -t -f %s: %v\n%s\nconfig:\n%s", s.ConfigPath, err, out, s.config())
		}
		if lastErr = s.start(t); lastErr == nil {
			return
		}
	}
	t.Fatalf("sshd did not start: %v\nlog:\n%s", lastErr, s.Log())
}

func (s *Server) start(t testing.TB) error {
	cmd := exec.Command(s.sshd, "-D", "-e", "-f", s.ConfigPath)
	cmd.Stdout, cmd.Stderr = &s.log, &s.log
	// Session processes inherit sshd's stderr and outlive it while a
	// client (say, one a failing test left open) holds its connection:
	// do not wait for them to close the log pipe.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("sshd exited: %v", waitErr)
		default:
		}
		if banner(s.Addr) {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return errors.New("sshd did not answer within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.done, s.cmd = done, cmd
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("sshd log (%s):\n%s", s.Addr, s.Log())
		}
	})
	return nil
}

// Reload makes sshd re-read its configuration (SIGHUP: sshd re-executes
// itself, keeping its pid) and returns once it answers again. The host
// certificate is read only at start; principals files, TrustedUserCAKeys
// and the KRL are read at every authentication and need no reload.
func (s *Server) Reload(t testing.TB) {
	t.Helper()
	before := s.Listening()
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("reload sshd: %v", err)
	}
	s.WaitListening(t, before)
}

// Listening counts the times sshd has logged that it listens: once at
// start and once more after every reload (SIGHUP re-executes sshd, which
// closes its socket and binds again).
func (s *Server) Listening() int { return strings.Count(s.Log(), "Server listening on") }

// WaitListening waits until sshd has bound its port more often than
// before (a Listening count taken before a reload someone else sent) and
// answers again; it fails the test after 15 s.
func (s *Server) WaitListening(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for s.Listening() <= before || !banner(s.Addr) {
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not come back after a reload:\n%s", s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Reloads counts the SIGHUPs sshd has received (from Reload or a
// connector's reload command).
func (s *Server) Reloads() int { return strings.Count(s.Log(), "Received SIGHUP") }

// PID is sshd's process id (for a test's --sshd-reload "kill -HUP PID").
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Log returns what sshd has logged so far.
func (s *Server) Log() string { return s.log.String() }

// WaitLog waits until sshd's log contains substr (sshd's session processes
// log asynchronously) and fails the test after 10 s.
func (s *Server) WaitLog(t testing.TB, substr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Log(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("sshd never logged %q; log:\n%s", substr, s.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// EnsureUser makes sure a local account name exists with /bin/sh as its
// shell (root's shell here is slow to start) and an unlocked password field
// ("*": no password, but not "!", which sshd without PAM treats as locked).
// It creates the account with useradd if absent and leaves it in place:
// another package's test may be using the same account at the same time.
func EnsureUser(t testing.TB, name string) *user.User {
	t.Helper()
	testenv.NeedRoot(t)
	if u, err := user.Lookup(name); err == nil {
		return u
	}
	useradd := testenv.NeedTool(t, "useradd", "passwd")
	out, err := exec.Command(useradd, "--create-home", "--shell", "/bin/sh", "--password", "*", name).CombinedOutput()
	u, lerr := user.Lookup(name)
	if lerr != nil {
		t.Fatalf("useradd %s: %v: %s (lookup: %v)", name, err, out, lerr)
	}
	return u
}
