package sshca

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// SSHDConfig names the files a connector's sshd drop-in points at.
type SSHDConfig struct {
	// UserCAKeys is the file with the user CA's public key
	// (TrustedUserCAKeys). Required.
	UserCAKeys string
	// PrincipalsDir holds one file per login listing the LOGIN@DEST
	// principals that may log in as it (AuthorizedPrincipalsFile DIR/%u).
	// Required.
	PrincipalsDir string
	// RevokedKeys is the KRL (RevokedKeys). Required: sshd refuses every
	// public key if the file is missing, which fails closed.
	RevokedKeys string
	// HostCertificate is the host certificate of sshd's own host key
	// (HostCertificate). Optional: omitted until the connector has one.
	HostCertificate string
}

// DropInHeader opens every drop-in: the file is the connector's.
const DropInHeader = "# Written by hpt (the connector agent); rewritten on every change, do not edit.\n"

// Render returns the drop-in text. Paths must be absolute and free of
// whitespace, quotes, '#' and '%' (sshd would expand or split them).
//
// sshd keeps the first value it reads of most keywords, and Debian's
// sshd_config includes sshd_config.d/*.conf at its top, so the drop-in
// takes precedence over the main file, which hpt never rewrites.
func (c SSHDConfig) Render() ([]byte, error) {
	for _, f := range []struct{ field, path string }{
		{"user_ca_keys", c.UserCAKeys},
		{"principals_dir", c.PrincipalsDir},
		{"revoked_keys", c.RevokedKeys},
	} {
		if err := checkConfigPath(f.field, f.path); err != nil {
			return nil, err
		}
	}
	if c.HostCertificate != "" {
		if err := checkConfigPath("host_certificate", c.HostCertificate); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	b.WriteString(DropInHeader)
	fmt.Fprintf(&b, "TrustedUserCAKeys %s\n", c.UserCAKeys)
	fmt.Fprintf(&b, "AuthorizedPrincipalsFile %s/%%u\n", strings.TrimRight(c.PrincipalsDir, "/"))
	fmt.Fprintf(&b, "RevokedKeys %s\n", c.RevokedKeys)
	if c.HostCertificate != "" {
		fmt.Fprintf(&b, "HostCertificate %s\n", c.HostCertificate)
	}
	return b.Bytes(), nil
}

func checkConfigPath(field, p string) error {
	if p == "" {
		return invalid(field, "empty")
	}
	if !filepath.IsAbs(p) {
		return invalid(field, "%q is not an absolute path", p)
	}
	if i := strings.IndexFunc(p, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune("\"'#%\\", r)
	}); i >= 0 {
		return invalid(field, "%q: character %q at position %d cannot appear in an sshd_config path", p, p[i], i+1)
	}
	return nil
}

// PrincipalsFile returns the contents of one login's AuthorizedPrincipalsFile:
// a header line, then the principals sorted, one per line. Each must be a
// LOGIN@DEST principal whose LOGIN is login: a file listing another login's
// principal would let that login's certificates in.
func PrincipalsFile(login string, principals []string) ([]byte, error) {
	if err := checkLogin(login); err != nil {
		return nil, err
	}
	ps := slices.Clone(principals)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	var b bytes.Buffer
	b.WriteString(DropInHeader)
	for _, p := range ps {
		l, _, err := ParsePrincipal(p)
		if err != nil {
			return nil, err
		}
		if l != login {
			return nil, invalid("principals", "%q is for login %q, not %q", p, l, login)
		}
		b.WriteString(p)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// File modes of what the connector writes: all of it is public (CA public
// keys, principals, serials, a certificate); sshd only needs it not to be
// writable by others.
const (
	ModeFile = 0o644
	ModeDir  = 0o755
)

// WriteFileAtomic writes data to path with mode perm: to a temporary file in
// the same directory, synced, then renamed over path, and the directory
// synced. A reader sees the old contents or the new, never a part. It
// returns whether the contents or mode changed (false: path already held
// exactly this, and nothing was written).
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) (changed bool, err error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == perm {
			return false, nil
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err == nil {
		if err = f.Chmod(perm); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		// The rename is durable only once the directory is synced; a
		// failure here leaves the new file in place, so it is not an error.
		d.Sync()
		d.Close()
	}
	return true, nil
}

// WritePrincipalsDir makes dir hold exactly one principals file per login
// of byLogin (PrincipalsFile), written atomically, and removes the files of
// logins no longer present, so that a login whose last grant went away
// stops accepting certificates. dir belongs to hpt: any other file in it
// whose name is a login is removed too; other names are left alone. It
// reports whether anything changed. On bad input nothing is written.
func WritePrincipalsDir(dir string, byLogin map[string][]string) (changed bool, err error) {
	files := make(map[string][]byte, len(byLogin))
	for login, ps := range byLogin {
		b, err := PrincipalsFile(login, ps)
		if err != nil {
			return false, fmt.Errorf("principals of %q: %w", login, err)
		}
		files[login] = b
	}
	if err := os.MkdirAll(dir, ModeDir); err != nil {
		return false, fmt.Errorf("principals dir: %w", err)
	}
	logins := make([]string, 0, len(files))
	for l := range files {
		logins = append(logins, l)
	}
	slices.Sort(logins)
	for _, l := range logins {
		c, err := WriteFileAtomic(filepath.Join(dir, l), files[l], ModeFile)
		if err != nil {
			return changed, err
		}
		changed = changed || c
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return changed, fmt.Errorf("principals dir: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if _, keep := files[name]; keep || checkLogin(name) != nil || e.IsDir() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return changed, fmt.Errorf("remove stale principals file: %w", err)
		}
		changed = true
	}
	return changed, nil
}
