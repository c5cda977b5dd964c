package activation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aurumcdp/aurum/activation/connector"
	"github.com/aurumcdp/aurum/store"
)

// Statuses of an erasure at one destination (DestinationErasure.Status).
const (
	ErasurePending = "pending" // not sent yet, or retried (the tool throttled or failed)
	ErasureDone    = "done"    // the tool took the person off (and deleted them where it can)
	ErasureFailed  = "failed"  // the tool refused; retried at the erasure worker's next round
)

// DestinationErasure is how far an erasure got at one destination.
type DestinationErasure struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// maxErasureError bounds DestinationErasure.Error (it goes on the log with
// the erasure's completion).
const maxErasureError = 300

// The refs a connector destination keeps, in the activation store (see
// "Erasure" in docs/connectors.md). Together they are the index of the
// people ever sent to the destination that the tool may still hold:
//
//	cr/<dest>\0<audience>\0<profile> → ref   a member, on the tool's list
//	cw/<dest>\0<audience>\0<profile> → ref   a member the consent sweep took off
//	cx/<dest>\0<profile>\0<audience> → ref   a former member: off the list, but
//	                                         the tool may keep the person (a CRM
//	                                         contact)
//
// A ref moves between them (an entry sets cr/, an exit moves it to cx/, an
// erasure deletes all three) and goes with the destination. Keys hold the
// profile id (a pseudonym), values the tool's own id of the person or the
// SHA-256 hashes of identifiers the tool was sent, never an identifier
// value: one entry per destination, audience and person ever added.
const (
	refMember    = "cr/"
	refWithdrawn = "cw/"
	refFormer    = "cx/"
)

// formerKey is where the ref of a person who left c's audience is kept.
func (w *worker) formerKey(c connector.Change) []byte {
	return []byte(refFormer + w.dest.Name + "\x00" + c.ProfileID + "\x00" + c.Audience)
}

// deleteIfSet deletes key if it is there (a read is cheaper than the
// synced commit of a delete).
func (w *worker) deleteIfSet(key []byte) error {
	if _, err := w.d.refs.Get(key); errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	return w.d.refs.Delete(key)
}

// heldRefs returns the Erase changes of every ref destination w keeps of
// profiles (members, withdrawn and former members), for erasure id.
func (w *worker) heldRefs(id string, profiles []string) ([]connector.Change, error) {
	var out []connector.Change
	add := func(audience, profile string, ref []byte) {
		for _, c := range out {
			if c.Audience == audience && c.ProfileID == profile {
				return
			}
		}
		out = append(out, connector.Change{ID: "erase:" + id + ":" + w.dest.Name + ":" + audience + ":" + profile,
			Op: connector.Erase, Audience: audience, ProfileID: profile, Ref: bytes.Clone(ref)})
	}
	for _, p := range profiles {
		for _, a := range w.dest.Audiences {
			for _, prefix := range []string{refMember, refWithdrawn} {
				v, err := w.d.refs.Get([]byte(prefix + w.dest.Name + "\x00" + a + "\x00" + p))
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return nil, err
				}
				add(a, p, v)
			}
		}
		prefix := []byte(refFormer + w.dest.Name + "\x00" + p + "\x00")
		err := w.d.refs.Scan(prefix, store.PrefixEnd(prefix), false, func(k, v []byte) bool {
			add(string(k[len(prefix):]), p, v)
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// EraseProfiles makes one attempt at taking the people of profiles (the
// erased profile and those merged into it, ULIDs) out of every connector
// destination that keeps what it was sent (its refs: members, and former
// members the tool may still hold) and returns, per destination that held
// any of them, how far it got: done (the refs are then deleted), pending
// (the tool throttled or failed, or the destination does not deliver on
// this node now) or failed (the tool refused, with its reason). The caller
// (the erasure worker) calls it again until every destination is done; a
// destination holding nothing of them is not listed. id is the erasure's,
// in the changes' idempotency keys.
func (d *Dispatcher) EraseProfiles(ctx context.Context, id string, profiles []string) []DestinationErasure {
	d.mu.Lock()
	dests := slices.Clone(d.dests)
	running := make(map[string]*worker, len(d.workers))
	for name, w := range d.workers {
		running[name] = w
	}
	d.mu.Unlock()
	var out []DestinationErasure
	for _, dest := range dests {
		if dest.IsWebhook() || !Kinds()[dest.Kind].KeepsList {
			continue
		}
		w := running[dest.Name]
		probe := w
		if probe == nil || probe.ctx.Err() != nil {
			probe = &worker{d: d, dest: dest}
		}
		changes, err := probe.heldRefs(id, profiles)
		if err != nil {
			out = append(out, DestinationErasure{Name: dest.Name, Status: ErasurePending,
				Error: clip(fmt.Sprintf("reading the refs: %v", err))})
			continue
		}
		if len(changes) == 0 {
			continue
		}
		if probe != w {
			out = append(out, DestinationErasure{Name: dest.Name, Status: ErasurePending,
				Error: "the destination does not deliver on this node now"})
			continue
		}
		out = append(out, w.erase(ctx, changes))
	}
	return out
}

// erase makes one attempt at delivering changes (Erase) to the tool.
func (w *worker) erase(ctx context.Context, changes []connector.Change) DestinationErasure {
	st := DestinationErasure{Name: w.dest.Name, Status: ErasureDone}
	for lo := 0; lo < len(changes); lo += w.conn.MaxBatch() {
		if ctx.Err() != nil {
			return DestinationErasure{Name: w.dest.Name, Status: ErasurePending, Error: ctx.Err().Error()}
		}
		batch := changes[lo:min(lo+w.conn.MaxBatch(), len(changes))]
		res, err := w.deliver(batch)
		if err != nil {
			return DestinationErasure{Name: w.dest.Name, Status: ErasurePending, Error: clip(err.Error())}
		}
		for i, r := range res {
			switch r.Status {
			case connector.Delivered:
				if err := w.delivered(batch[i], r); err != nil {
					return DestinationErasure{Name: w.dest.Name, Status: ErasurePending, Error: clip(err.Error())}
				}
			case connector.Retry:
				if st.Status != ErasureFailed {
					st = DestinationErasure{Name: w.dest.Name, Status: ErasurePending, Error: clip(r.Reason)}
				}
			default:
				st = DestinationErasure{Name: w.dest.Name, Status: ErasureFailed, Error: clip(r.Reason)}
			}
		}
	}
	if st.Status == ErasureDone {
		w.logger.Info("activation: erasure delivered", "changes", len(changes))
	}
	return st
}

func clip(s string) string {
	if len(s) <= maxErasureError {
		return s
	}
	return strings.ToValidUTF8(s[:maxErasureError], "") + "…"
}
