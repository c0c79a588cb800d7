package agent

import (
	"maps"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/internal/secretvars"
	"github.com/hpt-dev/hpt/rpc"
)

// A job with secret vars runs only with all of them, as their digest says;
// its templates see them as vars.
func TestDispatchVars(t *testing.T) {
	key, err := secretvars.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{"pw": "hunter2-value"}
	digest := secretvars.Digest(key, "j1", values)
	dispatch := func(sv *rpc.SecretVars) *rpc.JobDispatch {
		return &rpc.JobDispatch{JobId: "j1", Vars: map[string]string{"user": "u"}, SecretVars: sv}
	}
	vars, secrets, err := dispatchVars(dispatch(&rpc.SecretVars{Names: []string{"pw"}, Digest: digest, Key: key, Values: values}))
	if err != nil || !maps.Equal(vars, map[string]string{"user": "u", "pw": "hunter2-value"}) || !maps.Equal(secrets, values) {
		t.Fatalf("dispatchVars: %v, %v, %v", vars, secrets, err)
	}
	if vars, secrets, err := dispatchVars(dispatch(nil)); err != nil || vars["user"] != "u" || secrets != nil {
		t.Fatalf("without secret vars: %v, %v, %v", vars, secrets, err)
	}
	for name, tc := range map[string]struct {
		sv   *rpc.SecretVars
		want string
	}{
		"none carried": {&rpc.SecretVars{Names: []string{"pw"}, Digest: digest}, "its dispatch carried none; not run"},
		"other value":  {&rpc.SecretVars{Names: []string{"pw"}, Digest: digest, Key: key, Values: map[string]string{"pw": "other-value"}}, "do not match the digest"},
		"other key":    {&rpc.SecretVars{Names: []string{"pw"}, Digest: digest, Key: make([]byte, 32), Values: values}, "do not match the digest"},
		"a name short": {&rpc.SecretVars{Names: []string{"pw", "tls"}, Digest: digest, Key: key, Values: values}, "do not match the digest"},
	} {
		_, _, err := dispatchVars(dispatch(tc.sv))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "-value") {
			t.Errorf("%s: the error carries a value: %v", name, err)
		}
	}
}
