package check

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestPollReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	err := Poll(time.Minute, time.Microsecond, func() error {
		calls++
		if calls < 5 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if err != nil || calls != 5 {
		t.Fatalf("Poll = %v after %d calls, want nil after 5", err, calls)
	}
}

func TestPollGivesTheLastErrorAtTheDeadline(t *testing.T) {
	calls := 0
	err := Poll(0, time.Hour, func() error {
		calls++
		return fmt.Errorf("not yet (%d)", calls)
	})
	// A zero timeout still runs fn once, and does not wait an interval.
	if err == nil || err.Error() != "not yet (1)" || calls != 1 {
		t.Fatalf("Poll = %v after %d calls, want the first call's error", err, calls)
	}
}

// fakeT records Fatalf instead of stopping the goroutine.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestForFailsTheTestWithTheError(t *testing.T) {
	ft := &fakeT{TB: t}
	For(ft, 0, time.Millisecond, func() error { return errors.New("boom") })
	if ft.failed == "" || ft.failed != "condition not met within 0s: boom" {
		t.Fatalf("Fatalf(%q), want the condition's error", ft.failed)
	}
	ft = &fakeT{TB: t}
	For(ft, time.Minute, time.Millisecond, func() error { return nil })
	if ft.failed != "" {
		t.Fatalf("a condition that holds failed the test: %q", ft.failed)
	}
}
