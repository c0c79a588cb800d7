package provconfig

import (
	"strconv"
	"strings"
)

// BurntSushi/toml records one position per dotted key name, so the keys of
// the second [[file]] block overwrite those of the first, and the positions
// are not exported. keyLines recovers the line of every key, table header
// and array element with a small scanner over the (already parsed, hence
// valid) TOML text. It never fails: on text it does not understand it skips
// ahead, and a lookup that finds nothing falls back to the enclosing key.

// pathSeg is one step of a key path: a key, and for array elements the
// 1-based element number.
type pathSeg struct {
	key   string
	index int // 0: not an array element
}

type keyPath []pathSeg

// String renders a path the way errors name fields: file[2].perms.
func (p keyPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if s.key != "" || s.index == 0 {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(quoteKey(s.key))
		}
		if s.index > 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func (p keyPath) key(k string) keyPath {
	return append(p[:len(p):len(p)], pathSeg{key: k})
}

func (p keyPath) elem(i int) keyPath {
	return append(p[:len(p):len(p)], pathSeg{index: i})
}

func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return strconv.Quote(k)
		}
	}
	return k
}

// keyLines maps rendered key paths to 1-based lines.
type keyLines struct {
	lines map[string]int
	order []lineEntry // every recorded path in document order
}

type lineEntry struct {
	path string
	line int
}

// lookup returns the line of path, or of its nearest recorded ancestor, or 1.
func (kl *keyLines) lookup(p keyPath) int {
	for n := len(p); n > 0; n-- {
		if l, ok := kl.lines[p[:n].String()]; ok {
			return l
		}
		// An array element is found under its key with the [i] suffix; try the
		// bare key too (e.g. the first [[file]] header for "file").
		if p[n-1].index > 0 && p[n-1].key != "" {
			q := append(append(keyPath(nil), p[:n-1]...), pathSeg{key: p[n-1].key})
			if l, ok := kl.lines[q.String()]; ok {
				return l
			}
		}
	}
	return 1
}

type scanner struct {
	src    string
	i      int
	line   int
	kl     *keyLines
	arrays map[string]int // array-of-tables path (rendered, with parent indices) → elements so far
	table  keyPath        // current table
}

func scanKeyLines(src string) *keyLines {
	s := &scanner{src: src, line: 1, kl: &keyLines{lines: map[string]int{}}, arrays: map[string]int{}}
	s.document()
	return s.kl
}

func (s *scanner) record(p keyPath, line int) {
	k := p.String()
	if _, ok := s.kl.lines[k]; !ok {
		s.kl.lines[k] = line
	}
	s.kl.order = append(s.kl.order, lineEntry{path: k, line: line})
}

func (s *scanner) eof() bool  { return s.i >= len(s.src) }
func (s *scanner) peek() byte { return s.src[s.i] }

func (s *scanner) advance() {
	if s.src[s.i] == '\n' {
		s.line++
	}
	s.i++
}

// skipSpace skips blanks, and newlines and comments when nl is true.
func (s *scanner) skipSpace(nl bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
		case c == '\n' && nl:
			s.advance()
		case c == '#' && nl:
			s.skipLine()
		default:
			return
		}
	}
}

func (s *scanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.i++
	}
}

func (s *scanner) document() {
	for {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		start := s.i
		if s.peek() == '[' {
			s.header()
		} else {
			s.keyValue(s.table)
		}
		if s.i == start { // not understood: never loop in place
			s.advance()
		}
	}
}

func (s *scanner) header() {
	line := s.line
	s.i++ // [
	array := !s.eof() && s.peek() == '['
	if array {
		s.i++
	}
	keys := s.keys()
	s.skipLine()
	var p keyPath
	for n, k := range keys {
		p = p.key(k)
		if n == len(keys)-1 && array {
			s.record(p, line) // the bare key keeps the line of its first element
			rendered := p.String()
			s.arrays[rendered]++
			p[len(p)-1].index = s.arrays[rendered]
		} else if c := s.arrays[p.String()]; c > 0 {
			p[len(p)-1].index = c // [a.b] after [[a]] is inside the last a
		}
	}
	s.record(p, line)
	s.table = p
}

// keys reads a dotted key (a.b."c d") and returns its parts.
func (s *scanner) keys() []string {
	var out []string
	for {
		s.skipSpace(false)
		if s.eof() {
			return out
		}
		var k string
		switch c := s.peek(); {
		case c == '"':
			raw := s.basicString()
			if u, err := strconv.Unquote(raw); err == nil {
				k = u
			} else {
				k = strings.Trim(raw, `"`)
			}
		case c == '\'':
			k = strings.Trim(s.literalString(), "'")
		default:
			start := s.i
			for !s.eof() && isBareKeyChar(s.peek()) {
				s.i++
			}
			k = s.src[start:s.i]
			if k == "" {
				return out
			}
		}
		out = append(out, k)
		s.skipSpace(false)
		if s.eof() || s.peek() != '.' {
			return out
		}
		s.i++
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func (s *scanner) keyValue(table keyPath) {
	line := s.line
	keys := s.keys()
	if len(keys) == 0 {
		return
	}
	p := table
	for _, k := range keys {
		p = p.key(k)
	}
	s.record(p, line)
	s.skipSpace(false)
	if s.eof() || s.peek() != '=' {
		return
	}
	s.i++
	s.skipSpace(false)
	s.value(p)
}

func (s *scanner) value(p keyPath) {
	if s.eof() {
		return
	}
	switch s.peek() {
	case '"':
		s.basicString()
	case '\'':
		s.literalString()
	case '[':
		s.i++
		for n := 1; ; n++ {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.peek() == ']' {
				s.i++
				return
			}
			start := s.i
			s.record(p.elem(n), s.line)
			s.value(p.elem(n))
			s.skipSpace(true)
			if !s.eof() && s.peek() == ',' {
				s.i++
			} else if s.i == start {
				s.advance()
			}
		}
	case '{':
		s.i++
		for {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.peek() == '}' {
				s.i++
				return
			}
			start := s.i
			s.keyValue(p)
			s.skipSpace(true)
			if !s.eof() && s.peek() == ',' {
				s.i++
			} else if s.i == start {
				s.advance()
			}
		}
	default: // number, bool, date: up to the next delimiter
		for !s.eof() && !strings.ContainsRune(",]}\n#", rune(s.peek())) {
			s.i++
		}
	}
}

// basicString consumes a "…" or """…""" string and returns its raw text.
func (s *scanner) basicString() string {
	start := s.i
	if strings.HasPrefix(s.src[s.i:], `"""`) {
		s.i += 3
		for !s.eof() {
			switch s.peek() {
			case '\\':
				s.advance()
				if !s.eof() {
					s.advance()
				}
			case '"':
				if strings.HasPrefix(s.src[s.i:], `"""`) {
					s.i += 3
					for k := 0; k < 2 && !s.eof() && s.peek() == '"'; k++ {
						s.i++
					}
					return s.src[start:s.i]
				}
				s.i++
			default:
				s.advance()
			}
		}
		return s.src[start:s.i]
	}
	s.i++
	for !s.eof() {
		switch s.peek() {
		case '\\':
			s.i++
			if !s.eof() && s.peek() != '\n' {
				s.i++
			}
		case '"':
			s.i++
			return s.src[start:s.i]
		case '\n':
			return s.src[start:s.i]
		default:
			s.i++
		}
	}
	return s.src[start:s.i]
}

// literalString consumes a '…' or ”'…”' string and returns its raw text.
func (s *scanner) literalString() string {
	start := s.i
	if strings.HasPrefix(s.src[s.i:], "'''") {
		s.i += 3
		for !s.eof() {
			if strings.HasPrefix(s.src[s.i:], "'''") {
				s.i += 3
				for k := 0; k < 2 && !s.eof() && s.peek() == '\''; k++ {
					s.i++
				}
				return s.src[start:s.i]
			}
			s.advance()
		}
		return s.src[start:s.i]
	}
	s.i++
	for !s.eof() && s.peek() != '\n' {
		c := s.peek()
		s.i++
		if c == '\'' {
			break
		}
	}
	return s.src[start:s.i]
}
