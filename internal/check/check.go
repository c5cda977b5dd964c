// Package check is test support: it polls a condition until it holds or a
// deadline passes, in place of sleeping for a guessed time (the checkFor of
// nats-server's tests).
package check

import (
	"testing"
	"time"
)

// For calls fn every interval until it returns nil, and fails the test
// (t.Fatalf, with fn's last error) once timeout has passed without that.
// fn runs at least once, and once more at or after the deadline, so a
// condition that holds by then is never reported as failed. An interval of
// 0 or less polls every millisecond.
func For(t testing.TB, timeout, interval time.Duration, fn func() error) {
	t.Helper()
	if err := Poll(timeout, interval, fn); err != nil {
		t.Fatalf("condition not met within %v: %v", timeout, err)
	}
}

// Poll is For without a test: it returns nil as soon as fn does, or fn's
// last error once timeout has passed. For goroutines other than the test's,
// which must not call t.Fatalf.
func Poll(timeout, interval time.Duration, fn func() error) error {
	if interval <= 0 {
		interval = time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(min(interval, time.Until(deadline)+time.Millisecond))
	}
}
