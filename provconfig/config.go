package provconfig

import (
	"bytes"
	"strings"
	"text/template"
	"time"
)

// Config is a validated provisioning config. Parse is the only way to make
// one, and nothing changes it afterwards: it may be applied many times, and
// from many goroutines, and its fields, slices and maps must be treated as
// read-only.
type Config struct {
	Name     string            // the bundle's name, used in messages
	FailHard bool              // stop at the first failed block; the rest are reported skipped
	Vars     map[string]string // [vars] defaults; a run's vars override them
	Blocks   []Block           // in file order
}

// Block is one unit of desired state. The set of kinds is closed: FileBlock,
// ExecBlock, PackageBlock, UserBlock, GroupBlock, ServiceBlock and CloneBlock;
// an engine switches on the type.
type Block interface {
	Kind() string // "file", "exec", "package", "packages", "user", "group", "service", "clone"
	Name() string // how results name the block: a path, a package or user name, …
	Line() int    // 1-based line where the block starts in the config

	block() // closes the set
}

type blockPos struct{ line int }

func (p blockPos) Line() int { return p.line }
func (blockPos) block()      {}

// FileBlock is a [[file]]: a regular file with content, a directory, or
// attributes of an existing path; or a path that must not exist.
type FileBlock struct {
	blockPos
	Path     string  // absolute, cleaned
	Content  *string // literal content; nil when not set
	Source   string  // bundle file (relative to the config) to copy; "" when not set
	Dir      bool    // a directory
	Perms    string  // as written, e.g. "0640"; "" when not managed
	Owner    string  // user name or uid; "" when not managed
	Group    string  // group name or gid; "" when not managed
	Absent   bool    // the path must not exist
	Template bool    // render Content/Source with text/template

	mode   uint32             // Perms parsed
	source []byte             // the Source file's content
	tmpl   *template.Template // parsed when Template
}

func (*FileBlock) Kind() string   { return "file" }
func (b *FileBlock) Name() string { return b.Path }

// Mode is Perms as a mode (0 when Perms is "").
func (b *FileBlock) Mode() uint32 { return b.mode }

// Render returns what the file must hold: Content or the Source file,
// rendered with data when Template is set. The slice is the caller's.
func (b *FileBlock) Render(data TemplateData) ([]byte, error) {
	if !b.Template {
		if b.Content != nil {
			return []byte(*b.Content), nil
		}
		return bytes.Clone(b.source), nil
	}
	var buf bytes.Buffer
	if err := render(b.tmpl, &buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ExecBlock is an [[exec]]: a command run when its guards say so.
type ExecBlock struct {
	blockPos
	Label   string   // name = "…", for results; defaults to the command
	Script  string   // shell script (a template); or
	Cmd     string   // a program, with
	Args    []string // its arguments
	User    string
	Pwd     string
	Env     []string // KEY=value, sorted by key
	Creates string   // skip (outcome ok) when this path exists
	Unless  string   // skip (outcome ok) when this shell command exits 0
	OnlyIf  string   // skip (outcome ok) unless this shell command exits 0
	Timeout time.Duration

	tmpl *template.Template // Script parsed
}

func (*ExecBlock) Kind() string { return "exec" }
func (b *ExecBlock) Name() string {
	if b.Label != "" {
		return b.Label
	}
	if b.Cmd != "" {
		return FirstLine(CommandLine(b.Cmd, b.Args...), 80)
	}
	return FirstLine(b.Script, 80)
}

// RenderScript returns Script rendered with data ("" when Cmd is set).
func (b *ExecBlock) RenderScript(data TemplateData) (string, error) {
	if b.tmpl == nil {
		return "", nil
	}
	var buf strings.Builder
	if err := render(b.tmpl, &buf, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// CommandLine renders a program and its arguments as a shell-quoted line,
// e.g. `useradd --shell /bin/bash alice`: how results and errors show a
// command.
func CommandLine(name string, args ...string) string {
	var b strings.Builder
	b.WriteString(shellQuote(name))
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(shellQuote(a))
	}
	return b.String()
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("-_./=:,+@%^", r)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}

// PackageBlock is a [[package]], or the top-level packages = [...] list.
type PackageBlock struct {
	blockPos
	Names []string
	State string // "installed" or "absent"

	list bool // from top-level packages
}

func (b *PackageBlock) Kind() string {
	if b.list {
		return "packages"
	}
	return "package"
}

func (b *PackageBlock) Name() string {
	return joinNames(b.Names)
}

// UserBlock is a [[user]]: a local account and its authorized SSH keys.
type UserBlock struct {
	blockPos
	UserName string
	Home     string   // "" to leave to useradd / unchanged
	Shell    string   // "" to leave to useradd / unchanged
	UID      *int     // nil to leave to useradd / unchanged
	Groups   []string // supplementary groups the user must be in (others are kept)
	SSHKeys  []string // authorized_keys lines that must be present
	Absent   bool
}

func (*UserBlock) Kind() string   { return "user" }
func (b *UserBlock) Name() string { return b.UserName }

// GroupBlock is a [[group]]: a local group, optionally with passwordless sudo.
type GroupBlock struct {
	blockPos
	GroupName        string
	GID              *int  // nil to leave to groupadd / unchanged
	PasswordlessSudo *bool // nil: the sudoers drop-in is not managed
	Absent           bool
}

func (*GroupBlock) Kind() string   { return "group" }
func (b *GroupBlock) Name() string { return b.GroupName }

// ServiceBlock is a [[service]]: a systemd unit's run and boot state.
type ServiceBlock struct {
	blockPos
	Unit    string
	Status  string // "started", "stopped", "restarted" or "" (not managed)
	Enabled *bool  // nil: not managed
}

func (*ServiceBlock) Kind() string   { return "service" }
func (b *ServiceBlock) Name() string { return b.Unit }

// CloneBlock is a [[clone]]: a git checkout kept at a ref.
type CloneBlock struct {
	blockPos
	URL  string
	Dest string // absolute, cleaned
	Ref  string // branch, tag or commit; "" for the remote's default branch
}

func (*CloneBlock) Kind() string   { return "clone" }
func (b *CloneBlock) Name() string { return b.Dest }
