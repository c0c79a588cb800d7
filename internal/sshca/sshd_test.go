package sshca

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRenderDropIn(t *testing.T) {
	c := SSHDConfig{
		UserCAKeys:      "/etc/ssh/hpt/user_ca.pub",
		PrincipalsDir:   "/etc/ssh/hpt/principals/",
		RevokedKeys:     "/etc/ssh/hpt/revoked.krl",
		HostCertificate: "/etc/ssh/ssh_host_ed25519_key-cert.pub",
	}
	got, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := DropInHeader + `TrustedUserCAKeys /etc/ssh/hpt/user_ca.pub
AuthorizedPrincipalsFile /etc/ssh/hpt/principals/%u
RevokedKeys /etc/ssh/hpt/revoked.krl
HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub
`
	if string(got) != want {
		t.Errorf("drop-in:\n%s\nwant:\n%s", got, want)
	}
	c.HostCertificate = ""
	got, _ = c.Render()
	if want := DropInHeader + "TrustedUserCAKeys /etc/ssh/hpt/user_ca.pub\nAuthorizedPrincipalsFile /etc/ssh/hpt/principals/%u\nRevokedKeys /etc/ssh/hpt/revoked.krl\n"; string(got) != want {
		t.Errorf("drop-in without host certificate:\n%s", got)
	}

	for _, tc := range []struct {
		field string
		edit  func(*SSHDConfig)
	}{
		{"user_ca_keys", func(c *SSHDConfig) { c.UserCAKeys = "" }},
		{"user_ca_keys", func(c *SSHDConfig) { c.UserCAKeys = "user_ca.pub" }},
		{"principals_dir", func(c *SSHDConfig) { c.PrincipalsDir = "/etc/ssh/my principals" }},
		{"principals_dir", func(c *SSHDConfig) { c.PrincipalsDir = "/etc/ssh/%h" }},
		{"revoked_keys", func(c *SSHDConfig) { c.RevokedKeys = "/etc/ssh/krl\nPermitRootLogin yes" }},
		{"host_certificate", func(c *SSHDConfig) { c.HostCertificate = `/etc/"x"` }},
	} {
		c := c
		tc.edit(&c)
		if out, err := c.Render(); err == nil {
			t.Errorf("%s: rendered\n%s", tc.field, out)
		} else {
			wantField(t, err, tc.field, ErrInvalid)
		}
	}
}

func TestPrincipalsFile(t *testing.T) {
	got, err := PrincipalsFile("deploy", []string{"deploy@web-2", "deploy@web-1", "deploy@web-2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := DropInHeader + "deploy@web-1\ndeploy@web-2\n"; string(got) != want {
		t.Errorf("principals file:\n%s", got)
	}
	if got, err := PrincipalsFile("deploy", nil); err != nil || string(got) != DropInHeader {
		t.Errorf("empty principals file: %q, %v", got, err)
	}
	for _, tc := range []struct {
		login, p, field string
	}{
		{"deploy", "root@web-1", "principals"},
		{"deploy", "deploy", "principals"},
		{"deploy", "#deploy@web-1", "principals"},
		{"../etc", "deploy@web-1", "login"},
	} {
		if out, err := PrincipalsFile(tc.login, []string{tc.p}); err == nil {
			t.Errorf("PrincipalsFile(%q, %q) = %q", tc.login, tc.p, out)
		} else {
			wantField(t, err, tc.field, ErrInvalid)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hpt.conf")
	for i, tc := range []struct {
		data    string
		mode    os.FileMode
		changed bool
	}{
		{"a\n", 0o644, true}, {"a\n", 0o644, false}, {"a\n", 0o600, true}, {"b\n", 0o600, true},
	} {
		changed, err := WriteFileAtomic(p, []byte(tc.data), tc.mode)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		st, _ := os.Stat(p)
		if changed != tc.changed || string(b) != tc.data || st.Mode().Perm() != tc.mode {
			t.Errorf("write %d: changed %v (want %v), %q mode %v (want %q %v)", i, changed, tc.changed, b, st.Mode().Perm(), tc.data, tc.mode)
		}
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("temporary files left: %v", es)
	}
	if _, err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o644); err == nil {
		t.Error("wrote into a missing directory")
	}
}

func TestWritePrincipalsDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "principals")
	changed, err := WritePrincipalsDir(dir, map[string][]string{"deploy": {"deploy@web-1"}, "admin": {"admin@db-1"}})
	if err != nil || !changed {
		t.Fatalf("first write: changed %v, %v", changed, err)
	}
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a login\n"), 0o644)
	if changed, err := WritePrincipalsDir(dir, map[string][]string{"deploy": {"deploy@web-1"}, "admin": {"admin@db-1"}}); err != nil || changed {
		t.Fatalf("same write: changed %v, %v", changed, err)
	}
	// admin lost its last grant: its file goes, so its certificates stop working.
	if changed, err := WritePrincipalsDir(dir, map[string][]string{"deploy": {"deploy@web-1", "deploy@web-2"}}); err != nil || !changed {
		t.Fatalf("shrink: changed %v, %v", changed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin")); !os.IsNotExist(err) {
		t.Errorf("stale principals file of admin: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "README")); err != nil {
		t.Errorf("a file that is no login was removed: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "deploy"))
	st, _ := os.Stat(filepath.Join(dir, "deploy"))
	if string(b) != DropInHeader+"deploy@web-1\ndeploy@web-2\n" || st.Mode().Perm() != ModeFile {
		t.Errorf("deploy: %q mode %v", b, st.Mode().Perm())
	}
	// Bad input writes nothing.
	if _, err := WritePrincipalsDir(dir, map[string][]string{"deploy": {"deploy@web-3"}, "admin": {"root@db-1"}}); err == nil {
		t.Fatal("bad principal accepted")
	}
	b2, _ := os.ReadFile(filepath.Join(dir, "deploy"))
	if string(b2) != string(b) {
		t.Errorf("bad input changed deploy's file: %q", b2)
	}
}
