package provconfig

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseValid(t *testing.T) {
	src := `# a config using every block
failhard = true
packages = ["curl", "git", "curl"]

[vars]
greeting = "hello"

[[file]]
path = "/etc/motd"
content = "{{ .Vars.greeting }} {{ .Target.Name }}\n"
template = true
perms = "0644"
owner = "root"
group = "0"

[[exec]]
name = "build"
cmd = "make"
args = ["-C", "/src", "all"]
pwd = "/src"
env = { CC = "gcc", JOBS = "4" }
creates = "/src/out"
timeout = "90s"

[[package]]
name = "nginx"
state = "absent"

[[user]]
name = "deploy"
home = "/srv/deploy"
shell = "/bin/bash"
uid = 1500
groups = ["www-data", "adm"]
ssh_public_key = """
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvL2Sj8wF3bcvjlCrJzYmmp4ZzAn5Y7fSyr4uLbd0Jq deploy@laptop
"""

[[group]]
name = "ops"
gid = 1600
passwordless_sudo = true

[[service]]
name = "nginx.service"
status = "started"
enabled = true

[[clone]]
url = "https://example.com/app.git"
dest = "/srv/app/"
ref = "v1.2.3"

[[file]]
path = "/srv/www"
dir = true

[[exec]]
script = "echo {{ .Target.Labels.role }}"
timeout = 30
`
	cfg := parse(t, src, nil)
	if !cfg.FailHard || cfg.Vars["greeting"] != "hello" {
		t.Fatalf("failhard/vars: %+v", cfg)
	}
	var kinds []string
	for _, b := range cfg.Blocks {
		kinds = append(kinds, b.Kind()+":"+b.Name())
	}
	want := []string{
		"packages:curl git", "file:/etc/motd", "exec:build", "package:nginx", "user:deploy",
		"group:ops", "service:nginx.service", "clone:/srv/app", "file:/srv/www", "exec:echo {{ .Target.Labels.role }}",
	}
	if strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Fatalf("blocks in order:\n%v\nwant\n%v", kinds, want)
	}
	lines := []int{}
	for _, b := range cfg.Blocks {
		lines = append(lines, b.Line())
	}
	wantLines := []int{3, 8, 16, 25, 29, 39, 44, 49, 54, 58}
	for i := range wantLines {
		if lines[i] != wantLines[i] {
			t.Fatalf("block lines = %v, want %v", lines, wantLines)
		}
	}
	f := cfg.Blocks[1].(*FileBlock)
	if f.mode != 0o644 || !f.Template || f.tmpl == nil || f.Owner != "root" || f.Group != "0" {
		t.Fatalf("file block: %+v", f)
	}
	e := cfg.Blocks[2].(*ExecBlock)
	if e.Timeout != 90*time.Second || strings.Join(e.Env, " ") != "CC=gcc JOBS=4" || e.Creates != "/src/out" {
		t.Fatalf("exec block: %+v", e)
	}
	if e2 := cfg.Blocks[9].(*ExecBlock); e2.Timeout != 30*time.Second {
		t.Fatalf("timeout in seconds: %v", e2.Timeout)
	}
	u := cfg.Blocks[4].(*UserBlock)
	if *u.UID != 1500 || len(u.SSHKeys) != 1 || len(u.Groups) != 2 {
		t.Fatalf("user block: %+v", u)
	}
	if c := cfg.Blocks[7].(*CloneBlock); c.Dest != "/srv/app" {
		t.Fatalf("dest not cleaned: %q", c.Dest)
	}
	if d := cfg.Blocks[0].(*PackageBlock); len(d.Names) != 2 {
		t.Fatalf("duplicate package kept: %v", d.Names)
	}
}

func TestParseInlineArrayOrder(t *testing.T) {
	src := `exec = [{ cmd = "true" }, { cmd = "false" }]
[[file]]
path = "/tmp/x"
content = ""
`
	cfg := parse(t, src, nil)
	if len(cfg.Blocks) != 3 || cfg.Blocks[0].Name() != "true" || cfg.Blocks[1].Name() != "false" || cfg.Blocks[2].Kind() != "file" {
		t.Fatalf("blocks: %v", cfg.Blocks)
	}
}

// parseErrors parses src and returns its errors, failing when there are none.
func parseErrors(t *testing.T, src string, files map[string][]byte) []*ConfigError {
	t.Helper()
	_, err := Parse(&Bundle{Name: "provision.toml", Config: []byte(src), Files: files})
	if err == nil {
		t.Fatalf("Parse accepted:\n%s", src)
	}
	var ces ConfigErrors
	if !errors.As(err, &ces) {
		t.Fatalf("error %T is not ConfigErrors: %v", err, err)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("errors.As(*ConfigError) failed on %v", err)
	}
	return ces
}

func TestParseErrors(t *testing.T) {
	type want struct {
		line  int
		field string
		msg   string // substring
	}
	cases := []struct {
		name  string
		src   string
		files map[string][]byte
		want  []want
	}{
		{"perms bare with leading zero", "[[file]]\npath = \"/a\"\ncontent = \"x\"\nperms = 0600\n",
			nil, []want{{4, "file[1].perms", `perms must be a string such as "0600", not the number 0600`}}},
		{"perms number", "[[file]]\npath = \"/a\"\ncontent = \"x\"\n\n[[file]]\npath = \"/b\"\ncontent = \"y\"\nperms = 600\n",
			nil, []want{{8, "file[2].perms", `perms must be a string such as "0600", not the number 600`}}},
		{"perms octal literal", "[[file]]\npath = \"/a\"\ncontent = \"x\"\nperms = 0o640\n",
			nil, []want{{4, "file[1].perms", `"0640"`}}},
		{"perms not octal", "[[file]]\npath = \"/a\"\ncontent = \"x\"\nperms = \"999\"\n",
			nil, []want{{4, "file[1].perms", "not an octal mode"}}},
		{"perms too long", "[[file]]\npath = \"/a\"\ncontent = \"x\"\nperms = \"100644\"\n",
			nil, []want{{4, "file[1].perms", "3 or 4 octal digits"}}},
		{"unknown top-level", "[[files]]\npath = \"/a\"\n",
			nil, []want{{1, "files", `unknown block or key "files" (did you mean "file"?)`}}},
		{"unknown field", "[[file]]\npath = \"/a\"\ncontents = \"x\"\n",
			nil, []want{{1, "file[1]", "nothing to do"}, {3, "file[1].contents", `unknown field "contents" in [[file]] (did you mean "content"?)`}}},
		{"unknown field no suggestion", "[[service]]\nname = \"x\"\nstatus = \"started\"\nfrobnicate = 1\n",
			nil, []want{{4, "service[1].frobnicate", "known: name, status, enabled"}}},
		{"wrong type", "[[file]]\npath = 5\ncontent = \"x\"\n",
			nil, []want{{2, "file[1].path", "path must be a string, not the number 5"}}},
		{"missing required", "[[package]]\nstate = \"installed\"\n",
			nil, []want{{1, "package[1]", "missing required field name"}}},
		{"bad state", "[[package]]\nname = \"curl\"\nstate = \"present\"\n",
			nil, []want{{3, "package[1].state", `state must be "installed" or "absent", not "present"`}}},
		{"bad status", "[[service]]\nname = \"nginx\"\nstatus = \"running\"\n",
			nil, []want{{3, "service[1].status", `status must be "started", "stopped" or "restarted"`}}},
		{"service nothing", "[[service]]\nname = \"nginx\"\n",
			nil, []want{{1, "service[1]", "nothing to do"}}},
		{"content and source", "[[file]]\npath = \"/a\"\ncontent = \"x\"\nsource = \"f\"\n",
			map[string][]byte{"f": nil}, []want{{4, "file[1].source", "content and source cannot be used together"}}},
		{"relative path", "[[file]]\npath = \"etc/motd\"\ncontent = \"x\"\n",
			nil, []want{{2, "file[1].path", "must be an absolute path"}}},
		{"source missing", "[[file]]\npath = \"/a\"\nsource = \"files/motd\"\n",
			nil, []want{{3, "file[1].source", "not in the bundle"}}},
		{"source escapes", "[[file]]\npath = \"/a\"\nsource = \"../secret\"\n",
			nil, []want{{3, "file[1].source", "inside the config's directory"}}},
		{"bad template", "[[file]]\npath = \"/a\"\ncontent = \"{{ .Target.Name \"\ntemplate = true\n",
			nil, []want{{3, "file[1].content", "template:"}}},
		{"bad source template", "[[file]]\npath = \"/a\"\nsource = \"t\"\ntemplate = true\n",
			map[string][]byte{"t": []byte("{{ end }}")}, []want{{3, "file[1].source", "template:"}}},
		{"bad script template", "[[exec]]\nscript = \"echo {{ if }}\"\n",
			nil, []want{{2, "exec[1].script", "template:"}}},
		{"template without content", "[[file]]\npath = \"/a\"\ndir = true\ntemplate = true\n",
			nil, []want{{4, "file[1].template", "needs content or source"}}},
		{"absent with content", "[[file]]\npath = \"/a\"\nabsent = true\ncontent = \"x\"\n",
			nil, []want{{4, "file[1].content", "absent = true"}}},
		{"single table", "[file]\npath = \"/a\"\n",
			nil, []want{{1, "file", "write [[file]]"}}},
		{"script and cmd", "[[exec]]\nscript = \"ls\"\ncmd = \"ls\"\n",
			nil, []want{{3, "exec[1].cmd", "cannot be used together"}}},
		{"exec nothing", "[[exec]]\nuser = \"root\"\n",
			nil, []want{{1, "exec[1]", "set script"}}},
		{"bad timeout", "[[exec]]\ncmd = \"ls\"\ntimeout = \"soon\"\n",
			nil, []want{{3, "exec[1].timeout", "duration"}}},
		{"env not strings", "[[exec]]\ncmd = \"ls\"\nenv = { A = 1 }\n",
			nil, []want{{3, "exec[1].env.A", "must be a string"}}},
		{"args not list", "[[exec]]\ncmd = \"ls\"\nargs = \"-l\"\n",
			nil, []want{{3, "exec[1].args", `a list of strings such as ["-l"]`}}},
		{"args element", "[[exec]]\ncmd = \"ls\"\nargs = [\n  \"-l\",\n  3,\n]\n",
			nil, []want{{5, "exec[1].args[2]", "must hold strings"}}},
		{"bool quoted", "[[group]]\nname = \"ops\"\npasswordless_sudo = \"true\"\n",
			nil, []want{{3, "group[1].passwordless_sudo", "without quotes"}}},
		{"gid quoted", "[[group]]\nname = \"ops\"\ngid = \"100\"\n",
			nil, []want{{3, "group[1].gid", "without quotes"}}},
		{"bad user name", "[[user]]\nname = \"bad name\"\n",
			nil, []want{{2, "user[1].name", "invalid name"}}},
		{"bad ssh key", "[[user]]\nname = \"bob\"\nssh_public_key = \"not a key\"\n",
			nil, []want{{3, "user[1].ssh_public_key", "not an OpenSSH public key"}}},
		{"packages not list", "packages = \"curl\"\n",
			nil, []want{{1, "packages", `a list of strings such as ["curl"]`}}},
		{"bad package name", "packages = [\"curl\", \"-rf\"]\n",
			nil, []want{{1, "packages[2]", "invalid package name"}}},
		{"failhard type", "failhard = \"yes\"\n",
			nil, []want{{1, "failhard", "true or false"}}},
		{"clone ref option", "[[clone]]\nurl = \"u\"\ndest = \"/x\"\nref = \"--upload-pack=x\"\n",
			nil, []want{{4, "clone[1].ref", "invalid ref"}}},
		{"syntax error", "[[file]]\npath = \"/a\n",
			nil, []want{{2, "", "invalid TOML"}}},
		{"dest slash", "[[clone]]\nurl = \"u\"\ndest = \"/\"\n",
			nil, []want{{3, "clone[1].dest", "must not be /"}}},
		{"quoted key line", "[[file]]\npath = \"/a\"\ncontent = \"x\"\n\"per ms\" = 1\n",
			nil, []want{{4, `file[1]."per ms"`, "unknown field"}}},
		{"sub table", "[[file]]\npath = \"/a\"\ncontent = \"x\"\n[file.extra]\nx = 1\n",
			nil, []want{{4, "file[1].extra", "unknown field"}}},
		{"inline array numbering", "exec = [\n  1,\n  { cmd = 5 },\n]\n",
			nil, []want{{2, "exec[1]", "must be a table"}, {3, "exec[2].cmd", "cmd must be a string"}}},
		{"multiline string before error", "[[file]]\npath = \"/a\"\ncontent = '''\nperms = 1\n[[exec]]\n'''\nperms = 1\n",
			nil, []want{{7, "file[1].perms", "not the number 1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := parseErrors(t, tc.src, tc.files)
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.want), ConfigErrors(errs))
			}
			for i, w := range tc.want {
				e := errs[i]
				if e.Line != w.line || e.Field != w.field || !strings.Contains(e.Msg, w.msg) || e.File != "provision.toml" {
					t.Errorf("error %d = %q (line %d, field %q)\nwant line %d, field %q, containing %q", i, e.Error(), e.Line, e.Field, w.line, w.field, w.msg)
				}
			}
		})
	}
}

// TestParseAllErrors checks that every problem is reported, each with its
// line, including after a bare perms = 0600 (a TOML syntax error).
func TestParseAllErrors(t *testing.T) {
	src := `failhard = true
[[file]]
path = "/etc/a"
content = "x"
perms = 0600

[[file]]
path = "relative"
content = "y"
perms = 0644

[[service]]
name = "nginx"
status = "up"

[[bogus]]
x = 1
`
	errs := parseErrors(t, src, nil)
	want := []string{
		`provision.toml:5: file[1].perms: perms must be a string such as "0600", not the number 0600 (write perms = "0600")`,
		`provision.toml:8: file[2].path: path must be an absolute path, not "relative"`,
		`provision.toml:10: file[2].perms: perms must be a string such as "0644", not the number 0644 (write perms = "0644")`,
		`provision.toml:14: service[1].status: status must be "started", "stopped" or "restarted", not "up"`,
		`provision.toml:16: bogus: unknown block or key "bogus" (blocks: file, exec, package, user, group, service, clone; keys: failhard, packages, vars)`,
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestScanKeyLines(t *testing.T) {
	src := "a = 1\n" +
		"b = \"\"\"\nx = 2\n\"\"\"\n" + // lines 2-4
		"c = [\n  1,\n  { d = 2 },\n]\n" + // lines 5-8
		"[[t]]\n" + // 9
		"k = 'v' # comment\n" + // 10
		"[t.sub]\n" + // 11
		"z = 1\n" + // 12
		"[[t]]\n" + // 13
		"\"q.k\" . r = true\n" // 14
	kl := scanKeyLines(src)
	for path, line := range map[string]int{
		"a": 1, "b": 2, "c": 5, "c[1]": 6, "c[2]": 7, "c[2].d": 7, "t": 9, "t[1]": 9, "t[1].k": 10,
		"t[1].sub": 11, "t[1].sub.z": 12, "t[2]": 13, `t[2]."q.k".r`: 14,
	} {
		if got := kl.lines[path]; got != line {
			t.Errorf("line of %s = %d, want %d (all: %v)", path, got, line, kl.lines)
		}
	}
	if _, ok := kl.lines["x"]; ok {
		t.Errorf("key inside a multi-line string recorded")
	}
	// Lookups fall back to the nearest ancestor.
	if got := kl.lookup(keyPath{}.key("t").elem(2).key("missing")); got != 13 {
		t.Errorf("fallback lookup = %d, want 13", got)
	}
	if got := kl.lookup(keyPath{}.key("nothing")); got != 1 {
		t.Errorf("unknown lookup = %d, want 1", got)
	}
}

func TestSuggestPerms(t *testing.T) {
	for n, want := range map[int64]string{600: "0600", 644: "0644", 755: "0755", 2755: "2755", 99999: "0644", 800: "0644", 0: "0000"} {
		if got := suggestPerms(n); got != want {
			t.Errorf("suggestPerms(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestFirstLine keeps the first line and cuts at max bytes without
// splitting a UTF-8 sequence: messages built from it go into protobuf
// strings, which refuse invalid UTF-8.
func TestFirstLine(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"  apt-get install curl  ", 80, "apt-get install curl"},
		{"set -e\necho hi\n", 80, "set -e …"},
		{"abcdef", 3, "abc…"},
		{"abcdef", 6, "abcdef"},
		{"ab€cd", 3, "ab…"}, // € is 3 bytes: bytes 2..4
		{"ab€cd", 4, "ab…"},
		{"ab€cd", 5, "ab€…"},
		{"€", 0, "…"},
	} {
		got := FirstLine(c.in, c.max)
		if got != c.want {
			t.Errorf("FirstLine(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("FirstLine(%q, %d) = %q is not valid UTF-8", c.in, c.max, got)
		}
	}
}
