package main

import (
	"strings"
	"testing"
)

// TestServeSSHDFlagsAreChecked: the sshd flags of hpt serve are checked
// before the agent starts, naming the flag.
func TestServeSSHDFlagsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sshd-reload", "systemctl reload ssh && true"}, "--sshd-reload"},
		{[]string{"--sshd-reload", "kill -HUP '12"}, "--sshd-reload"},
		{[]string{"--manage-sshd", "--sshd-reload", ""}, "--sshd-reload"},
		{[]string{"--sshd-dir", "etc/ssh"}, "sshd dir"},
		{[]string{"--sshd-host-key", "key.pub"}, "sshd host key"},
	} {
		r := runIn(nil, append([]string{"serve", "--keystore", "/nonexistent/target.db"}, tc.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("hpt serve %s: exit %d, stderr %q; want a usage error naming %s", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
}
