package sshaccess

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/rpc"
)

// FuzzApplySSHAccess decodes an SSHAccess as the agent does off its stream
// and checks it as Apply does (writing nothing): bad input is an
// ErrInvalid naming a field, and what is accepted renders files sshd can
// take: principals files of only their own login, one line per principal.
func FuzzApplySSHAccess(f *testing.F) {
	fx := newFixture(f)
	good, err := proto.Marshal(fx.access(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	bad := fx.access(f)
	bad.PrincipalsByLogin["../etc"] = &rpc.Principals{Principals: []string{"x@y"}}
	bad.RevokedSerials = append(bad.RevokedSerials, 0)
	if b, err := proto.Marshal(bad); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var msg rpc.SSHAccess
		if err := proto.Unmarshal(b, &msg); err != nil {
			return
		}
		p, err := fx.m.plan(&msg)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field == "" {
				t.Fatalf("error is not a FieldError: %v", err)
			}
			return
		}
		if len(p.krl) == 0 || len(p.dropIn) == 0 || len(p.userCA) == 0 {
			t.Fatal("accepted state renders an empty file")
		}
		for login, ps := range p.principals {
			file, err := sshca.PrincipalsFile(login, ps)
			if err != nil {
				t.Fatalf("accepted principals of %q do not render: %v", login, err)
			}
			for _, line := range strings.Split(strings.TrimSuffix(string(file), "\n"), "\n")[1:] {
				if !strings.HasPrefix(line, login+"@") {
					t.Fatalf("principals file of %q lists %q", login, line)
				}
			}
		}
	})
}
