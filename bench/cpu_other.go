//go:build !unix

package bench

import "time"

// processCPU is not measured here: Result.ClientCPU stays empty.
func processCPU() time.Duration { return 0 }
