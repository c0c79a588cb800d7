package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// fakeAccounts answers getent/id/useradd/usermod/userdel/groupadd/groupmod/
// groupdel/visudo like a host with the given accounts, creating home
// directories under homeRoot. Ids are the test's own uid/gid so that
// ownership can be set without root.
type fakeAccounts struct {
	t        *testing.T
	homeRoot string
	users    map[string]*passwdEntry
	groups   map[string]int
	members  map[string][]string // user → supplementary groups
	visudoOK bool
}

func newFakeAccounts(t *testing.T) *fakeAccounts {
	return &fakeAccounts{t: t, homeRoot: t.TempDir(), users: map[string]*passwdEntry{},
		groups: map[string]int{}, members: map[string][]string{}, visudoOK: true}
}

func (f *fakeAccounts) addUser(name, home string) {
	os.MkdirAll(filepath.Join(f.homeRoot, home), 0o755)
	f.users[name] = &passwdEntry{name: name, uid: os.Getuid(), gid: os.Getgid(), home: home, shell: "/bin/sh"}
}

func flagValues(args []string) (map[string]string, string) {
	flags := map[string]string{}
	for i := 0; i < len(args)-1; i++ {
		switch a := args[i]; a {
		case "--create-home", "--move-home", "--append":
			flags[a] = "yes"
		default:
			flags[a] = args[i+1]
			i++
		}
	}
	return flags, args[len(args)-1]
}

func (f *fakeAccounts) handle(c Command) (CommandResult, error) {
	name := ""
	if len(c.Args) > 0 {
		name = c.Args[len(c.Args)-1]
	}
	switch c.Name {
	case "getent":
		if c.Args[0] == "passwd" {
			u, ok := f.users[name]
			if !ok {
				return exit(2), nil
			}
			return out(fmt.Sprintf("%s:x:%d:%d::%s:%s\n", u.name, u.uid, u.gid, u.home, u.shell)), nil
		}
		gid, ok := f.groups[name]
		if !ok {
			return exit(2), nil
		}
		return out(fmt.Sprintf("%s:x:%d:\n", name, gid)), nil
	case "id":
		return out(strings.Join(append([]string{name}, f.members[name]...), " ") + "\n"), nil
	case "useradd":
		flags, name := flagValues(c.Args)
		home := flags["--home-dir"]
		if home == "" {
			home = "/home/" + name
		}
		f.addUser(name, home)
		if s := flags["--shell"]; s != "" {
			f.users[name].shell = s
		}
		if g := flags["--groups"]; g != "" {
			f.members[name] = strings.Split(g, ",")
		}
		return CommandResult{}, nil
	case "usermod":
		flags, name := flagValues(c.Args)
		u := f.users[name]
		if h := flags["--home"]; h != "" {
			os.Rename(filepath.Join(f.homeRoot, u.home), filepath.Join(f.homeRoot, h))
			u.home = h
		}
		if s := flags["--shell"]; s != "" {
			u.shell = s
		}
		if g := flags["--groups"]; g != "" {
			f.members[name] = append(f.members[name], strings.Split(g, ",")...)
		}
		return CommandResult{}, nil
	case "userdel":
		delete(f.users, name)
		return CommandResult{}, nil
	case "groupadd":
		flags, name := flagValues(c.Args)
		gid := 3000 + len(f.groups)
		if g := flags["--gid"]; g != "" {
			gid, _ = strconv.Atoi(g)
		}
		f.groups[name] = gid
		return CommandResult{}, nil
	case "groupmod":
		flags, name := flagValues(c.Args)
		f.groups[name], _ = strconv.Atoi(flags["--gid"])
		return CommandResult{}, nil
	case "groupdel":
		delete(f.groups, name)
		return CommandResult{}, nil
	case "visudo":
		if name == "-" {
			if len(c.Stdin) == 0 {
				f.t.Errorf("visudo asked to check an empty stdin")
			}
		} else if _, err := os.Stat(name); err != nil {
			f.t.Errorf("visudo asked to check a missing file: %v", err)
		}
		if f.visudoOK {
			return out(name + ": parsed OK\n"), nil
		}
		return CommandResult{Stderr: []byte(name + ":1:1: syntax error\n"), ExitCode: 1}, nil
	}
	f.t.Errorf("unexpected command %s", c)
	return exit(127), nil
}

const (
	key1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvL2Sj8wF3bcvjlCrJzYmmp4ZzAn5Y7fSyr4uLbd0Jq alice@laptop"
	key2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKb4aZ7Ia3bO2c3bNOeU0jP8n4bOLxB8kqv0H3FZQm8i alice@desk"
)

func TestUserCreate(t *testing.T) {
	host := newFakeAccounts(t)
	rec := &RecordingRunner{Handler: host.handle}
	cfg := parse(t, fmt.Sprintf(`[[user]]
name = "alice"
shell = "/bin/bash"
groups = ["adm", "www-data"]
ssh_public_key = """
%s
%s
"""
`, key1, key2), nil)
	opts := Options{Runner: rec, HomeRoot: host.homeRoot}

	rep := apply(t, cfg, Options{Runner: rec, HomeRoot: host.homeRoot, DryRun: true})
	wantOutcomes(t, rep, OutcomeChanged)
	equalLines(t, rec.Lines(), []string{"getent passwd alice"})
	if c := findChange(t, rep, 0, "authorized_keys"); c.Old != "absent" || c.New != "2 keys" {
		t.Fatalf("dry-run keys change %+v", c)
	}
	rec.Reset()

	rep = apply(t, cfg, opts)
	wantOutcomes(t, rep, OutcomeChanged)
	equalLines(t, rec.Lines(), []string{
		"getent passwd alice",
		"useradd --create-home --shell /bin/bash --groups adm,www-data alice",
		"getent passwd alice",
	})
	ak := filepath.Join(host.homeRoot, "home/alice/.ssh/authorized_keys")
	data, err := os.ReadFile(ak)
	if err != nil || string(data) != key1+"\n"+key2+"\n" {
		t.Fatalf("authorized_keys = %q, %v", data, err)
	}
	if m := modeOf(t, ak); m != 0o600 {
		t.Fatalf("authorized_keys mode %04o", m)
	}
	if m := modeOf(t, filepath.Dir(ak)); m != 0o700 {
		t.Fatalf(".ssh mode %04o", m)
	}

	// Second run: nothing to do.
	rec.Reset()
	rep = apply(t, cfg, opts)
	wantOutcomes(t, rep, OutcomeOK)
	equalLines(t, rec.Lines(), []string{"getent passwd alice", "id -Gn alice"})
}

func TestUserAuthorizedKeysNoDuplicates(t *testing.T) {
	host := newFakeAccounts(t)
	host.addUser("bob", "/home/bob")
	ssh := filepath.Join(host.homeRoot, "home/bob/.ssh")
	os.Mkdir(ssh, 0o755)
	// key1 is there already, with options, other spacing and another comment.
	existing := "# keys\ncommand=\"echo a b\",no-pty   " + strings.Replace(key1, " alice@laptop", "\t old comment", 1) + "\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 other"
	os.WriteFile(filepath.Join(ssh, "authorized_keys"), []byte(existing), 0o644)

	rec := &RecordingRunner{Handler: host.handle}
	cfg := parse(t, fmt.Sprintf("[[user]]\nname = \"bob\"\nssh_public_key = \"\"\"\n%s\n%s\n\"\"\"\n", key1, key2), nil)
	rep := apply(t, cfg, Options{Runner: rec, HomeRoot: host.homeRoot})
	wantOutcomes(t, rep, OutcomeChanged)
	data, _ := os.ReadFile(filepath.Join(ssh, "authorized_keys"))
	if string(data) != existing+"\n"+key2+"\n" {
		t.Fatalf("authorized_keys:\n%s", data)
	}
	c := findChange(t, rep, 0, "authorized_keys")
	if c.Old != "2 keys" || c.New != "3 keys" || !strings.Contains(c.Diff, "+"+key2) {
		t.Fatalf("change %+v", c)
	}
	if c := findChange(t, rep, 0, ".ssh perms"); c.Old != "0755" || c.New != "0700" {
		t.Fatalf(".ssh perms change %+v", c)
	}
	if c := findChange(t, rep, 0, "authorized_keys perms"); c.New != "0600" {
		t.Fatalf("authorized_keys perms %+v", c)
	}
	wantOutcomes(t, apply(t, cfg, Options{Runner: rec, HomeRoot: host.homeRoot}), OutcomeOK)
}

func TestUserRefusesSymlinkedSSHDir(t *testing.T) {
	host := newFakeAccounts(t)
	host.addUser("eve", "/home/eve")
	elsewhere := t.TempDir()
	os.Symlink(elsewhere, filepath.Join(host.homeRoot, "home/eve/.ssh"))
	cfg := parse(t, fmt.Sprintf("[[user]]\nname = \"eve\"\nssh_public_key = %q\n", key1), nil)
	rep := apply(t, cfg, Options{Runner: &RecordingRunner{Handler: host.handle}, HomeRoot: host.homeRoot})
	wantOutcomes(t, rep, OutcomeFailed)
	if !strings.Contains(rep.Blocks[0].Error, "refusing") {
		t.Fatalf("error %q", rep.Blocks[0].Error)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Fatalf("wrote through the symlink: %v", entries)
	}
}

func TestUserModifyAndDelete(t *testing.T) {
	host := newFakeAccounts(t)
	host.addUser("carol", "/home/carol")
	host.members["carol"] = []string{"adm"}
	rec := &RecordingRunner{Handler: host.handle}
	cfg := parse(t, "[[user]]\nname = \"carol\"\nhome = \"/srv/carol\"\nshell = \"/bin/zsh\"\ngroups = [\"adm\", \"sudo\"]\n", nil)
	rep := apply(t, cfg, Options{Runner: rec, HomeRoot: host.homeRoot})
	wantOutcomes(t, rep, OutcomeChanged)
	equalLines(t, rec.Lines(), []string{
		"getent passwd carol",
		"id -Gn carol",
		"usermod --home /srv/carol --move-home --shell /bin/zsh --append --groups sudo carol",
		"getent passwd carol",
	})
	if c := findChange(t, rep, 0, "groups"); c.Old != "carol,adm" || c.New != "carol,adm,sudo" {
		t.Fatalf("groups change %+v", c)
	}
	rec.Reset()
	wantOutcomes(t, apply(t, cfg, Options{Runner: rec, HomeRoot: host.homeRoot}), OutcomeOK)

	del := parse(t, "[[user]]\nname = \"carol\"\nabsent = true\n", nil)
	rec.Reset()
	wantOutcomes(t, apply(t, del, Options{Runner: rec}), OutcomeChanged)
	equalLines(t, rec.Lines(), []string{"getent passwd carol", "userdel carol"})
	rec.Reset()
	wantOutcomes(t, apply(t, del, Options{Runner: rec}), OutcomeOK)
	equalLines(t, rec.Lines(), []string{"getent passwd carol"})
}

func TestUserCommandFailure(t *testing.T) {
	rec := &RecordingRunner{Handler: script{
		"getent passwd dave":                 exit(2),
		"useradd --create-home --uid 0 dave": {Stderr: []byte("useradd: UID 0 is not unique\n"), ExitCode: 4},
	}.handler(t)}
	rep := apply(t, parse(t, "[[user]]\nname = \"dave\"\nuid = 0\n", nil), Options{Runner: rec})
	wantOutcomes(t, rep, OutcomeFailed)
	if !strings.Contains(rep.Blocks[0].Error, "UID 0 is not unique") || !strings.Contains(rep.Blocks[0].Error, "exit status 4") {
		t.Fatalf("error %q", rep.Blocks[0].Error)
	}
}

func uniqueName(t *testing.T, prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// TestUserAndGroupReal creates a real group and user on this machine (root
// with the passwd tools), checks idempotence, and removes them.
func TestUserAndGroupReal(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"useradd", "usermod", "userdel", "groupadd", "groupdel"} {
		needTool(t, tool, "passwd")
	}
	needTool(t, "getent", "libc-bin")
	group := uniqueName(t, "hpttestg")
	user := uniqueName(t, "hpttestu")
	home := filepath.Join(t.TempDir(), "home")
	t.Cleanup(func() {
		exec.Command("userdel", "-r", user).Run()
		exec.Command("groupdel", group).Run()
	})
	cfg := parse(t, fmt.Sprintf(`[[group]]
name = %q

[[user]]
name = %q
home = %q
shell = "/bin/sh"
groups = [%q]
ssh_public_key = %q
`, group, user, home, group, key1), nil)
	rep := apply(t, cfg, Options{})
	wantOutcomes(t, rep, OutcomeChanged, OutcomeChanged)
	st, err := os.Stat(filepath.Join(home, ".ssh/authorized_keys"))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("id", "-u", user).Output()
	uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if s := st.Sys().(*syscall.Stat_t); int(s.Uid) != uid || s.Mode&0o777 != 0o600 {
		t.Fatalf("authorized_keys owner %d (want %d) mode %04o", s.Uid, uid, s.Mode&0o777)
	}
	groups, _ := exec.Command("id", "-Gn", user).Output()
	if !slices.Contains(strings.Fields(string(groups)), group) {
		t.Fatalf("%s not in %s: %s", user, group, groups)
	}
	rep = apply(t, cfg, Options{})
	wantOutcomes(t, rep, OutcomeOK, OutcomeOK)

	// And away again.
	del := parse(t, fmt.Sprintf("[[user]]\nname = %q\nabsent = true\n[[group]]\nname = %q\nabsent = true\n", user, group), nil)
	wantOutcomes(t, apply(t, del, Options{}), OutcomeChanged, OutcomeChanged)
	wantOutcomes(t, apply(t, del, Options{}), OutcomeOK, OutcomeOK)
	if err := exec.CommandContext(context.Background(), "getent", "passwd", user).Run(); err == nil {
		t.Fatal("user still exists")
	}
}
