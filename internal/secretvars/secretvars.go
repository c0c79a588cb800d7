// Package secretvars is what nodes and agents share about a job's secret
// vars (hpt job run --secret-var): their limits, the digest the log
// records instead of them, and the redaction of their values from what a
// run reports.
//
// A secret var reaches templates as {{ .Vars.NAME }}, like a job var, but
// its value never enters an event, a snapshot, a log line or an error.
// Nothing in this package puts a value into an error.
package secretvars

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hpt-dev/hpt/events"
)

const (
	// MaxCount bounds how many secret vars a job has.
	MaxCount = 64
	// MaxNameLen bounds a name.
	MaxNameLen = 64
	// MaxSize bounds a job's secret vars, names and values together.
	MaxSize = 64 << 10
	// KeyLen is the length of a job's HMAC key.
	KeyLen = 32
)

var (
	// ErrInvalid: a name or value that is not allowed.
	ErrInvalid = errors.New("invalid secret var")
	// ErrTooLarge: over MaxCount or MaxSize.
	ErrTooLarge = errors.New("secret vars too large")
)

// Check validates a job's secret vars against its plain vars: names are
// identifiers (so that {{ .Vars.NAME }} reaches them), values non-empty
// UTF-8, within the limits, and no name is in both. Errors name the field
// and the var, never a value.
func Check(secrets, vars map[string]string) error {
	if len(secrets) > MaxCount {
		return fmt.Errorf("%w: secret_vars: %d, at most %d", ErrTooLarge, len(secrets), MaxCount)
	}
	size := 0
	for _, name := range Names(secrets) {
		v := secrets[name]
		if err := checkName(name); err != nil {
			return err
		}
		if v == "" {
			return fmt.Errorf("%w: secret_vars[%s]: empty value", ErrInvalid, name)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: secret_vars[%s]: the value is not UTF-8 text", ErrInvalid, name)
		}
		if _, dup := vars[name]; dup {
			return fmt.Errorf("%w: secret_vars[%s]: also set in vars; a name is either a var or a secret var", ErrInvalid, name)
		}
		size += len(name) + len(v)
	}
	if size > MaxSize {
		return fmt.Errorf("%w: secret_vars have %d bytes, at most %d (%d KiB) allowed", ErrTooLarge, size, MaxSize, MaxSize>>10)
	}
	return nil
}

// CheckNames validates the names alone, as an event records them.
func CheckNames(names []string) error {
	if len(names) > MaxCount {
		return fmt.Errorf("%w: secret_vars: %d names, at most %d", ErrTooLarge, len(names), MaxCount)
	}
	for _, n := range names {
		if err := checkName(n); err != nil {
			return err
		}
	}
	return nil
}

func checkName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: secret_vars: name %.80q: 1 to %d characters", ErrInvalid, name, MaxNameLen)
	}
	for i, r := range name {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9' {
			continue
		}
		return fmt.Errorf("%w: secret_vars: name %.80q: letters, digits and _, not starting with a digit", ErrInvalid, name)
	}
	return nil
}

// Names returns the names of secrets, sorted.
func Names(secrets map[string]string) []string {
	out := make([]string, 0, len(secrets))
	for k := range secrets {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// NewKey returns a new random HMAC key for one job.
func NewKey() ([]byte, error) {
	k := make([]byte, KeyLen)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("secret vars key: %w", err)
	}
	return k, nil
}

// Digest is HMAC-SHA256 under key over the job id and the sorted
// name/value pairs, each length-prefixed so that no two different sets
// encode alike. The key is random per job and kept with the values, never
// logged: the digest in the log then says nothing about the values, not
// even to someone guessing a weak one, and equal values in two jobs give
// unrelated digests.
func Digest(key []byte, jobID string, secrets map[string]string) []byte {
	m := hmac.New(sha256.New, key)
	var n [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		m.Write(n[:])
		m.Write([]byte(s))
	}
	put("hpt secret vars v1")
	put(jobID)
	for _, k := range Names(secrets) {
		put(k)
		put(secrets[k])
	}
	return m.Sum(nil)
}

// Verify reports whether secrets under key are the ones digest was made of
// for job jobID.
func Verify(key []byte, jobID string, secrets map[string]string, digest []byte) bool {
	return len(key) == KeyLen && len(digest) == sha256.Size && hmac.Equal(Digest(key, jobID, secrets), digest)
}

// minLine is the shortest line of a multi-line value that is redacted on
// its own (a diff shows such a value line by line); shorter lines ("}",
// "") say little and would blot out much.
const minLine = 4

// Redactor replaces the values of a job's secret vars in text with
// [secret NAME]. A nil Redactor changes nothing.
type Redactor struct {
	r *strings.Replacer
}

// NewRedactor returns a Redactor for secrets; nil if there are none.
func NewRedactor(secrets map[string]string) *Redactor {
	type pair struct{ old, new string }
	var pairs []pair
	for _, name := range Names(secrets) {
		v := secrets[name]
		if v == "" {
			continue
		}
		mark := "[secret " + name + "]"
		pairs = append(pairs, pair{v, mark})
		if strings.ContainsAny(v, "\r\n") {
			for _, line := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
				if len(strings.TrimSpace(line)) >= minLine {
					pairs = append(pairs, pair{line, mark})
				}
			}
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	// Longest first: at one position the Replacer takes the first old
	// string that matches, and a value must win over a line of it or a
	// shorter value it contains.
	slices.SortStableFunc(pairs, func(a, b pair) int { return len(b.old) - len(a.old) })
	args := make([]string, 0, 2*len(pairs))
	for _, p := range pairs {
		args = append(args, p.old, p.new)
	}
	return &Redactor{r: strings.NewReplacer(args...)}
}

// String redacts s.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	return r.r.Replace(s)
}

// Blocks redacts block results in place: outputs, errors and changes. A
// file's content is also reported as a short checksum (provision's
// summarize), through which a guessable value could be found; with
// secrets about, content checksums are cut to the size.
func (r *Redactor) Blocks(blocks []*events.BlockResult) {
	if r == nil {
		return
	}
	for _, b := range blocks {
		b.Output = r.String(b.Output)
		b.Error = r.String(b.Error)
		b.Name = r.String(b.Name)
		for _, c := range b.GetChanges() {
			c.Old, c.New, c.Diff = r.String(c.Old), r.String(c.New), r.String(c.Diff)
			if c.GetField() == "content" {
				c.Old, c.New = cutChecksum(c.Old), cutChecksum(c.New)
			}
		}
	}
}

// cutChecksum turns "12 bytes, sha256 0a1b2c3d4e5f" into "12 bytes".
func cutChecksum(s string) string {
	if i := strings.Index(s, ", sha256 "); i >= 0 {
		return s[:i]
	}
	return s
}
