package provconfig

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// ConfigError is one problem found in a config. Line is 1-based; Field names
// the offending key as a path, with 1-based block numbers: file[2].perms is
// the perms of the second [[file]] block.
type ConfigError struct {
	File  string // the bundle name, e.g. "provision.toml"
	Line  int
	Field string // "" for errors not tied to one key (TOML syntax)
	Msg   string
}

func (e *ConfigError) Error() string {
	file := e.File
	if file == "" {
		file = "config"
	}
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", file, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", file, e.Line, e.Field, e.Msg)
}

// ConfigErrors is every problem Parse (or LoadBundle) found, ordered by line.
// errors.As finds each *ConfigError in it.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

func (es ConfigErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Block kinds in the order their field lists are documented.
var blockKinds = []string{"file", "exec", "package", "user", "group", "service", "clone"}

// blockFields lists every field each block kind accepts.
var blockFields = map[string][]string{
	"file":    {"path", "content", "source", "dir", "perms", "owner", "group", "absent", "template"},
	"exec":    {"name", "script", "cmd", "args", "user", "pwd", "env", "creates", "unless", "onlyif", "timeout"},
	"package": {"name", "state"},
	"user":    {"name", "home", "shell", "uid", "groups", "ssh_public_key", "absent"},
	"group":   {"name", "gid", "passwordless_sudo", "absent"},
	"service": {"name", "status", "enabled"},
	"clone":   {"url", "dest", "ref"},
}

var topLevelKeys = []string{"failhard", "packages", "vars"}

// DefaultExecTimeout bounds an [[exec]] that sets no timeout.
const DefaultExecTimeout = 5 * time.Minute

// maxParseRetries bounds how many `perms = 0600` lines Parse rewrites to keep
// looking for further errors.
const maxParseRetries = 100

var (
	leadingZeroPerms = regexp.MustCompile(`^(\s*perms\s*=\s*)([0-9_]+)(\s*(#.*)?)$`)
	namePattern      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*\$?$`)
	packagePattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+._-]*(:[a-z0-9]+)?$`)
	unitPattern      = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9:_.@\\-]*$`)
	envKeyPattern    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Parse validates a whole bundle and returns the Config it describes. On any
// problem it returns a ConfigErrors listing all of them (each a *ConfigError
// with the line), and no Config: nothing may be applied from a config with
// errors.
func Parse(b *Bundle) (*Config, error) {
	if b == nil {
		return nil, ConfigErrors{{Line: 1, Msg: "no config"}}
	}
	if err := CheckBundle(b); err != nil {
		return nil, err
	}
	name := b.Name
	if name == "" {
		name = "config"
	}
	src := string(b.Config)
	p := &parser{file: name, files: b.Files, src: src}
	m, md, ok := p.decode(src)
	if !ok {
		return nil, p.result()
	}
	cfg := p.config(m, md)
	if err := p.result(); err != nil {
		return nil, err
	}
	cfg.Name = name
	return cfg, nil
}

type parser struct {
	src   string
	file  string
	files map[string][]byte
	kl    *keyLines
	errs  ConfigErrors
}

func (p *parser) errorf(path keyPath, format string, args ...any) {
	line := 1
	if p.kl != nil {
		line = p.kl.lookup(path)
	}
	p.errs = append(p.errs, &ConfigError{File: p.file, Line: line, Field: path.String(), Msg: fmt.Sprintf(format, args...)})
}

// lineOf returns the text of the line holding path.
func (p *parser) lineOf(path keyPath) string {
	n := p.kl.lookup(path)
	lines := strings.SplitN(p.src, "\n", n+1)
	if n-1 < len(lines) {
		return lines[n-1]
	}
	return ""
}

func (p *parser) result() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *ConfigError) int { return cmp.Compare(a.Line, b.Line) })
	return p.errs
}

// decode parses the TOML text. A syntax error ends parsing, except a bare
// `perms = 0600` (not valid TOML: integers cannot have leading zeros, but
// upstream hpt accepted it): that is reported with the fix, and the line is
// quoted in a copy of the text so that parsing goes on to find more errors.
func (p *parser) decode(src string) (map[string]any, toml.MetaData, bool) {
	type rewrite struct {
		line   int
		digits string
	}
	var rewrites []rewrite
	for range maxParseRetries {
		var m map[string]any
		md, err := toml.Decode(src, &m)
		if err == nil {
			p.kl = scanKeyLines(src)
			for _, r := range rewrites {
				p.errs = append(p.errs, &ConfigError{File: p.file, Line: r.line, Field: p.fieldAt(r.line, "perms"), Msg: permsNumberMsg(r.digits)})
			}
			return m, md, true
		}
		var pe toml.ParseError
		if !errors.As(err, &pe) {
			p.errs = append(p.errs, &ConfigError{File: p.file, Line: 1, Msg: err.Error()})
			return nil, md, false
		}
		line := max(pe.Position.Line, 1)
		if st := pe.Position.Start; st > 0 && st <= len(src) {
			// Position.Line counts a newline the parser choked on as the
			// start of the next line; the byte offset does not.
			line = strings.Count(src[:st], "\n") + 1
		}
		lines := strings.Split(src, "\n")
		if strings.Contains(pe.Message, "leading zero") && line <= len(lines) {
			if sm := leadingZeroPerms.FindStringSubmatch(lines[line-1]); sm != nil {
				rewrites = append(rewrites, rewrite{line, sm[2]})
				lines[line-1] = sm[1] + strconv.Quote(sm[2]) + sm[3]
				src = strings.Join(lines, "\n")
				continue
			}
		}
		msg := pe.Message
		if strings.Contains(msg, "leading zero") && line <= len(lines) && strings.Contains(lines[line-1], "perms") {
			msg += `; modes are strings: write perms = "0600"`
		}
		if pe.Usage != "" {
			msg += " (" + strings.Join(strings.Fields(pe.Usage), " ") + ")"
		}
		p.errs = append(p.errs, &ConfigError{File: p.file, Line: line, Msg: "invalid TOML: " + msg})
		for _, r := range rewrites { // found before the syntax error
			p.errs = append(p.errs, &ConfigError{File: p.file, Line: r.line, Field: "perms", Msg: permsNumberMsg(r.digits)})
		}
		return nil, md, false
	}
	p.errs = append(p.errs, &ConfigError{File: p.file, Line: 1, Msg: "too many errors"})
	return nil, toml.MetaData{}, false
}

func permsNumberMsg(digits string) string {
	digits = strings.ReplaceAll(digits, "_", "")
	n, _ := strconv.ParseInt(digits, 10, 64)
	return fmt.Sprintf(`perms must be a string such as "%s", not the number %s (write perms = "%s")`, suggestPerms(n), digits, suggestPerms(n))
}

// fieldAt names the key recorded at line whose last part is key.
func (p *parser) fieldAt(line int, key string) string {
	for _, e := range p.kl.order {
		if e.line == line && (e.path == key || strings.HasSuffix(e.path, "."+key)) {
			return e.path
		}
	}
	return key
}

// config walks the decoded document.
func (p *parser) config(m map[string]any, md toml.MetaData) *Config {
	cfg := &Config{Vars: map[string]string{}}
	root := &fields{p: p, m: m, used: map[string]bool{}}
	if v, ok := root.boolean("failhard"); ok {
		cfg.FailHard = v
	}
	if vars, ok := root.stringMap("vars"); ok {
		cfg.Vars = vars
	}
	var blocks []Block
	if names, ok := root.stringList("packages"); ok {
		pb := &PackageBlock{blockPos: blockPos{line: p.kl.lookup(keyPath{}.key("packages"))}, State: "installed", list: true}
		for i, n := range names {
			if !packagePattern.MatchString(n) {
				p.errorf(keyPath{}.key("packages").elem(i+1), "invalid package name %q", n)
				continue
			}
			if !slices.Contains(pb.Names, n) {
				pb.Names = append(pb.Names, n)
			}
		}
		if len(pb.Names) > 0 {
			blocks = append(blocks, pb)
		}
	}

	// Elements of each block kind, in the order they appear in the file:
	// md.Keys() lists one key per [[kind]] header, and one per inline array.
	elems := map[string][]map[string]any{}
	for _, kind := range blockKinds {
		v, present := m[kind]
		if !present {
			continue
		}
		root.used[kind] = true
		path := keyPath{}.key(kind)
		switch v := v.(type) {
		case []map[string]any:
			elems[kind] = v
		case []any:
			for i, e := range v {
				t, ok := e.(map[string]any)
				if !ok {
					p.errorf(path.elem(i+1), "must be a table: write [[%s]] blocks", kind)
				}
				elems[kind] = append(elems[kind], t) // nil keeps the numbering
			}
		case map[string]any:
			p.errorf(path, "[%s] is a single table: write [[%s]] (one per %s)", kind, kind, kind)
		default:
			p.errorf(path, "must be [[%s]] blocks, not %s", kind, tomlType(v))
		}
	}
	next := map[string]int{}
	take := func(kind string) {
		i := next[kind]
		if i >= len(elems[kind]) {
			return
		}
		next[kind] = i + 1
		if elems[kind][i] == nil {
			return
		}
		if b := p.block(kind, i+1, elems[kind][i]); b != nil {
			blocks = append(blocks, b)
		}
	}
	for _, k := range md.Keys() {
		if len(k) != 1 || elems[k[0]] == nil {
			continue
		}
		if md.Type(k[0]) == "ArrayHash" {
			take(k[0])
		} else {
			for range elems[k[0]] {
				take(k[0])
			}
		}
	}
	for _, kind := range blockKinds { // anything Keys() did not account for
		for next[kind] < len(elems[kind]) {
			take(kind)
		}
	}
	root.finish("", topLevelKeys, blockKinds)
	cfg.Blocks = blocks
	return cfg
}

func (p *parser) block(kind string, n int, m map[string]any) Block {
	path := keyPath{}.key(kind).elem(n)
	f := &fields{p: p, path: path, m: m, used: map[string]bool{}}
	pos := blockPos{line: p.kl.lookup(path)}
	nerr := len(p.errs)
	var b Block
	switch kind {
	case "file":
		b = p.fileBlock(f, pos)
	case "exec":
		b = p.execBlock(f, pos)
	case "package":
		b = p.packageBlock(f, pos)
	case "user":
		b = p.userBlock(f, pos)
	case "group":
		b = p.groupBlock(f, pos)
	case "service":
		b = p.serviceBlock(f, pos)
	case "clone":
		b = p.cloneBlock(f, pos)
	}
	f.finish(kind, blockFields[kind], nil)
	if len(p.errs) > nerr {
		return nil
	}
	return b
}

func (p *parser) fileBlock(f *fields, pos blockPos) Block {
	b := &FileBlock{blockPos: pos}
	b.Path = f.absPath("path", true)
	if c, ok := f.str("content"); ok {
		b.Content = &c
	}
	b.Source, _ = f.str("source")
	b.Dir, _ = f.boolean("dir")
	b.Perms, b.mode = f.perms("perms")
	b.Owner = f.owner("owner")
	b.Group = f.owner("group")
	b.Absent, _ = f.boolean("absent")
	b.Template, _ = f.boolean("template")

	var set []string
	if b.Content != nil {
		set = append(set, "content")
	}
	if f.has("source") {
		set = append(set, "source")
	}
	if b.Dir {
		set = append(set, "dir")
	}
	if len(set) > 1 {
		f.errorf(set[1], "%s and %s cannot be used together: pick one", set[0], set[1])
	}
	if b.Absent {
		for _, k := range []string{"content", "source", "dir", "perms", "owner", "group", "template"} {
			if f.has(k) {
				f.errorf(k, "absent = true removes the path: %s makes no sense with it", k)
			}
		}
		return b
	}
	if b.Template && b.Content == nil && b.Source == "" {
		f.errorf("template", "template = true needs content or source to render")
	}
	if len(set) == 0 && !f.has("perms") && !f.has("owner") && !f.has("group") {
		f.errorf("", "nothing to do: set content, source, dir = true or absent = true (or perms/owner/group of an existing path)")
	}
	if f.has("source") && b.Source != "" {
		if !filepath.IsLocal(b.Source) {
			f.errorf("source", "source %q must be a relative path inside the config's directory", b.Source)
		} else if data, ok := p.files[b.Source]; !ok {
			f.errorf("source", "source %q is not in the bundle (is it next to the config?)", b.Source)
		} else {
			b.source = data
		}
	}
	if b.Template {
		text, what := "", "content"
		if b.Content != nil {
			text = *b.Content
		} else if data, ok := p.files[b.Source]; ok {
			text, what = string(data), "source"
		} else {
			return b
		}
		t, err := parseTemplate(b.Path, text)
		if err != nil {
			f.errorf(what, "template: %s", templateErr(err))
		}
		b.tmpl = t
	}
	return b
}

func (p *parser) execBlock(f *fields, pos blockPos) Block {
	b := &ExecBlock{blockPos: pos, Timeout: DefaultExecTimeout}
	b.Label, _ = f.str("name")
	b.Script, _ = f.str("script")
	b.Cmd, _ = f.str("cmd")
	b.Args, _ = f.stringList("args")
	b.User = f.owner("user")
	b.Pwd = f.absPath("pwd", false)
	if env, ok := f.stringMap("env"); ok {
		keys := slices.Sorted(maps.Keys(env))
		for _, k := range keys {
			if !envKeyPattern.MatchString(k) {
				f.errorfPath(f.path.key("env").key(k), "invalid environment variable name %q", k)
				continue
			}
			b.Env = append(b.Env, k+"="+env[k])
		}
	}
	b.Creates = f.absPath("creates", false)
	b.Unless, _ = f.str("unless")
	b.OnlyIf, _ = f.str("onlyif")
	if d, ok := f.duration("timeout"); ok {
		b.Timeout = d
	}
	hasScript, hasCmd := f.has("script"), f.has("cmd")
	switch {
	case hasScript && hasCmd:
		f.errorf("cmd", "script and cmd cannot be used together: pick one")
	case !hasScript && !hasCmd:
		f.errorf("", "set script (a shell script) or cmd (a program, with args)")
	case hasScript && f.has("args"):
		f.errorf("args", "args go with cmd; a script takes none")
	}
	if hasScript && strings.TrimSpace(b.Script) == "" && f.typeOK("script") {
		f.errorf("script", "script is empty")
	}
	if hasCmd && b.Cmd == "" && f.typeOK("cmd") {
		f.errorf("cmd", "cmd is empty")
	}
	if f.has("unless") && strings.TrimSpace(b.Unless) == "" && f.typeOK("unless") {
		f.errorf("unless", "unless is empty")
	}
	if f.has("onlyif") && strings.TrimSpace(b.OnlyIf) == "" && f.typeOK("onlyif") {
		f.errorf("onlyif", "onlyif is empty")
	}
	if b.Script != "" {
		t, err := parseTemplate("script", b.Script)
		if err != nil {
			f.errorf("script", "template: %s", templateErr(err))
		}
		b.tmpl = t
	}
	return b
}

func (p *parser) packageBlock(f *fields, pos blockPos) Block {
	b := &PackageBlock{blockPos: pos, State: "installed"}
	name := f.required("name")
	if name != "" && !packagePattern.MatchString(name) {
		f.errorf("name", "invalid package name %q", name)
	}
	b.Names = []string{name}
	if s, ok := f.str("state"); ok {
		if s != "installed" && s != "absent" {
			f.errorf("state", `state must be "installed" or "absent", not %q`, s)
		}
		b.State = s
	}
	return b
}

func (p *parser) userBlock(f *fields, pos blockPos) Block {
	b := &UserBlock{blockPos: pos}
	b.UserName = f.name("name")
	b.Home = f.absPath("home", false)
	b.Shell = f.absPath("shell", false)
	b.UID = f.id("uid")
	if groups, ok := f.stringList("groups"); ok {
		for i, g := range groups {
			if !namePattern.MatchString(g) {
				f.errorfPath(f.path.key("groups").elem(i+1), "invalid group name %q", g)
			}
		}
		b.Groups = groups
	}
	if keys, ok := f.str("ssh_public_key"); ok {
		bad := false
		for _, line := range strings.Split(keys, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if _, ok := AuthorizedKey(line); !ok {
				f.errorf("ssh_public_key", "not an OpenSSH public key (expected e.g. \"ssh-ed25519 AAAA… comment\"): %q", FirstLine(line, 40))
				bad = true
				continue
			}
			b.SSHKeys = append(b.SSHKeys, line)
		}
		if len(b.SSHKeys) == 0 && !bad {
			f.errorf("ssh_public_key", "ssh_public_key holds no key")
		}
	}
	b.Absent, _ = f.boolean("absent")
	if b.Absent {
		for _, k := range []string{"home", "shell", "uid", "groups", "ssh_public_key"} {
			if f.has(k) {
				f.errorf(k, "absent = true removes the user: %s makes no sense with it", k)
			}
		}
	}
	return b
}

func (p *parser) groupBlock(f *fields, pos blockPos) Block {
	b := &GroupBlock{blockPos: pos}
	b.GroupName = f.name("name")
	b.GID = f.id("gid")
	if v, ok := f.boolean("passwordless_sudo"); ok {
		b.PasswordlessSudo = &v
	}
	b.Absent, _ = f.boolean("absent")
	if b.Absent {
		if f.has("gid") {
			f.errorf("gid", "absent = true removes the group: gid makes no sense with it")
		}
		if b.PasswordlessSudo != nil && *b.PasswordlessSudo {
			f.errorf("passwordless_sudo", "absent = true removes the group and its sudoers drop-in: passwordless_sudo = true contradicts it")
		}
	}
	return b
}

func (p *parser) serviceBlock(f *fields, pos blockPos) Block {
	b := &ServiceBlock{blockPos: pos}
	b.Unit = f.required("name")
	if b.Unit != "" && !unitPattern.MatchString(b.Unit) {
		f.errorf("name", "invalid systemd unit name %q", b.Unit)
	}
	if s, ok := f.str("status"); ok {
		switch s {
		case "started", "stopped", "restarted":
		default:
			f.errorf("status", `status must be "started", "stopped" or "restarted", not %q`, s)
		}
		b.Status = s
	}
	if v, ok := f.boolean("enabled"); ok {
		b.Enabled = &v
	}
	if !f.has("status") && !f.has("enabled") {
		f.errorf("", "nothing to do: set status and/or enabled")
	}
	return b
}

func (p *parser) cloneBlock(f *fields, pos blockPos) Block {
	b := &CloneBlock{blockPos: pos}
	b.URL = f.required("url")
	if strings.HasPrefix(b.URL, "-") {
		f.errorf("url", "url must not start with '-'")
	}
	b.Dest = f.absPath("dest", true)
	if r, ok := f.str("ref"); ok {
		if r == "" || strings.HasPrefix(r, "-") || strings.ContainsAny(r, " \t\n") {
			f.errorf("ref", "invalid ref %q: use a branch, tag or commit", r)
		}
		b.Ref = r
	}
	return b
}

// fields reads the keys of one table, recording errors against their lines
// and remembering which keys were read so that finish can name the rest.
type fields struct {
	p    *parser
	path keyPath
	m    map[string]any
	used map[string]bool
	bad  map[string]bool // keys present with the wrong type
}

func (f *fields) errorf(key, format string, args ...any) {
	path := f.path
	if key != "" {
		path = path.key(key)
	}
	f.p.errorf(path, format, args...)
}

func (f *fields) errorfPath(path keyPath, format string, args ...any) {
	f.p.errorf(path, format, args...)
}

func (f *fields) has(key string) bool {
	_, ok := f.m[key]
	return ok
}

// typeOK reports whether key is present with the right type.
func (f *fields) typeOK(key string) bool { return f.has(key) && !f.bad[key] }

func (f *fields) get(key string) (any, bool) {
	f.used[key] = true
	v, ok := f.m[key]
	return v, ok
}

func (f *fields) markBad(key string) {
	if f.bad == nil {
		f.bad = map[string]bool{}
	}
	f.bad[key] = true
}

func (f *fields) wrongType(key, want string, v any) {
	f.markBad(key)
	f.errorf(key, "%s must be %s, not %s", key, want, describe(v))
}

func (f *fields) str(key string) (string, bool) {
	v, ok := f.get(key)
	if !ok {
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		f.wrongType(key, "a string", v)
		return "", false
	}
	return s, true
}

func (f *fields) required(key string) string {
	s, ok := f.str(key)
	if !f.has(key) {
		f.errorf("", "missing required field %s", key)
	} else if ok && s == "" {
		f.errorf(key, "%s is empty", key)
	}
	return s
}

// name reads a required user or group name.
func (f *fields) name(key string) string {
	s := f.required(key)
	if s != "" && (!namePattern.MatchString(s) || len(s) > 32) {
		f.errorf(key, "invalid name %q: use letters, digits, '_', '-' and '.', starting with a letter or '_' (at most 32)", s)
	}
	return s
}

// owner reads a user or group reference: a name or a numeric id, as a string.
func (f *fields) owner(key string) string {
	v, ok := f.get(key)
	if !ok {
		return ""
	}
	switch v := v.(type) {
	case string:
		if v == "" {
			f.errorf(key, "%s is empty", key)
		} else if _, err := strconv.ParseUint(v, 10, 32); err != nil && !namePattern.MatchString(v) {
			f.errorf(key, "invalid %s %q: a name or a numeric id", key, v)
		}
		return v
	case int64:
		f.wrongType(key, fmt.Sprintf(`a string such as "%d"`, v), v)
	default:
		f.wrongType(key, "a string", v)
	}
	return ""
}

func (f *fields) boolean(key string) (bool, bool) {
	v, ok := f.get(key)
	if !ok {
		return false, false
	}
	b, isBool := v.(bool)
	if !isBool {
		if s, isStr := v.(string); isStr && (s == "true" || s == "false") {
			f.wrongType(key, fmt.Sprintf("a boolean: write %s = %s without quotes", key, s), v)
		} else {
			f.wrongType(key, "true or false", v)
		}
		return false, false
	}
	return b, true
}

// id reads a non-negative uid or gid.
func (f *fields) id(key string) *int {
	v, ok := f.get(key)
	if !ok {
		return nil
	}
	n, isInt := v.(int64)
	if !isInt {
		if s, isStr := v.(string); isStr {
			if _, err := strconv.Atoi(s); err == nil {
				f.wrongType(key, fmt.Sprintf("a number: write %s = %s without quotes", key, s), v)
				return nil
			}
		}
		f.wrongType(key, "a number", v)
		return nil
	}
	if n < 0 || n > math.MaxUint32-1 {
		f.errorf(key, "%s %d is out of range", key, n)
		return nil
	}
	i := int(n)
	return &i
}

func (f *fields) absPath(key string, required bool) string {
	var s string
	if required {
		s = f.required(key)
	} else {
		var ok bool
		if s, ok = f.str(key); ok && s == "" {
			f.errorf(key, "%s is empty", key)
		}
	}
	if s == "" {
		return ""
	}
	if strings.ContainsRune(s, 0) {
		f.errorf(key, "%s contains a NUL byte", key)
		return ""
	}
	if !filepath.IsAbs(s) {
		f.errorf(key, "%s must be an absolute path, not %q", key, s)
		return ""
	}
	clean := filepath.Clean(s)
	if clean == "/" && (key == "path" || key == "dest") {
		f.errorf(key, "%s must not be /", key)
		return ""
	}
	return clean
}

func (f *fields) stringList(key string) ([]string, bool) {
	v, ok := f.get(key)
	if !ok {
		return nil, false
	}
	arr, isArr := v.([]any)
	if !isArr {
		if s, isStr := v.(string); isStr {
			f.wrongType(key, fmt.Sprintf(`a list of strings such as ["%s"]`, s), v)
		} else {
			f.wrongType(key, "a list of strings", v)
		}
		return nil, false
	}
	out := make([]string, 0, len(arr))
	okAll := true
	for i, e := range arr {
		s, isStr := e.(string)
		if !isStr {
			f.errorfPath(f.path.key(key).elem(i+1), "%s must hold strings, not %s", key, describe(e))
			okAll = false
			continue
		}
		out = append(out, s)
	}
	return out, okAll
}

func (f *fields) stringMap(key string) (map[string]string, bool) {
	v, ok := f.get(key)
	if !ok {
		return nil, false
	}
	t, isTable := v.(map[string]any)
	if !isTable {
		f.wrongType(key, `a table of strings, e.g. { NAME = "value" }`, v)
		return nil, false
	}
	out := make(map[string]string, len(t))
	okAll := true
	for _, k := range slices.Sorted(maps.Keys(t)) {
		s, isStr := t[k].(string)
		if !isStr {
			f.errorfPath(f.path.key(key).key(k), "%s.%s must be a string, not %s", key, quoteKey(k), describe(t[k]))
			okAll = false
			continue
		}
		out[k] = s
	}
	return out, okAll
}

// duration reads a timeout: a Go duration string ("90s", "5m") or seconds.
func (f *fields) duration(key string) (time.Duration, bool) {
	v, ok := f.get(key)
	if !ok {
		return 0, false
	}
	var d time.Duration
	switch v := v.(type) {
	case string:
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			f.errorf(key, `invalid %s %q: write a duration such as "90s" or "10m"`, key, v)
			return 0, false
		}
	case int64:
		if v > int64(math.MaxInt64/time.Second) {
			f.errorf(key, "%s %d is out of range", key, v)
			return 0, false
		}
		d = time.Duration(v) * time.Second
	default:
		f.wrongType(key, `a duration such as "90s" (or a number of seconds)`, v)
		return 0, false
	}
	if d <= 0 {
		f.errorf(key, "%s must be positive", key)
		return 0, false
	}
	return d, true
}

// perms reads a mode. It must be a string of 3 or 4 octal digits: TOML has
// no octal literal that reads like chmod's, and upstream hpt silently took
// perms = 600 as decimal.
func (f *fields) perms(key string) (string, uint32) {
	v, ok := f.get(key)
	if !ok {
		return "", 0
	}
	switch v := v.(type) {
	case string:
		if len(v) < 3 || len(v) > 4 {
			f.errorf(key, `invalid %s %q: write 3 or 4 octal digits such as "0640"`, key, v)
			return "", 0
		}
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil {
			f.errorf(key, `invalid %s %q: not an octal mode (digits 0-7), e.g. "0640"`, key, v)
			return "", 0
		}
		return v, uint32(n)
	case int64:
		f.markBad(key)
		if strings.Contains(f.p.lineOf(f.path.key(key)), "0o") && v >= 0 && v <= 0o7777 {
			// perms = 0o640: TOML's octal literal; the mode is right, the type is not.
			f.errorf(key, `%s must be a string such as "%04o", not the number 0o%o`, key, v, v)
			return "", 0
		}
		f.errorf(key, `%s must be a string such as "%s", not the number %d`, key, suggestPerms(v), v)
	default:
		f.wrongType(key, `a string such as "0640"`, v)
	}
	return "", 0
}

// suggestPerms guesses the mode a number was meant to be: 644 → "0644".
func suggestPerms(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n >= 0 && n <= 7777 && strings.Trim(s, "01234567") == "" {
		return fmt.Sprintf("%04s", s)
	}
	return "0644"
}

// finish reports every key of the table that no reader asked for.
func (f *fields) finish(kind string, known, blocks []string) {
	all := append(append([]string(nil), known...), blocks...)
	for _, k := range slices.Sorted(maps.Keys(f.m)) {
		if f.used[k] {
			continue
		}
		var msg string
		if kind == "" {
			msg = fmt.Sprintf("unknown block or key %q", k)
		} else {
			msg = fmt.Sprintf("unknown field %q in [[%s]]", k, kind)
		}
		if s := closest(k, all); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else if kind != "" {
			msg += " (known: " + strings.Join(known, ", ") + ")"
		} else {
			msg += " (blocks: " + strings.Join(blocks, ", ") + "; keys: " + strings.Join(known, ", ") + ")"
		}
		f.errorf(k, "%s", msg)
	}
}

// closest returns the candidate within edit distance 2 of s, if any.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date/time"
	}
}

// describe names a value's type and, for scalars, the value.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", FirstLine(v, 40))
	case int64:
		return fmt.Sprintf("the number %d", v)
	case float64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	}
	return tomlType(v)
}

// templateErr drops text/template's "template: NAME:" prefix, which repeats
// what the error's field already says.
func templateErr(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "template: ")
	return msg
}

// FirstLine shortens s, trimmed, to its first line and at most max bytes,
// for messages: " …" marks a dropped line, "…" a cut one. It never cuts a
// UTF-8 sequence in two, so what it returns from valid UTF-8 is valid (a
// protobuf string field refuses anything else).
func FirstLine(s string, max int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func joinNames(names []string) string {
	return strings.Join(names, " ")
}
