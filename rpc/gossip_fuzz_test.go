package rpc

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeGossipMeta decodes arbitrary member metadata: anyone holding the
// gossip key can announce any bytes. Over-long input is refused; whatever is
// accepted re-encodes within memberlist's limit (or is refused by Encode,
// never silently cut) and decodes back to the same value.
func FuzzDecodeGossipMeta(f *testing.F) {
	for _, m := range []GossipMeta{
		{Role: RoleServer, Addr: "127.0.0.1:7000"},
		{Role: RoleAgent, Addr: "127.0.0.1:7100", Labels: map[string]string{"role": "web", "dc": "eu-1"}},
		{Role: RoleAgent},
	} {
		b, err := m.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{"", "null", "{}", `{"r":1}`, `{"l":{"a":null}}`, `{"r":"server","r":"agent"}`,
		`{"r":"\ud800"}`, `[`, `{"l":{"` + strings.Repeat("k", 600) + `":"v"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeGossipMeta(b)
		if len(b) > MaxGossipMeta && err == nil {
			t.Fatalf("%d bytes of metadata accepted, over the %d limit", len(b), MaxGossipMeta)
		}
		if err != nil {
			return
		}
		enc, err := m.Encode()
		if err != nil {
			// Decoding can grow a value (invalid UTF-8 becomes U+FFFD);
			// Encode must then refuse, not cut.
			if !strings.Contains(err.Error(), "memberlist carries at most") {
				t.Fatalf("Encode of a decoded value: %v", err)
			}
			return
		}
		if len(enc) > MaxGossipMeta {
			t.Fatalf("Encode returned %d bytes, over the limit", len(enc))
		}
		back, err := DecodeGossipMeta(enc)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", m, err)
		}
		if !reflect.DeepEqual(normal(back), normal(m)) {
			t.Fatalf("decode(encode(x)) = %+v, want %+v", back, m)
		}
	})
}

// normal treats an empty label map like none: omitempty drops it.
func normal(m GossipMeta) GossipMeta {
	if len(m.Labels) == 0 {
		m.Labels = nil
	}
	return m
}
