//go:build unix

package bench

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) the process has used so far,
// every goroutine included: on a shared machine it varies far less with
// other work than wall time does.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

// flushDirty writes the machine's dirty pages to disk (sync(2)), so that a
// step's writes are not flushed during the next step's measurement.
func flushDirty() { syscall.Sync() }
