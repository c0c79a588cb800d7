package provconfig

import "testing"

// parse parses src as provision.toml with the given source files, failing
// the test on error.
func parse(t *testing.T, src string, files map[string][]byte) *Config {
	t.Helper()
	cfg, err := Parse(&Bundle{Name: "provision.toml", Config: []byte(src), Files: files})
	if err != nil {
		t.Fatalf("Parse:\n%v\nconfig:\n%s", err, src)
	}
	return cfg
}
