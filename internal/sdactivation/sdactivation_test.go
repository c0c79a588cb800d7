package sdactivation

import (
	"os"
	"strconv"
	"testing"
)

func TestListenerIgnoresOthersAndRejectsBadCounts(t *testing.T) {
	for _, tc := range []struct {
		pid, fds string
		wantErr  bool
	}{
		{"", "", false},
		{"1", "1", false}, // meant for another process
		{strconv.Itoa(os.Getpid()), "x", true},
		{strconv.Itoa(os.Getpid()), "0", true},
		{strconv.Itoa(os.Getpid()), "2", true},
	} {
		t.Setenv("LISTEN_PID", tc.pid)
		t.Setenv("LISTEN_FDS", tc.fds)
		ln, err := Listener()
		if ln != nil || (err != nil) != tc.wantErr {
			t.Errorf("LISTEN_PID=%q LISTEN_FDS=%q: listener %v, error %v; want error %t", tc.pid, tc.fds, ln, err, tc.wantErr)
		}
		if tc.pid != "" && (os.Getenv("LISTEN_PID") != "" || os.Getenv("LISTEN_FDS") != "") {
			t.Errorf("LISTEN_PID=%q LISTEN_FDS=%q: variables left set", tc.pid, tc.fds)
		}
	}
}
