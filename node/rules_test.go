package node

import (
	"testing"

	"google.golang.org/grpc"
)

// TestEveryMethodHasARule walks the services a node registers and fails on
// any method missing from the authorization table (which the interceptor
// would refuse), and on table entries for methods that do not exist.
func TestEveryMethodHasARule(t *testing.T) {
	s := grpc.NewServer()
	(&Node{}).registerServices(s)
	rules := methodRules(nil)
	served := map[string]bool{}
	for svc, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			name := "/" + svc + "/" + m.Name
			served[name] = true
			if _, ok := rules[name]; !ok {
				t.Errorf("%s has no authorization rule", name)
			}
		}
	}
	if len(served) < 20 {
		t.Fatalf("only %d methods registered; the walk is not seeing the services", len(served))
	}
	for name := range rules {
		if !served[name] {
			t.Errorf("rule for %s, which no service serves", name)
		}
	}
}

// TestWriteMethodsExist guards isWrite's list against names no service
// serves (a typo there would make a write wait for its min index again).
func TestWriteMethodsExist(t *testing.T) {
	s := grpc.NewServer()
	(&Node{}).registerServices(s)
	writes := 0
	for svc, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			if isWrite("/" + svc + "/" + m.Name) {
				writes++
			}
		}
	}
	if writes != 17 {
		t.Fatalf("%d served methods are writes, want the 17 isWrite lists", writes)
	}
}
