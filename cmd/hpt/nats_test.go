package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNATSFlags(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(creds, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	a := &app{getenv: func(k string) string { return env[k] }}
	for _, tc := range []struct {
		name    string
		flags   natsFlags
		env     map[string]string
		wantErr string // empty: valid
		off     bool
	}{
		{name: "off", off: true},
		{name: "options without url", flags: natsFlags{creds: creds}, wantErr: "--nats-creds: needs --nats-url"},
		{name: "url", flags: natsFlags{url: "nats://127.0.0.1:4222", format: "json"}},
		{name: "url from env", env: map[string]string{"HPT_NATS_URL": "nats://127.0.0.1:4222"}},
		{name: "bad scheme", flags: natsFlags{url: "http://127.0.0.1:4222"}, wantErr: "nats url"},
		{name: "bad format", flags: natsFlags{url: "nats://127.0.0.1:4222", format: "xml"}, wantErr: "format"},
		{name: "bad stream", flags: natsFlags{url: "nats://127.0.0.1:4222", stream: "a.b"}, wantErr: "stream"},
		{name: "missing creds file", flags: natsFlags{url: "nats://127.0.0.1:4222", creds: creds + ".gone"}, wantErr: "--nats-creds"},
		{name: "cert without key", flags: natsFlags{url: "nats://127.0.0.1:4222", cert: creds}, wantErr: "--nats-cert and --nats-key"},
		{name: "creds", flags: natsFlags{url: "nats://127.0.0.1:4222", creds: creds}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env = tc.env
			cfg, err := tc.flags.config(a)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case tc.off != (cfg == nil):
				t.Fatalf("config %+v, want off=%t", cfg, tc.off)
			case !tc.off && cfg.URL == "":
				t.Fatal("no URL in config")
			}
		})
	}
}
