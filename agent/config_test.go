package agent

import (
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/agent/provision"
)

// A Config with only the keystore set gets the documented defaults.
func TestConfigDefaults(t *testing.T) {
	d := DefaultConfig()
	if d.Listen != ":6632" || d.GossipListen != ":7402" || d.MaxMessageSize != provision.MaxBundleSize+1<<20 {
		t.Fatalf("DefaultConfig() = %+v, not the documented defaults", d)
	}
	c := Config{Keystore: "/x/t.keystore.db"}.withDefaults()
	if c.Listen != d.Listen || c.GossipListen != d.GossipListen || c.MaxMessageSize != d.MaxMessageSize ||
		c.Journal != "/x/t.keystore.db.journal" || c.Logger == nil {
		t.Fatalf("keystore alone with defaults = %+v", c)
	}
	c = Config{Keystore: "k", Listen: "127.0.0.1:0", Journal: "j", MaxMessageSize: 10}.withDefaults()
	if c.Listen != "127.0.0.1:0" || c.Journal != "j" || c.MaxMessageSize != 10 {
		t.Fatalf("set fields changed by defaults: %+v", c)
	}
	if err := (&Config{Keystore: "k"}).Validate(); err != nil {
		t.Fatalf("keystore alone: %v", err)
	}
}

// Every bad field is refused by name, before anything starts.
func TestConfigValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		field string
		cfg   Config
	}{
		{"keystore: required", Config{}},
		{"listen address", Config{Keystore: "k", Listen: "6632"}},
		{"gossip address", Config{Keystore: "k", GossipListen: "7402"}},
		{"join address", Config{Keystore: "k", Join: []string{"10.0.0.1"}}},
		{"server address", Config{Keystore: "k", Servers: []string{"node1"}}},
		{"max message size", Config{Keystore: "k", MaxMessageSize: -1}},
		{"labels", Config{Keystore: "k", Labels: map[string]string{"bad key": "v"}}},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate() = %v, want an error naming it", tc.field, err)
			continue
		}
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), "agent config: ") {
			t.Errorf("%s: New() = %v, want the config error", tc.field, err)
		}
	}
	// The listen address is not used with a listener or without the port.
	if err := (&Config{Keystore: "k", Listen: "bad", NoDirect: true}).Validate(); err != nil {
		t.Errorf("NoDirect with a bad listen address: %v", err)
	}
}
