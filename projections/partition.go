package projections

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
)

// Partition is the state machine of one slice of the profile space: the GCRs
// and event records of the profiles whose id hashes to it (key range
// PartitionPrefix(id)), and the log position it has applied. It has the
// hashicorp/raft FSM shape: Apply (deterministic), Snapshot, Restore.
//
// Invariant: Apply(cmd) writes only keys under its own prefix, and it
// writes them to the same batch as its applied position (cmd.Seq).
type Partition struct {
	id  int
	gcr *gcr.Projection
	sm  *StateMachine
	// quiet counts the evaluations skipped as quiet (audience.Set.Quiet):
	// for tests; written by the apply goroutine only.
	quiet int
	// fresh counts the histories taken from the step (freshHistory), for
	// tests likewise.
	fresh int
	// freshProfiles counts the additions to profiles the entry created
	// (Addition.Fresh), for tests likewise.
	freshProfiles int
	// The partition's timers (knowTimers): every timer key at or after
	// its wl is at timerFloor or later in the store at partition position
	// timersAt, if timersOK. Written by the partition's Apply only.
	timerFloor uint64
	timersAt   uint64
	timersOK   bool
	// timerScans counts the due-timer scans made and skipped, for tests.
	timerScans, timerSkips int
	// scratch is the memory the partition's GCR Txns share, one at a
	// time (gcr.Scratch).
	scratch gcr.Scratch
	// held is the GCR Txn that StateMachine.ApplyHeld left open across
	// entries (nil: none): its profiles are newer than the store's until
	// releaseHeld writes them.
	held *gcr.Txn
	// overHeld counts the entries that wrote their GCRs because the Txn
	// held more than the bound (StateMachine.maxHeld): for tests.
	overHeld int
}

// releaseHeld writes the profiles of the partition's held Txn through rw
// (a writer that may write the partition's keys) and closes it.
func (p *Partition) releaseHeld(rw store.ReadWriter) error {
	if p.held == nil {
		return nil
	}
	t := p.held
	p.held = nil
	t.Rebind(rw)
	if err := t.Flush(); err != nil {
		return fmt.Errorf("projections: partition %d: release the held GCRs: %w", p.id, err)
	}
	return nil
}

// PartitionCommand is what one log entry asks of one partition, as decided by
// the identity keychain: profiles merged into profiles of this partition
// (with their GCR read from their own partition), profiles of this
// partition merged away, and events to fold in. Every event goes to the
// profile that is the root at the end of the entry, so the three lists
// commute (the GCR is a join-semilattice).
type PartitionCommand struct {
	Seq    uint64
	Absorb []Absorption
	Drop   [][]byte
	Add    []Addition

	// Now is the log clock at this entry (Unix ms).
	Now int64
	// Audiences are the audiences in effect; Gen their generation: when it
	// changes, the partition re-evaluates all its profiles (backfill).
	Audiences *audience.Set
	Gen       uint64
	// Erase lists profiles of this partition an erasure removes: the
	// erased root and the profiles merged into it (see erasure.go).
	Erase [][]byte
	// Unstore lists event records of this partition a split moved to
	// another profile; Rebuild the profiles of this partition whose GCR
	// and audience state a split recomputes (split.go).
	Unstore []EventKey
	Rebuild []Rebuild

	prev            uint64 // the partition's applied position before cmd
	newTimer        uint64 // earliest timer key time cmd wrote (0: none)
	transitions     int    // audience transitions written (for Result)
	outIdx          uint32 // next index in the partition outbox for this entry
	erasedAudiences int    // memberships ended by Erase
	// gcr is the GCR Txn of this command, flushed (or held) before the
	// audience stage: the GCRs it wrote are read from it, not the store.
	gcr *gcr.Txn
	// hold keeps the partition's GCR Txn open after cmd
	// (StateMachine.ApplyHeld).
	hold bool
}

// Absorption folds the GCR From into the profile Into.
type Absorption struct {
	Into      []byte
	From      *gcr.Profile
	FromState *audience.State // the audience state of From; nil when none
}

// Addition folds an event into the GCR of Profile and stores it there.
type Addition struct {
	Profile []byte
	Record  *event.Record
	Owned   []event.IDRef
	// Fresh says Profile was created by this entry's keychain stage: it
	// has no GCR and no audience state in the store before the entry,
	// so the partition reads neither (Options.noFreshProfiles: the
	// reference that reads them).
	Fresh bool
}

// ID is the partition number.
func (p *Partition) ID() int { return p.id }

func (p *Partition) appliedKey() []byte { return append(PartitionPrefix(p.id), 'a') } // p/<i>/a

// Applied returns the last log position the partition applied.
func (p *Partition) Applied(r store.Reader) (uint64, error) {
	v, err := r.Get(p.appliedKey())
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil || len(v) != 8 {
		return 0, fmt.Errorf("projections: partition %d applied position: %v (%d bytes)", p.id, err, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Apply applies cmd and records cmd.Seq as the partition's position, in rw.
func (p *Partition) Apply(rw store.ReadWriter, cmd *PartitionCommand) error {
	prev, err := p.Applied(rw)
	if err != nil {
		return err
	}
	if cmd.Seq <= prev {
		return fmt.Errorf("projections: partition %d: apply seq %d: already applied up to %d", p.id, cmd.Seq, prev)
	}
	cmd.prev = prev
	if len(cmd.Erase) > 0 || len(cmd.Unstore) > 0 || len(cmd.Rebuild) > 0 {
		// These read and rewrite GCRs in the store (the state machine
		// releases before such entries already; this keeps the partition
		// right on its own).
		if err := p.releaseHeld(rw); err != nil {
			return err
		}
	}
	for _, id := range cmd.Erase {
		if err := p.owns(id); err != nil {
			return err
		}
		if err := p.erase(rw, cmd, id); err != nil {
			return fmt.Errorf("projections: partition %d seq %d: erase: %w", p.id, cmd.Seq, err)
		}
	}
	for _, k := range cmd.Unstore {
		if err := p.owns(k.Profile); err != nil {
			return err
		}
		if err := p.gcr.DeleteEvent(rw, k.Profile, k.KeyTime, k.ID); err != nil {
			return fmt.Errorf("projections: partition %d seq %d: split: %w", p.id, cmd.Seq, err)
		}
	}
	txn := p.held
	if txn != nil {
		txn.Rebind(rw)
	} else {
		txn = p.gcr.BeginScratch(rw, &p.scratch)
	}
	for _, a := range cmd.Add {
		if a.Fresh {
			txn.Fresh(a.Profile) // before any other use of it in txn
			p.freshProfiles++
		}
	}
	for _, rb := range cmd.Rebuild {
		if err := p.owns(rb.Profile.ID); err != nil {
			return err
		}
		for _, ev := range rb.Store {
			if err := p.gcr.PutEvent(rw, rb.Profile.ID, ev.KeyTime, ev.Record.ID, ev.Raw); err != nil {
				return fmt.Errorf("projections: partition %d seq %d: split: %w", p.id, cmd.Seq, err)
			}
		}
		if err := txn.Put(rb.Profile); err != nil {
			return err
		}
	}
	for _, a := range cmd.Absorb {
		if err := p.owns(a.Into); err != nil {
			return err
		}
		if err := txn.Absorb(a.Into, a.From); err != nil {
			return err
		}
	}
	for _, d := range cmd.Drop {
		if err := p.owns(d); err != nil {
			return err
		}
		if err := txn.Drop(d); err != nil {
			return err
		}
	}
	for _, a := range cmd.Add {
		if err := p.owns(a.Profile); err != nil {
			return err
		}
		// For the GCR (revenue) and the audience rules; here rather than
		// in the keychain stage, so that the partitions open theirs at once.
		if err := openFailure(a.Record.OpenProperties(p.sm.opts.Open)); err != nil {
			return fmt.Errorf("projections: partition %d seq %d: event %s: %w", p.id, cmd.Seq, ulidString(a.Record.ID), err)
		}
		if err := txn.Add(a.Profile, a.Record, a.Owned); err != nil {
			return err
		}
	}
	if cmd.hold && txn.Len() <= p.sm.maxHeld {
		txn.Hold()
		p.held = txn
	} else {
		if cmd.hold {
			p.overHeld++
		}
		if err := txn.Flush(); err != nil {
			return err
		}
		p.held = nil
	}
	cmd.gcr = txn
	if cmd.Audiences != nil {
		if err := p.applyAudiences(rw, cmd); err != nil {
			return fmt.Errorf("projections: partition %d seq %d: audiences: %w", p.id, cmd.Seq, err)
		}
	}
	return setUint64(rw, p.appliedKey(), cmd.Seq)
}

func (p *Partition) owns(profile []byte) error {
	if got := gcr.PartitionOf(profile, p.gcr.Partitions()); got != p.id {
		return fmt.Errorf("projections: partition %d got profile %x of partition %d", p.id, profile, got)
	}
	return nil
}

// Snapshot writes the partition's keys (its GCRs, events and position) to w.
func (p *Partition) Snapshot(r store.Reader, w io.Writer) error {
	return Snapshot(r, w, PartitionPrefix(p.id))
}

// Restore replaces the partition's keys with a snapshot.
func (p *Partition) Restore(rw store.ReadWriter, r io.Reader) error {
	return Restore(rw, r, PartitionPrefix(p.id))
}
