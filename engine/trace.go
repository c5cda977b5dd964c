package engine

import (
	"time"

	"github.com/aurumcdp/aurum/engine/outbox"
	"github.com/aurumcdp/aurum/store"
)

// Trace receives the times of the stages between the log and the outputs,
// for latency measurements (bench: the transition latency's stages, issue
// #15). Each field may be nil. They are called from the engine's
// goroutines (the apply loop, the outbox publisher, Pebble's) and must
// return quickly; nothing waits for them to be set.
type Trace struct {
	// Group is called after each apply group's results were acted on.
	Group func(GroupTimes)
	// Pass is called after each pass of the outbox publisher that
	// published something (outbox.Options.Trace).
	Pass func(outbox.PassTimes)
	// StateStall is called when commits to the live state store start
	// (begin) and stop waiting for Pebble to make room (store.Events).
	StateStall func(begin bool, reason string)
	// StateFlush is called after a memtable flush of the live state store.
	StateFlush func(bytes uint64, d time.Duration)
	// StateCompaction is called after a compaction of the live state store.
	StateCompaction func(level int, bytes uint64, d time.Duration)
	// StateWAL is called when the live state store starts a new WAL (a
	// memtable rotation: the commit that rotates closes and syncs the
	// previous WAL).
	StateWAL func()
	// StateSync is called after each sync of the live state's WAL: when it
	// started and how long it took.
	StateSync func(start time.Time, d time.Duration)
}

// GroupTimes are the times of one group of the apply loop (applyGroup).
type GroupTimes struct {
	First, Last uint64 // log positions of its first and last entries
	// Stored is when the log stored the first entry (its JetStream time).
	Stored time.Time
	// Read is when the apply loop had the first entry from the reader:
	// Read − Stored is the entry's wait for delivery and for the loop.
	Read time.Time
	// Applied is when every entry was applied into the batch (the commit
	// starts).
	Applied time.Time
	// Committed is when the batch was committed; Bytes its size.
	Committed time.Time
	Bytes     int
	// Done is when the results were acted on: waiters woken, the publisher
	// kicked.
	Done time.Time
	// Sync: the loop asked the state syncer to sync the WAL after this
	// group's commit.
	Sync bool
}

// passTrace is the outbox publisher's Options.Trace: Trace.Pass or nil.
func (e *Engine) passTrace() func(outbox.PassTimes) {
	if e.opts.Trace == nil {
		return nil
	}
	return e.opts.Trace.Pass
}

// liveStateOptions are the options of the live state store: the sizes of
// the memory limit, Pebble's reports to Trace.
func (e *Engine) liveStateOptions() *store.Options {
	o := e.mem.stateStore(e.opts.Logger)
	o.NoWAL = !e.opts.StateWAL
	if tr := e.opts.Trace; tr != nil {
		o.Events = &store.Events{WriteStall: tr.StateStall, Flush: tr.StateFlush, Compaction: tr.StateCompaction, WALRotated: tr.StateWAL}
	}
	return o
}
