package provconfig

import "testing"

const key1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvL2Sj8wF3bcvjlCrJzYmmp4ZzAn5Y7fSyr4uLbd0Jq alice@laptop"

func TestAuthorizedKey(t *testing.T) {
	for line, want := range map[string]string{
		key1:                                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvL2Sj8wF3bcvjlCrJzYmmp4ZzAn5Y7fSyr4uLbd0Jq",
		"  " + key1 + "  ":                      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvL2Sj8wF3bcvjlCrJzYmmp4ZzAn5Y7fSyr4uLbd0Jq",
		`from="10.0.0.1",command="x y" ` + key1: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvL2Sj8wF3bcvjlCrJzYmmp4ZzAn5Y7fSyr4uLbd0Jq",
		"# " + key1:                             "",
		"ssh-ed25519 not-base64!":               "",
		"":                                      "",
	} {
		got, ok := AuthorizedKey(line)
		if got != want || ok != (want != "") {
			t.Errorf("AuthorizedKey(%q) = %q, %v; want %q", line, got, ok, want)
		}
	}
}
