// Package bench holds hpt's load generators (`hpt bench write`) and, in its
// subdirectories, the scripts that run them beside a peer system (etcd) so
// that figures are ratios measured on the same machine in the same run.
package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// WriteOptions shape a write benchmark.
type WriteOptions struct {
	// Clients is the number of concurrent writers, each with one request
	// outstanding at a time.
	Clients int
	// Count is the total number of writes.
	Count int
	// Size is the payload size in bytes.
	Size int
}

// Validate names the first bad field.
func (o WriteOptions) Validate() error {
	switch {
	case o.Clients < 1:
		return errors.New("clients: must be at least 1")
	case o.Count < o.Clients:
		return fmt.Errorf("count: %d is fewer than the %d clients", o.Count, o.Clients)
	case o.Size < 0 || o.Size > 1<<20:
		return errors.New("size: must be between 0 and 1 MiB")
	}
	return nil
}

// Result is what a run measured (SPEC section 10 names the JSON fields).
type Result struct {
	Clients  int     `json:"clients"`
	Count    int     `json:"count"`
	Size     int     `json:"size"`
	Rate     float64 `json:"rate"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	Errors   int     `json:"errors"`
	Duration float64 `json:"duration_s"`
	// ClientCPU is the CPU time (user and system) the writing process
	// spent during the run, in seconds: with the servers' on the same
	// machine, the CPU a write costs. Empty where it is not measured.
	ClientCPU float64 `json:"client_cpu_s,omitempty"`
}

// WriteFunc performs one committed write of payload; writer identifies the
// calling client (0..Clients-1) so implementations can spread connections.
type WriteFunc func(ctx context.Context, writer int, payload []byte) error

// Write runs opts.Count writes through write from opts.Clients goroutines
// and reports committed writes per second and latency percentiles. Failed
// writes are counted, not retried, and excluded from the rate.
func Write(ctx context.Context, opts WriteOptions, write WriteFunc) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, err
	}
	payload := make([]byte, opts.Size)
	rand.Read(payload)

	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	lat := make([][]time.Duration, opts.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	cpuStart := processCPU()
	for w := range opts.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, opts.Count/opts.Clients+1)
			for next.Add(1) <= int64(opts.Count) {
				if ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if err := write(ctx, w, payload); err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			lat[w] = mine
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpuStart

	all := slices.Concat(lat...)
	slices.Sort(all)
	res := Result{
		Clients:   opts.Clients,
		Count:     opts.Count,
		Size:      opts.Size,
		Errors:    int(failed.Load()),
		Duration:  elapsed.Seconds(),
		ClientCPU: cpu.Seconds(),
	}
	if len(all) > 0 {
		res.Rate = float64(len(all)) / elapsed.Seconds()
		res.P50ms = ms(percentile(all, 0.50))
		res.P99ms = ms(percentile(all, 0.99))
	}
	if len(all) == 0 && firstErr != nil {
		return res, fmt.Errorf("every write failed; first error: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
