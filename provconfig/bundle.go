package provconfig

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// A Bundle is what travels to a target: the TOML text plus every `source`
// file it names, keyed by the relative path used in the config.
type Bundle struct {
	Name   string            // file name of the config, used in messages
	Config []byte            // the TOML text
	Files  map[string][]byte // source files by the path written in the config
}

// MaxBundleSize bounds a bundle: the config plus its source files (their
// paths and contents). It is one limit for every way a config runs (`hpt
// apply`, direct provisioning, `hpt job run`), so that a config that works
// on one host also works as a job: a job's bundle travels in its
// job_submitted event, which with the vars and the target list must stay
// under the event limit (events.MaxEncodedSize, 4 MiB, which nodes of every
// version must agree on). It also makes a typo (source = a disk image)
// fail early instead of shipping gigabytes to every target.
const MaxBundleSize = 3 << 20

// MaxVarsSize bounds a run's vars (`--vars`), keys and values together.
const MaxVarsSize = 64 << 10

// ErrTooLarge is wrapped by every refusal of an input over its limit.
var ErrTooLarge = errors.New("too large")

// CheckBundle reports a bundle over MaxBundleSize, naming it.
func CheckBundle(b *Bundle) error {
	n := bundleSize(b)
	if n > MaxBundleSize {
		return fmt.Errorf("%w: bundle %s (the config and its source files) has %d bytes, at most %d (%d MiB) allowed", ErrTooLarge, cmpOr(b.Name, "config"), n, MaxBundleSize, MaxBundleSize>>20)
	}
	return nil
}

func bundleSize(b *Bundle) int64 {
	n := int64(len(b.Config))
	for path, content := range b.Files {
		n += int64(len(path) + len(content))
	}
	return n
}

// CheckVars reports vars over MaxVarsSize or with an empty key.
func CheckVars(vars map[string]string) error {
	n := 0
	for k, v := range vars {
		if k == "" {
			return errors.New("vars: a variable has an empty name")
		}
		n += len(k) + len(v)
	}
	if n > MaxVarsSize {
		return fmt.Errorf("%w: vars have %d bytes, at most %d (%d KiB) allowed", ErrTooLarge, n, MaxVarsSize, MaxVarsSize>>10)
	}
	return nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// LoadBundle reads the config at path and the source files its [[file]]
// blocks name, relative to the config's directory. A source that is absolute,
// leaves that directory (also through a symlink) or cannot be read is an
// error naming its line. Other problems in the config are left to Parse,
// which reports them all.
//
// Load does the same and goes on to Parse, reporting the problems of both
// together; it is what a command that loads a config from disk calls.
func LoadBundle(path string) (*Bundle, error) {
	b, errs, err := loadBundle(path)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return b, nil
}

// Load reads the config at path and its source files as LoadBundle does,
// and validates them as Parse does, reporting every problem of both in one
// ConfigErrors ordered by line: a source that cannot be read does not hide
// the config's other errors. It returns the bundle (to send to a target)
// and the config only when there are none.
func Load(path string) (*Bundle, *Config, error) {
	b, loadErrs, err := loadBundle(path)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := Parse(b)
	if len(loadErrs) == 0 {
		if err != nil {
			return nil, nil, err
		}
		return b, cfg, nil
	}
	var parseErrs ConfigErrors
	if err != nil && !errors.As(err, &parseErrs) {
		return nil, nil, errors.Join(loadErrs, err)
	}
	// A source LoadBundle could not read is missing from the bundle, which
	// Parse reports again for the same field; the read error says more.
	failed := map[string]bool{}
	for _, e := range loadErrs {
		failed[e.Field] = true
	}
	all := slices.Clone(loadErrs)
	for _, e := range parseErrs {
		if !failed[e.Field] || e.Field == "" {
			all = append(all, e)
		}
	}
	slices.SortStableFunc(all, func(a, b *ConfigError) int { return cmp.Compare(a.Line, b.Line) })
	return nil, nil, all
}

// loadBundle is LoadBundle, returning the bundle of what it could read
// beside the problems with the sources it could not.
func loadBundle(path string) (*Bundle, ConfigErrors, error) {
	data, err := readCapped(path, MaxBundleSize)
	if err != nil {
		return nil, nil, err
	}
	b := &Bundle{Name: filepath.Base(path), Config: data, Files: map[string][]byte{}}
	p := &parser{file: b.Name}
	m, _, ok := p.decode(string(data))
	if !ok {
		return b, nil, nil // Parse reports the syntax error
	}
	var root *os.Root
	defer func() {
		if root != nil {
			root.Close()
		}
	}()
	total := int64(len(data))
	var errs ConfigErrors
	for i, blk := range fileTables(m) {
		n := i + 1
		src, ok := blk["source"].(string)
		if !ok || src == "" {
			continue
		}
		if _, done := b.Files[src]; done {
			continue
		}
		field := keyPath{}.key("file").elem(n).key("source")
		fail := func(format string, args ...any) {
			errs = append(errs, &ConfigError{File: b.Name, Line: p.kl.lookup(field), Field: field.String(), Msg: fmt.Sprintf(format, args...)})
		}
		if !filepath.IsLocal(src) {
			fail("source %q must be a relative path inside the config's directory", src)
			continue
		}
		if root == nil {
			if root, err = os.OpenRoot(filepath.Dir(path)); err != nil {
				return nil, nil, fmt.Errorf("load bundle: %w", err)
			}
		}
		total += int64(len(src))
		content, err := readRootCapped(root, src, MaxBundleSize-total)
		if err != nil {
			fail("read source %q: %v", src, err)
			continue
		}
		total += int64(len(content))
		b.Files[src] = content
	}
	return b, errs, nil
}

// fileTables returns the [[file]] tables of a decoded config, in order (nil
// for an element that is not a table).
func fileTables(m map[string]any) []map[string]any {
	switch v := m["file"].(type) {
	case []map[string]any:
		return v
	case []any:
		out := make([]map[string]any, len(v))
		for i, e := range v {
			out[i], _ = e.(map[string]any)
		}
		return out
	}
	return nil
}

func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllCapped(f, path, max)
}

func readRootCapped(root *os.Root, name string, max int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("is a directory")
	}
	return readAllCapped(f, name, max)
}

func readAllCapped(r io.Reader, name string, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: %s makes the bundle (the config and its source files) larger than %d bytes (%d MiB)", ErrTooLarge, name, MaxBundleSize, MaxBundleSize>>20)
	}
	return data, nil
}
