package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

func TestEveryTypeHasAPayloadAndName(t *testing.T) {
	seen := map[string]bool{}
	for v := range Type_name {
		typ := Type(v)
		if typ == Type_TYPE_UNKNOWN {
			continue
		}
		p := NewPayload(typ)
		if p == nil {
			t.Fatalf("type %s has no payload", typ)
		}
		got, err := TypeOf(p)
		if err != nil || got != typ {
			t.Fatalf("TypeOf(NewPayload(%s)) = %s, %v", typ, got, err)
		}
		name := Name(typ)
		if seen[name] {
			t.Fatalf("name %q used twice", name)
		}
		seen[name] = true
		back, err := ParseType(name)
		if err != nil || back != typ {
			t.Fatalf("ParseType(%q) = %s, %v", name, back, err)
		}
	}
	if len(Names()) != len(Type_name)-1 {
		t.Fatalf("Names() lists %d types, the catalogue has %d", len(Names()), len(Type_name)-1)
	}
}

func TestRoundTripAndJSON(t *testing.T) {
	at := time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC)
	ev, err := New("user:alice", "req-1", at, &TokenCreated{Id: "abcdefabcdef", SecretSha256: bytes.Repeat([]byte{9}, 32), Subject: "user:bob"})
	if err != nil {
		t.Fatal(err)
	}
	ev.Index = 42
	b, err := Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(ev, back) {
		t.Fatalf("round trip changed the event: %v vs %v", ev, back)
	}
	j, err := ToJSON(back)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(j)
	var m map[string]any
	json.Unmarshal(out, &m)
	for _, k := range []string{"index", "time", "actor", "type", "request_id", "payload"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out)
		}
	}
	if m["type"] != "token_created" || m["actor"] != "user:alice" || m["index"] != float64(42) {
		t.Errorf("JSON = %s", out)
	}
	if payload := m["payload"].(map[string]any); payload["secret_sha256"] != "" {
		t.Errorf("rendered event carries the token secret hash: %s", out)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := New("user:a", "", time.Unix(1, 0), &UserAdded{Name: "x"})
	tooNew := proto.Clone(good).(*Event)
	tooNew.Version = Version + 1
	unknown := proto.Clone(good).(*Event)
	unknown.Type = Type(9999)
	noVersion := proto.Clone(good).(*Event)
	noVersion.Version = 0
	badPayload := proto.Clone(good).(*Event)
	badPayload.Payload = []byte{0xff}
	enc := func(e *Event) []byte { b, _ := proto.Marshal(e); return b }
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"garbage", []byte{0xff, 0xff, 0xff}, ErrMalformed},
		{"too new", enc(tooNew), ErrTooNew},
		{"unknown type", enc(unknown), ErrUnknownType},
		{"no version", enc(noVersion), ErrMalformed},
		{"bad payload", enc(badPayload), ErrMalformed},
		{"oversized", make([]byte, MaxEncodedSize+1), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.data); !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseSubjectAndGrammar(t *testing.T) {
	good := []string{"user:alice@example.com", "machine:ci-runner", "group:ops"}
	for _, s := range good {
		if _, err := ParseSubject(s); err != nil {
			t.Errorf("ParseSubject(%q): %v", s, err)
		}
	}
	bad := []string{"", "alice", "root:x", "user:", "user:-x", "user:a b", "user:a/b", "group:" + string(bytes.Repeat([]byte("a"), 254))}
	for _, s := range bad {
		if _, err := ParseSubject(s); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ParseSubject(%q) = %v, want ErrInvalidName", s, err)
		}
	}
	for _, r := range []string{"*", "targets/*", "targets/web-*", "identities/alice"} {
		if err := CheckResource(r); err != nil {
			t.Errorf("CheckResource(%q): %v", r, err)
		}
	}
	for _, r := range []string{"", "targets", "targets/", "hosts/x", "targets/[", "web-*"} {
		if err := CheckResource(r); err == nil {
			t.Errorf("CheckResource(%q) accepted", r)
		}
	}
	if err := CheckPrivilege("root"); err == nil {
		t.Error("CheckPrivilege(root) accepted")
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder that guards the Raft log,
// snapshots and node-to-node Apply: it must never panic, and whatever it
// accepts must encode and decode to the same event.
func FuzzDecode(f *testing.F) {
	for _, p := range []proto.Message{&UserAdded{Name: "a"}, &JobSubmitted{JobId: "j", Targets: []string{"t"}}, &BenchWrite{Data: []byte("x")}} {
		ev, _ := New("user:a", "r", time.Unix(1, 0), p)
		b, _ := Encode(ev)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := Decode(data)
		if err != nil {
			return
		}
		b, err := Encode(ev)
		if err != nil {
			t.Fatalf("accepted event does not encode: %v", err)
		}
		again, err := Decode(b)
		if err != nil || !proto.Equal(ev, again) {
			t.Fatalf("re-decode differs: %v", err)
		}
		if _, err := ToJSON(ev); err != nil {
			t.Fatalf("accepted event does not render: %v", err)
		}
	})
}
