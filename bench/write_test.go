package bench

import (
	"context"
	"crypto/sha256"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The run's CPU is the process's, measured around the writes: a writer
// that only computes must show about as much CPU as it ran for.
func TestWriteMeasuresClientCPU(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("process CPU is measured on unix only")
	}
	res, err := Write(context.Background(), WriteOptions{Clients: 1, Count: 20, Size: 64}, func(_ context.Context, _ int, p []byte) error {
		deadline := time.Now().Add(5 * time.Millisecond)
		for time.Now().Before(deadline) {
			sha256.Sum256(p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ClientCPU < 0.05 || res.ClientCPU > res.Duration*float64(runtime.NumCPU())+0.05 {
		t.Fatalf("client CPU %.3fs for a %.3fs run of busy writes, want about the run's length", res.ClientCPU, res.Duration)
	}
}

func TestWriteOptionsNameTheBadField(t *testing.T) {
	for opts, want := range map[WriteOptions]string{
		{Clients: 0, Count: 1}:                "clients",
		{Clients: 4, Count: 2}:                "count",
		{Clients: 1, Count: 1, Size: -1}:      "size",
		{Clients: 1, Count: 1, Size: 2 << 20}: "size",
	} {
		err := opts.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%+v: error %v, want one naming %s", opts, err, want)
		}
	}
}
