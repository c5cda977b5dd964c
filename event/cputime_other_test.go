//go:build !unix

package event_test

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
