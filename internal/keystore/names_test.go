package keystore

import (
	"errors"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/events"
)

// A keystore names keys and targets with the log's grammar: a name the
// keystore takes is one the cluster takes, and the other way round
// (`_web` was a keystore name no cluster could register, `web+1` a target
// name no keystore could hold).
func TestNamesFollowTheLogsGrammar(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web+1", true},
		{"web_1", true},
		{"alice@example.com", true},
		{"w-1.prod", true},
		{"9lives", true},
		{strings.Repeat("a", 253), true},
		{"_web", false},
		{".web", false},
		{"-web", false},
		{"+web", false},
		{"", false},
		{"web/1", false},
		{"web 1", false},
		{"wéb", false},
		{strings.Repeat("a", 254), false},
	} {
		if logErr := events.CheckName("target", tc.name); (logErr == nil) != tc.ok {
			t.Fatalf("events.CheckName(%.20q) = %v; this table is out of date", tc.name, logErr)
		}
		k := newKeystore(t, KindTarget)
		pub, _ := newKey(t)
		addErr := k.AddKey(Key{Name: tc.name, Role: RoleClient, Public: pub})
		nameErr := k.SetName(tc.name)
		for what, err := range map[string]error{"AddKey": addErr, "SetName": nameErr} {
			if tc.ok && err != nil {
				t.Errorf("%s(%.20q): %v, want it accepted as the log accepts it", what, tc.name, err)
			}
			if !tc.ok && !errors.Is(err, events.ErrInvalidName) {
				t.Errorf("%s(%.20q) = %v, want ErrInvalidName as the log refuses it", what, tc.name, err)
			}
		}
	}
}
