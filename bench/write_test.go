package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The run's CPU is the process's, measured around the writes. Each write
// here computes until the process has used 5 ms more CPU (CPU, not wall
// time, so a loaded machine cannot shorten it): the run must show at least
// the 100 ms of CPU the writes burned, and no more than its cores could
// give in the time it took.
func TestWriteMeasuresClientCPU(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("process CPU is measured on unix only")
	}
	const count, each = 20, 5 * time.Millisecond
	res, err := Write(context.Background(), WriteOptions{Clients: 1, Count: count, Size: 64}, func(ctx context.Context, _ int, p []byte) error {
		// Bounded by a deadline that only catches a clock that does not move.
		until, stop := processCPU()+each, time.Now().Add(time.Minute)
		for processCPU() < until {
			if time.Now().After(stop) {
				return errors.New("process CPU did not advance")
			}
			sha256.Sum256(p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := (count * each).Seconds(); res.ClientCPU < want || res.ClientCPU > res.Duration*float64(runtime.NumCPU())+0.05 {
		t.Fatalf("client CPU %.3fs for a %.3fs run whose writes burned %.3fs of CPU", res.ClientCPU, res.Duration, want)
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
