// Package query is the read side of the engine: a person's Golden Customer
// Record view (Profile) and events (Events), audiences with their sizes and
// members, and the preview of an audience rule (Preview). It reads the
// projections through State (a consistent snapshot under the engine's
// state lock) and never writes.
package query

import (
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
)

// State runs fn on a consistent snapshot of the projections and the state
// machine that built them (a rebuild's swap waits until fn returns).
type State interface {
	Read(fn func(r store.Reader, sm *projections.StateMachine) error) error
}

// Options configure a Reader.
type Options struct {
	// PhoneRegion is the default region of phone numbers in references.
	PhoneRegion string
	// ConsentDefaultDenied: a channel without a statement shows as denied.
	ConsentDefaultDenied bool
}

// Reader is the read side. It is safe for concurrent use.
type Reader struct {
	opts  Options
	keys  *seal.Keyring
	state State
}

// New returns the read side over state; keys opens sealed values.
func New(opts Options, keys *seal.Keyring, state State) *Reader {
	return &Reader{opts: opts, keys: keys, state: state}
}

// consentDefault is the consent of a channel without any statement.
func (e *Reader) consentDefault() bool { return !e.opts.ConsentDefaultDenied }

// ProfileAt loads the GCR of the person ref identifies from r, read with
// sm (inside a State.Read).
func (e *Reader) ProfileAt(r store.Reader, sm *projections.StateMachine, ref string) (*gcr.Profile, error) {
	return e.profile(r, sm, ref)
}

// ViewAt is Profile inside a State.Read.
func (e *Reader) ViewAt(r store.Reader, sm *projections.StateMachine, ref string) (*gcr.View, error) {
	return e.profileView(r, sm, ref)
}

// View is the Golden Customer Record view that Profile returns (gcr.View):
// callers of the read side need not import the projection.
type View = gcr.View
