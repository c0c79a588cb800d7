package secretvars

import (
	"errors"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/events"
)

func TestCheck(t *testing.T) {
	big := strings.Repeat("x", MaxSize)
	many := map[string]string{}
	for i := range MaxCount + 1 {
		many["v"+strings.Repeat("a", i%10)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "x"
	}
	for _, tc := range []struct {
		name    string
		secrets map[string]string
		vars    map[string]string
		kind    error
		field   string
	}{
		{"ok", map[string]string{"db_password": "hunter2"}, map[string]string{"port": "80"}, nil, ""},
		{"both", map[string]string{"port": "s3cr3t"}, map[string]string{"port": "80"}, ErrInvalid, "secret_vars[port]: also set in vars"},
		{"empty value", map[string]string{"pw": ""}, nil, ErrInvalid, "secret_vars[pw]: empty value"},
		{"not utf8", map[string]string{"pw": "\xff\xfe"}, nil, ErrInvalid, "secret_vars[pw]: the value is not UTF-8"},
		{"bad name", map[string]string{"a-b": "x"}, nil, ErrInvalid, `name "a-b"`},
		{"digit first", map[string]string{"1a": "x"}, nil, ErrInvalid, `name "1a"`},
		{"oversized", map[string]string{"pw": big}, nil, ErrTooLarge, "secret_vars have"},
		{"too many", many, nil, ErrTooLarge, "at most 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.secrets, tc.vars)
			if !errors.Is(err, tc.kind) || tc.kind == nil && err != nil {
				t.Fatalf("Check: %v, want %v", err, tc.kind)
			}
			if err == nil {
				return
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not say %q", err, tc.field)
			}
			for _, v := range tc.secrets {
				if len(v) > 2 && strings.Contains(err.Error(), v) {
					t.Errorf("error %q carries a value", err)
				}
			}
		})
	}
}

func TestDigest(t *testing.T) {
	k1, _ := NewKey()
	k2, _ := NewKey()
	s := map[string]string{"a": "1", "b": "2"}
	d := Digest(k1, "j1", s)
	if !Verify(k1, "j1", s, d) {
		t.Fatal("digest does not verify")
	}
	for name, ok := range map[string]bool{
		"other key":   Verify(k2, "j1", s, d),
		"other job":   Verify(k1, "j2", s, d),
		"other value": Verify(k1, "j1", map[string]string{"a": "1", "b": "3"}, d),
		"fewer":       Verify(k1, "j1", map[string]string{"a": "1"}, d),
		// Length prefixes: moving a byte between name and value changes it.
		"shifted": Verify(k1, "j1", map[string]string{"a1": "", "b": "2"}, d),
		"no key":  Verify(nil, "j1", s, d),
	} {
		if ok {
			t.Errorf("%s verifies", name)
		}
	}
	// Equal secrets of two jobs give unrelated digests.
	if string(Digest(k2, "j1", s)) == string(d) {
		t.Error("two keys, one digest")
	}
}

func TestRedact(t *testing.T) {
	r := NewRedactor(map[string]string{"pw": "hunter2", "key": "-----BEGIN KEY-----\nAAAABBBBCCCC\n}\n-----END KEY-----\n", "short": "ab"})
	got := r.String("login hunter2 ab\n+AAAABBBBCCCC\n+}\nall: -----BEGIN KEY-----\nAAAABBBBCCCC\n}\n-----END KEY-----\n")
	want := "login [secret pw] [secret short]\n+[secret key]\n+}\nall: [secret key]"
	if got != want {
		t.Errorf("redacted\n%q\nwant\n%q", got, want)
	}
	blocks := []*events.BlockResult{{Output: "hunter2", Changes: []*events.Change{{Field: "content", Old: "absent", New: "7 bytes, sha256 0a0b0c0d0e0f", Diff: "+hunter2\n"}}}}
	r.Blocks(blocks)
	c := blocks[0].GetChanges()[0]
	if blocks[0].Output != "[secret pw]" || c.New != "7 bytes" || c.Diff != "+[secret pw]\n" {
		t.Errorf("blocks redacted to %v", blocks[0])
	}
	var none *Redactor
	if none.String("hunter2") != "hunter2" || NewRedactor(nil) != nil {
		t.Error("a nil redactor changes text")
	}
}
