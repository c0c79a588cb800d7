// Package sshaccess is the connector agent's side of SSH access (SPEC §11
// SSH): it keeps the host's OpenSSH server trusting the cluster. A node
// sends the whole desired state (rpc.SSHAccess: the user CA, the principals
// of each login, the revoked certificates, the host certificate); Manager
// checks it, writes what differs from what is on disk, atomically, and
// reloads sshd when sshd needs it.
//
// Everything is written under Config.Dir, the directory the host's
// sshd_config includes (Debian: /etc/ssh/sshd_config.d): the drop-in
// hpt.conf and, in the subdirectory hpt/, the files it names:
//
//	DIR/hpt.conf                      the drop-in (sshca.SSHDConfig.Render)
//	DIR/hpt/user_ca.pub               TrustedUserCAKeys
//	DIR/hpt/principals/LOGIN          AuthorizedPrincipalsFile DIR/hpt/principals/%u
//	DIR/hpt/revoked.krl               RevokedKeys (an OpenSSH KRL)
//	DIR/hpt/HOSTKEY-cert.pub          HostCertificate, once the node signed one
//
// The main sshd_config is never written. Nothing written is secret.
package sshaccess

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/hpt-dev/hpt/internal/sshca"
)

// Defaults, as on Debian with the openssh-server package.
const (
	// DefaultDir is the directory Debian's sshd_config includes
	// (Include /etc/ssh/sshd_config.d/*.conf, at its top).
	DefaultDir = "/etc/ssh/sshd_config.d"
	// DefaultHostKeyPath is the public half of sshd's Ed25519 host key,
	// the key the host certificate is for.
	DefaultHostKeyPath = "/etc/ssh/ssh_host_ed25519_key.pub"
	// DefaultReloadTimeout bounds the reload command.
	DefaultReloadTimeout = 30 * time.Second
)

// DefaultReload is the reload command: systemd's unit of Debian's sshd is
// ssh.service, whose reload sends sshd SIGHUP.
func DefaultReload() []string { return []string{"systemctl", "reload", "ssh"} }

// Config configures a Manager. Zero fields take the defaults on them.
type Config struct {
	// Dir is the directory sshd_config includes *.conf from, where the
	// drop-in hpt.conf and the hpt/ directory are written. It must exist
	// (a missing one means sshd_config includes nothing from it). Default
	// DefaultDir; `hpt serve --sshd-dir`.
	Dir string
	// HostKeyPath is sshd's host public key (authorized_keys format, one
	// or more lines), reported to the node and matched against the host
	// certificate it sends. Default DefaultHostKeyPath; `--sshd-host-key`.
	HostKeyPath string
	// Reload is the command (program and arguments, run without a shell)
	// that makes sshd re-read its configuration. Default DefaultReload();
	// `--sshd-reload CMD`, split by SplitCommand.
	Reload []string
	// ReloadTimeout bounds one run of Reload. Default DefaultReloadTimeout.
	ReloadTimeout time.Duration
	// Logger defaults to discarding everything.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if c.HostKeyPath == "" {
		c.HostKeyPath = DefaultHostKeyPath
	}
	if len(c.Reload) == 0 {
		c.Reload = DefaultReload()
	}
	if c.ReloadTimeout == 0 {
		c.ReloadTimeout = DefaultReloadTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate rejects a config that cannot work, naming the field. Zero
// fields that have defaults are accepted. It reads nothing from disk.
func (c *Config) Validate() error {
	d := c.withDefaults()
	var errs []error
	// The paths end up in the drop-in; Render refuses what sshd would
	// split or expand.
	if _, err := d.files(true).Render(); err != nil {
		errs = append(errs, fmt.Errorf("sshd dir: %q: %w", d.Dir, err))
	}
	if !filepath.IsAbs(d.HostKeyPath) {
		errs = append(errs, fmt.Errorf("sshd host key: %q is not an absolute path", d.HostKeyPath))
	}
	if d.Reload[0] == "" {
		errs = append(errs, errors.New("sshd reload: empty program name"))
	}
	if d.ReloadTimeout < 0 {
		errs = append(errs, fmt.Errorf("sshd reload timeout: %s: must not be negative", d.ReloadTimeout))
	}
	return errors.Join(errs...)
}

// Names of what is written under Dir.
const (
	DropInName    = "hpt.conf"
	FilesDirName  = "hpt"
	UserCAName    = "user_ca.pub"
	PrincipalsDir = "principals"
	KRLName       = "revoked.krl"
)

func (c Config) filesDir() string { return filepath.Join(c.Dir, FilesDirName) }

// hostCertPath is where the host certificate goes: named after the host
// key, as ssh-keygen names certificates (KEY-cert.pub).
func (c Config) hostCertPath() string {
	base := strings.TrimSuffix(filepath.Base(c.HostKeyPath), ".pub")
	return filepath.Join(c.filesDir(), base+"-cert.pub")
}

// files are the paths the drop-in names; withHostCert adds the host
// certificate.
func (c Config) files(withHostCert bool) sshca.SSHDConfig {
	f := sshca.SSHDConfig{
		UserCAKeys:    filepath.Join(c.filesDir(), UserCAName),
		PrincipalsDir: filepath.Join(c.filesDir(), PrincipalsDir),
		RevokedKeys:   filepath.Join(c.filesDir(), KRLName),
	}
	if withHostCert {
		f.HostCertificate = c.hostCertPath()
	}
	return f
}

// checkDir is the part of validation that reads the disk.
func (c Config) checkDir() error {
	st, err := os.Stat(c.Dir)
	if err != nil {
		return fmt.Errorf("sshd dir: %w (it must be a directory the host's sshd_config includes *.conf from)", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("sshd dir: %s is not a directory", c.Dir)
	}
	return nil
}

// SplitCommand splits a command line into words as a POSIX shell would,
// without running one: words are separated by blanks; '…' quotes
// literally; "…" quotes with \ escaping \ " $ ` and newline; \ outside
// quotes escapes the next character. Shell syntax that would need a shell
// (unquoted | & ; < > ( ) $ ` * ? [ ~ #) is refused rather than passed on
// as a word: write a script and name it instead.
func SplitCommand(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '\'':
			inWord = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j == len(rs) {
				return nil, fmt.Errorf("%q: unterminated single quote", s)
			}
			cur.WriteString(string(rs[i+1 : j]))
			i = j
		case r == '"':
			inWord = true
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune("\\\"$`\n", rs[j+1]) {
					j++
					if rs[j] != '\n' {
						cur.WriteRune(rs[j])
					}
					continue
				}
				if rs[j] == '$' || rs[j] == '`' {
					return nil, fmt.Errorf("%q: %q in double quotes needs a shell (escape it as \\%c)", s, rs[j], rs[j])
				}
				cur.WriteRune(rs[j])
			}
			if j == len(rs) {
				return nil, fmt.Errorf("%q: unterminated double quote", s)
			}
			i = j
		case r == '\\':
			if i+1 == len(rs) {
				return nil, fmt.Errorf("%q: trailing backslash", s)
			}
			i++
			if rs[i] != '\n' {
				inWord = true
				cur.WriteRune(rs[i])
			}
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune("|&;<>()$`*?[~#", r) || unicode.IsControl(r):
			return nil, fmt.Errorf("%q: %q at position %d needs a shell; quote it, or write a script and name it", s, r, i+1)
		default:
			inWord = true
			cur.WriteRune(r)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%q: no command", s)
	}
	return words, nil
}
