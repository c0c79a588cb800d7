package sshaccess

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/rpc"
)

// ErrInvalid is wrapped by every error about a bad SSHAccess (a
// *FieldError); it is sshca.ErrInvalid, so errors.Is holds for either.
var ErrInvalid = sshca.ErrInvalid

// ErrStale is returned for an SSHAccess older (by log index) than one
// already applied: a lagging node must not undo a newer revocation.
var ErrStale = errors.New("ssh access state older than the one applied")

// ErrReload is wrapped when the files were written but the reload command
// failed; the next Apply runs it again.
var ErrReload = errors.New("sshd reload failed")

// FieldError is a bad SSHAccess: Field names the message field
// ("user_ca_public_key", "principals_by_login", …).
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// because is the message of err without the field name sshca gave it,
// which names its own parameter rather than the message field.
func because(err error) string {
	var fe *sshca.FieldError
	if errors.As(err, &fe) {
		return fe.Msg
	}
	return err.Error()
}

// Limits on a received SSHAccess beyond what sshca checks.
const (
	// MaxHostCertLen bounds host_certificate (an RSA-16384 certificate
	// with many principals fits).
	MaxHostCertLen = 64 << 10
	// MaxKeyIDLen bounds one revoked KeyId.
	MaxKeyIDLen = 1024
)

// Manager keeps one host's sshd configured from SSHAccess messages. Its
// methods may be called from several goroutines; Apply calls run one at a
// time.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// lastIndex is the index of the last SSHAccess applied.
	lastIndex uint64
	// reloadPending: sshd may not run what is on disk. True at first, as a
	// restarted agent cannot know whether its predecessor's last reload
	// happened, and after a failed reload.
	reloadPending bool
	reloads       int
}

// New checks cfg (Validate, and that Dir is a directory) and returns a
// Manager. It writes nothing.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := cfg.checkDir(); err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, log: cfg.Logger, reloadPending: true}, nil
}

// Config returns the configuration with its defaults filled in.
func (m *Manager) Config() Config { return m.cfg }

// Reloads is how many times the reload command ran successfully.
func (m *Manager) Reloads() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reloads
}

// HostKeys reads sshd's host public key(s) from HostKeyPath, each in
// canonical authorized_keys form (no comment).
func (m *Manager) HostKeys() (*rpc.HostKeys, error) {
	keys, err := m.hostKeys()
	if err != nil {
		return nil, err
	}
	out := &rpc.HostKeys{}
	for _, k := range keys {
		out.PublicKeys = append(out.PublicKeys, ssh.MarshalAuthorizedKey(k))
	}
	return out, nil
}

func (m *Manager) hostKeys() ([]ssh.PublicKey, error) {
	b, err := os.ReadFile(m.cfg.HostKeyPath)
	if err != nil {
		return nil, fmt.Errorf("read sshd host key: %w", err)
	}
	var keys []ssh.PublicKey
	for rest := b; len(bytes.TrimSpace(rest)) > 0; {
		var k ssh.PublicKey
		k, _, _, rest, err = ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return nil, fmt.Errorf("sshd host key %s: %w", m.cfg.HostKeyPath, err)
		}
		if _, ok := k.(*ssh.Certificate); ok {
			return nil, fmt.Errorf("sshd host key %s: holds a certificate, not the host's public key", m.cfg.HostKeyPath)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("sshd host key %s: no key in it", m.cfg.HostKeyPath)
	}
	return keys, nil
}

// plan is the checked content of every file of one SSHAccess.
type plan struct {
	dropIn     []byte
	userCA     []byte
	principals map[string][]string
	krl        []byte
	hostCert   []byte // nil: no host certificate
}

// plan checks msg and renders the files. Bad input is a *FieldError.
func (m *Manager) plan(msg *rpc.SSHAccess) (*plan, error) {
	if msg == nil {
		return nil, invalid("ssh_access", "missing")
	}
	p := &plan{principals: map[string][]string{}}

	ca, err := sshca.ParseClientKey(msg.GetUserCaPublicKey())
	if err != nil {
		return nil, invalid("user_ca_public_key", "%s", because(err))
	}
	p.userCA = ssh.MarshalAuthorizedKey(ca)

	logins := make([]string, 0, len(msg.GetPrincipalsByLogin()))
	for l := range msg.GetPrincipalsByLogin() {
		logins = append(logins, l)
	}
	slices.Sort(logins) // the first bad login is the same every time
	for _, login := range logins {
		ps := msg.GetPrincipalsByLogin()[login].GetPrincipals()
		if _, err := sshca.PrincipalsFile(login, ps); err != nil {
			return nil, invalid("principals_by_login", "login %q: %s", login, because(err))
		}
		p.principals[login] = ps
	}

	for _, s := range msg.GetRevokedSerials() {
		if s == 0 {
			return nil, invalid("revoked_serials", "serial 0 cannot be revoked (no certificate has it)")
		}
	}
	for _, id := range msg.GetRevokedKeyIds() {
		if id == "" || len(id) > MaxKeyIDLen || strings.ContainsAny(id, "\x00\n") {
			return nil, invalid("revoked_key_ids", "%.80q: empty, longer than %d bytes, or contains NUL or a newline", id, MaxKeyIDLen)
		}
	}
	// Serials are per CA; key ids are revoked whatever CA signed them.
	krl := sshca.KRL{Comment: "hpt", Certs: []sshca.RevokedCerts{
		{CA: ca, Serials: msg.GetRevokedSerials()},
		{KeyIDs: msg.GetRevokedKeyIds()},
	}}
	if p.krl, err = krl.Marshal(); err != nil {
		return nil, invalid("revoked_serials", "%s", because(err))
	}

	if hc := msg.GetHostCertificate(); len(hc) > 0 {
		if p.hostCert, err = m.checkHostCert(hc); err != nil {
			return nil, err
		}
	}
	if p.dropIn, err = m.cfg.files(p.hostCert != nil).Render(); err != nil {
		// Validate rendered the same paths; this is not the message's fault.
		return nil, fmt.Errorf("render drop-in: %w", err)
	}
	return p, nil
}

// checkHostCert accepts a host certificate for one of the host keys this
// agent reports, and returns it in canonical form.
func (m *Manager) checkHostCert(b []byte) ([]byte, error) {
	if len(b) > MaxHostCertLen {
		return nil, invalid("host_certificate", "%d bytes, at most %d allowed", len(b), MaxHostCertLen)
	}
	k, _, _, rest, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, invalid("host_certificate", "not an OpenSSH certificate (authorized_keys format): %v", err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, invalid("host_certificate", "more than one line")
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok {
		return nil, invalid("host_certificate", "is a plain %s key, not a certificate", k.Type())
	}
	if cert.CertType != ssh.HostCert {
		return nil, invalid("host_certificate", "is a user certificate, not a host certificate")
	}
	keys, err := m.hostKeys()
	if err != nil {
		return nil, invalid("host_certificate", "cannot be matched with this host's key: %v", err)
	}
	want := cert.Key.Marshal()
	if !slices.ContainsFunc(keys, func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), want) }) {
		return nil, invalid("host_certificate", "is for the key %s, which is not this host's (%s)", ssh.FingerprintSHA256(cert.Key), m.cfg.HostKeyPath)
	}
	return ssh.MarshalAuthorizedKey(cert), nil
}

// Apply makes the files under Dir say what msg says, writing only those
// whose content differs, each atomically, and reloads sshd if the drop-in
// or the host certificate changed (sshd reads them only at start and
// reload; the CA file, the principals files and the KRL it reads at every
// authentication, so revocations and grants take effect at the next login
// without a reload). It reports whether any file changed.
//
// A bad msg is a *FieldError naming the field, and nothing is written. A
// msg with a nonzero index lower than the last applied is ErrStale. If
// writing fails midway, some files are new and some old; each file is
// whole, and the next Apply finishes the job.
func (m *Manager) Apply(ctx context.Context, msg *rpc.SSHAccess) (changed bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if idx := msg.GetIndex(); idx != 0 && idx < m.lastIndex {
		return false, fmt.Errorf("index %d, applied %d: %w", idx, m.lastIndex, ErrStale)
	}
	p, err := m.plan(msg)
	if err != nil {
		return false, err
	}
	changed, needReload, err := m.write(p)
	if err != nil {
		m.reloadPending = m.reloadPending || needReload
		return changed, err
	}
	m.lastIndex = max(m.lastIndex, msg.GetIndex())
	if needReload || m.reloadPending {
		m.reloadPending = true
		if err := m.reload(ctx); err != nil {
			return changed, err
		}
		m.reloadPending = false
		m.reloads++
	}
	if changed {
		m.log.Info("sshd access updated", "index", msg.GetIndex(), "logins", len(p.principals),
			"revoked", len(msg.GetRevokedSerials())+len(msg.GetRevokedKeyIds()), "host_certificate", p.hostCert != nil, "reloaded", needReload)
	}
	return changed, nil
}

// write writes the plan. The order fails closed: revocations first, the
// drop-in last, so that it never names a file not yet written, and the
// host certificate removed only once the drop-in no longer names it.
func (m *Manager) write(p *plan) (changed, needReload bool, err error) {
	files := m.cfg.files(p.hostCert != nil)
	if err := os.MkdirAll(m.cfg.filesDir(), sshca.ModeDir); err != nil {
		return false, false, fmt.Errorf("sshd files dir: %w", err)
	}
	step := func(c bool, err error) error {
		changed = changed || c
		return err
	}
	if err := step(sshca.WriteFileAtomic(files.RevokedKeys, p.krl, sshca.ModeFile)); err != nil {
		return changed, false, err
	}
	if err := step(sshca.WritePrincipalsDir(files.PrincipalsDir, p.principals)); err != nil {
		return changed, false, err
	}
	if err := step(sshca.WriteFileAtomic(files.UserCAKeys, p.userCA, sshca.ModeFile)); err != nil {
		return changed, false, err
	}
	certPath := m.cfg.hostCertPath()
	if p.hostCert != nil {
		c, err := sshca.WriteFileAtomic(certPath, p.hostCert, sshca.ModeFile)
		changed, needReload = changed || c, c
		if err != nil {
			return changed, needReload, err
		}
	}
	c, err := sshca.WriteFileAtomic(filepath.Join(m.cfg.Dir, DropInName), p.dropIn, sshca.ModeFile)
	changed, needReload = changed || c, needReload || c
	if err != nil {
		return changed, needReload, err
	}
	if p.hostCert == nil {
		switch err := os.Remove(certPath); {
		case err == nil:
			changed, needReload = true, true
		case !errors.Is(err, fs.ErrNotExist):
			return changed, needReload, fmt.Errorf("remove host certificate: %w", err)
		}
	}
	return changed, needReload, nil
}

// maxReloadOutput bounds what of the reload command's output an error
// quotes.
const maxReloadOutput = 4 << 10

func (m *Manager) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ReloadTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.cfg.Reload[0], m.cfg.Reload[1:]...)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A child that outlives the command (holding the output pipe) must not
	// hold Apply past the timeout.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %s", ctx.Err(), m.cfg.ReloadTimeout)
	}
	return fmt.Errorf("%w: %s: %v: %s", ErrReload, strings.Join(m.cfg.Reload, " "), err, bytes.TrimSpace(out.b))
}

// limitedBuffer keeps the first maxReloadOutput bytes written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxReloadOutput - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
