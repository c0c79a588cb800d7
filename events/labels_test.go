package events

import (
	"strings"
	"testing"
)

// TestFormatLabels writes labels as --selector takes them: k=v pairs by
// key, comma-separated, nothing for none; what CheckLabels accepts splits
// back into the same labels.
func TestFormatLabels(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]string
		want string
	}{
		{nil, ""},
		{map[string]string{}, ""},
		{map[string]string{"role": "web"}, "role=web"},
		{map[string]string{"zone": "eu west", "role": "web", "a/b": ""}, "a/b=,role=web,zone=eu west"},
	} {
		got := FormatLabels(tc.in)
		if got != tc.want {
			t.Errorf("FormatLabels(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if err := CheckLabels("labels", tc.in); err != nil {
			t.Fatal(err)
		}
		back := map[string]string{}
		for _, kv := range strings.Split(got, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				back[k] = v
			}
		}
		if len(back) != len(tc.in) {
			t.Errorf("%q splits into %v, want %v", got, back, tc.in)
		}
		for k, v := range tc.in {
			if back[k] != v {
				t.Errorf("%q splits into %v, want %v", got, back, tc.in)
			}
		}
	}
}
