// Package projections holds Aurum's state machine: the deterministic function
// from the log to the projections (dedup table, identity keychain, Golden
// Customer Record partitions, outbox). The engine runs it in one goroutine,
// which applies the partitions of an entry at once (Options.ApplyWorkers);
// the cluster layer can replicate it unchanged (it has the hashicorp/raft FSM
// shape: Apply, Snapshot, Restore).
//
// Contract: Apply must be deterministic. Given the same state and the same
// entry it writes the same keys and values. It never reads the wall clock
// (log time is the receive time stamped on each record at the edge), never
// draws random numbers and never iterates a Go map without sorting.
package projections

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/projections/features"
	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/projections/match"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// Log subjects the state machine understands.
const (
	SubjectEvents  = "aurum.log.events"  // event.Batch: binary (event.EncodeBatch)
	SubjectControl = "aurum.log.control" // msgpack Control
)

// Output subjects written through the outbox.
const (
	SubjectMerged = "aurum.identity.merged"
)

// Key prefixes of the state store. Every key of the state machine starts with
// one of these; ARCHITECTURE.md documents the full layout.
var (
	keyApplied     = []byte("meta/applied")    // uint64 BE: last applied log sequence
	keyPartitions  = []byte("meta/partitions") // uint32 BE: partition count, fixed at creation
	keyIdentity    = []byte("meta/identity")   // JSON identity.Config in effect (absent: the default)
	keyNow         = []byte("meta/now")        // uint64 BE: the log clock, Unix ms (max entry time so far)
	keyAudienceGen = []byte("meta/audgen")     // uint64 BE: generation of the audience definitions
	prefixAudience = []byte("ad/")             // ad/<name> → msgpack audience.Definition
	prefixDedup    = []byte("dd/")             // dd/<source>\x00<sha256(messageId)[:16]> → expiry ms
	prefixDedupX   = []byte("dx/")             // dx/<expiry ms u64 BE><dd key> → nil (expiry index)
	prefixSource   = []byte("src/")            // src/<name> → msgpack Source
	prefixMerge    = []byte("mg/")             // mg/<into16><seq u64 BE><idx u32 BE> → msgpack MergeRecord
	prefixOutbox   = []byte("ob/")             // ob/<seq u64 BE><idx u32 BE> → msgpack OutMsg
	// The keychain's keys (projections/identity): ik/<type>/<hash16> →
	// root profile id, ip/<profile16> → node.
	prefixIdentKey     = []byte("ik/")
	prefixIdentProfile = []byte("ip/")
)

// ErrCorruptEntry marks a log entry that could not be decoded.
var ErrCorruptEntry = errors.New("projections: corrupt log entry")

// ErrUnreadable marks a sealed value that will never open: its key was
// destroyed (an erasure) or is unknown, or the value is corrupt. Options.Open
// wraps such failures with it, and the state machine takes the value as
// absent, alike in every replay. Any other error of Open (an I/O error
// reading a key) fails Apply, and Preview: taking the value as absent would
// make this apply differ from a replay's.
var ErrUnreadable = errors.New("projections: sealed value unreadable")

// openFailure returns nil when err is nil or marks a value that will never
// open (ErrUnreadable), and err wrapped otherwise.
func openFailure(err error) error {
	if err == nil || errors.Is(err, ErrUnreadable) {
		return nil
	}
	return fmt.Errorf("projections: open a sealed value: %w", err)
}

// Options configure a StateMachine.
// DefaultRowCacheBytes is the default bound of the GCR's cache of decoded
// feature rows (Options.RowCacheBytes).
const DefaultRowCacheBytes = gcr.DefaultRowCacheBytes

type Options struct {
	Partitions  int   // default 16
	DedupWindow int64 // milliseconds of log time a messageId is remembered; default 30 days
	// MaxPrunePerEntry bounds the dedup-expiry work done per entry. Default 1024.
	MaxPrunePerEntry int
	// Open unseals personal values (trait values and event properties that
	// audience rules and the GCR read). It must be deterministic for a given
	// key and value, and wrap the failures that will never change with
	// ErrUnreadable (any other error fails Apply). nil: rules see no traits
	// and no properties.
	Open func(keyID, sealed []byte) ([]byte, error)
	// BackfillPerEntry bounds how many profiles each partition re-evaluates
	// per log entry after an audience changed. Default 512.
	BackfillPerEntry int
	// TimersPerEntry bounds how many due timers each partition runs per log
	// entry. Default 4096.
	TimersPerEntry int
	// CacheBytes bounds the state cache: values of hot keys (keychain,
	// GCRs, audience states) kept between entries (see stateCache).
	// Default DefaultCacheBytes; negative: no cache.
	CacheBytes int
	// DedupFilterBytes sizes the in-memory filter over the dedup keys
	// that spares the store look-up of most new message ids (see
	// keyFilter). It does not grow with the data. Default
	// DefaultDedupFilterBytes; negative: no filter (every messageId is
	// looked up in the store).
	DedupFilterBytes int
	// KeychainFilterBytes sizes the in-memory filter over the keychain's
	// keys (ik/, ip/) that spares the store look-ups of new identifiers
	// and of the profile id a new person's first event creates (see
	// keyFilter). It does not grow with the data. Default
	// DefaultKeychainFilterBytes; negative: no filter.
	KeychainFilterBytes int
	// RowCacheBytes bounds the GCR's cache of decoded feature rows
	// (gcr.Options.RowCacheBytes); 0: DefaultRowCacheBytes, negative:
	// none.
	RowCacheBytes int
	// BlockHash hashes a blocking key of probabilistic matching for the
	// block index (blockindex.go); deterministic. nil: sha256[:16]. The
	// engine passes a keyed hash, so no plaintext value is a key.
	BlockHash func(key string) []byte
	// NoFeatures turns the feature projection off (gcr.Options.NoFeatures):
	// the baseline of its benchmark only; it changes the state.
	NoFeatures bool
	// InteractionKey maps an event's category or product value to the key
	// the feature row keeps its interactions under (gcr.Options.
	// InteractionKey): a keyed hash, deterministic for a given value, so
	// that no property value is kept in clear. The rules' affinity(...)
	// reads them through it. nil: no interactions are kept, every affinity
	// is null.
	InteractionKey features.KeyFunc
	// ApplyWorkers is how many partitions Apply runs at once after the
	// keychain stage, each into its own overlay of the entry's batch
	// (applyPartitions); the overlays are then written to the batch in
	// partition order, so the result is the same for any value. Open and
	// InteractionKey must then be safe for concurrent use. Default
	// DefaultApplyWorkers(); 1 or less: one partition after the other.
	ApplyWorkers int
	// noFreshHistory turns off the shortcut of partition.history for a
	// profile whose only stored events are the step's (freshHistory):
	// the reference the equivalence tests compare with.
	noFreshHistory bool
	// noFreshProfiles turns off the shortcut for profiles created by the
	// entry (Addition.Fresh: no read of their GCR, audience state, or GCR
	// to absorb): the reference the equivalence tests compare with.
	noFreshProfiles bool
	// noTimerFloor turns off the skipping of due-timer scans when the
	// partition's timers are known to be later (Partition.knowTimers):
	// the reference the equivalence tests compare with.
	noTimerFloor bool
	// noAudienceIndex turns off the audience dependency index
	// (audience.Step.Settled and the skipping of quiet evaluations): the
	// reference the equivalence tests compare with.
	noAudienceIndex bool
}

// StateMachine applies log entries to a store.ReadWriter.
type StateMachine struct {
	opts       Options
	keychain   atomic.Pointer[identity.Keychain] // replaced by identity.config control records
	audiences  atomic.Pointer[audience.Set]      // replaced by audience.put/delete control records
	models     atomic.Pointer[[]Model]           // replaced by model.put/delete control records
	gcr        *gcr.Projection
	partitions []*Partition
	// ownerReleases counts the held partitions released before a read of
	// one of their profiles (releaseOwner): for tests; apply goroutine only.
	ownerReleases int
	// maxHeld bounds the profiles a partition holds across entries
	// (ApplyHeld): DefaultMaxHeldProfiles; tests lower it.
	maxHeld int
	cache   *stateCache // used by Apply and Skip only
	ddf     *keyFilter  // dedup filter; nil: none; used by Apply and Load only
	kcf     *keyFilter  // keychain filter; nil: none; used by Apply and Load only
}

// Open returns a state machine over the state in r (a new or existing
// state store; the partition count must be the store's): New, then Load.
// It is how the engine builds every state machine (the live one, a
// rebuild's, an offline replay's).
func Open(r store.Reader, opts Options) (*StateMachine, error) {
	sm := New(opts)
	if err := sm.Load(r); err != nil {
		return nil, err
	}
	return sm, nil
}

// New returns a state machine over empty state (Open for a store that may
// hold state).
func New(opts Options) *StateMachine {
	if opts.Partitions == 0 {
		opts.Partitions = 16
	}
	if opts.DedupWindow == 0 {
		opts.DedupWindow = 30 * 24 * 3600 * 1000
	}
	if opts.MaxPrunePerEntry == 0 {
		opts.MaxPrunePerEntry = 1024
	}
	if opts.BackfillPerEntry == 0 {
		opts.BackfillPerEntry = 512
	}
	if opts.TimersPerEntry == 0 {
		opts.TimersPerEntry = 4096
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	if opts.DedupFilterBytes == 0 {
		opts.DedupFilterBytes = DefaultDedupFilterBytes
	}
	if opts.KeychainFilterBytes == 0 {
		opts.KeychainFilterBytes = DefaultKeychainFilterBytes
	}
	if opts.ApplyWorkers == 0 {
		opts.ApplyWorkers = DefaultApplyWorkers()
	}
	sm := &StateMachine{
		opts:    opts,
		maxHeld: DefaultMaxHeldProfiles,
		gcr:     gcr.New(&gcr.Options{Partitions: opts.Partitions, NoFeatures: opts.NoFeatures, InteractionKey: opts.InteractionKey, RowCacheBytes: opts.RowCacheBytes}),
		cache:   newStateCache(opts.CacheBytes),
		ddf:     newDedupFilter(opts.DedupFilterBytes),
		kcf:     newKeychainFilter(opts.KeychainFilterBytes),
	}
	sm.keychain.Store(identity.New(identity.DefaultConfig()))
	empty, _ := audience.Compile(nil)
	sm.audiences.Store(empty)
	sm.models.Store(&[]Model{})
	for i := range opts.Partitions {
		sm.partitions = append(sm.partitions, &Partition{id: i, gcr: sm.gcr, sm: sm})
	}
	return sm
}

// Partition returns partition i.
func (sm *StateMachine) Partition(i int) *Partition { return sm.partitions[i] }

// Keychain returns the identity keychain (read side).
func (sm *StateMachine) Keychain() *identity.Keychain { return sm.keychain.Load() }

// Load restores what the state machine keeps outside the store's reach of
// Apply — the identity config in effect, the audiences, the dedup and
// keychain filters —
// from a state store. Call it before applying, on a store that was built
// by this state machine, again after discarding a batch that Apply wrote
// (those parts moved with it), and after any change to the store other
// than through Apply and Skip (Restore). A state machine that was never
// loaded builds its filters from the store at its first Apply.
func (sm *StateMachine) Load(r store.Reader) error {
	sm.forgetTimers()
	sm.dropHeld()
	if err := sm.loadAudiences(r); err != nil {
		return err
	}
	if err := sm.loadModels(r); err != nil {
		return err
	}
	if err := sm.ddf.build(r); err != nil {
		return err
	}
	if err := sm.kcf.build(r); err != nil {
		return err
	}
	v, err := r.Get(keyIdentity)
	if errors.Is(err, store.ErrNotFound) {
		sm.keychain.Store(identity.New(identity.DefaultConfig())) // Load may go back to before a config
		return nil
	}
	if err != nil {
		return fmt.Errorf("projections: load identity config: %w", err)
	}
	cfg, err := decodeIdentityConfig(v)
	if err != nil {
		return fmt.Errorf("projections: load identity config: %w", err)
	}
	sm.keychain.Store(identity.New(cfg))
	return nil
}

// IdentityConfig is the canonical encoding of the identity config in
// effect in state r (the default when none was applied). Compare it with
// EncodeIdentityConfig of a wanted config to decide whether to append a
// control record.
func IdentityConfig(r store.Reader) ([]byte, error) {
	v, err := r.Get(keyIdentity)
	if errors.Is(err, store.ErrNotFound) {
		return EncodeIdentityConfig(identity.DefaultConfig())
	}
	return v, err
}

// EncodeIdentityConfig returns the canonical (JSON, sorted keys) encoding
// of cfg, as carried by an identity.config control record.
func EncodeIdentityConfig(cfg identity.Config) ([]byte, error) {
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("projections: encode identity config: %w", err)
	}
	return data, nil
}

func decodeIdentityConfig(data []byte) (identity.Config, error) {
	var cfg identity.Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// GCR returns the Golden Customer Record projection (read side).
func (sm *StateMachine) GCR() *gcr.Projection { return sm.gcr }

// Partitions returns the number of GCR partitions.
func (sm *StateMachine) Partitions() int { return sm.opts.Partitions }

// Control is a state change other than an event: a source created, ...
type Control struct {
	Kind        string              `msgpack:"k"` // "source.create"
	Source      Source              `msgpack:"s,omitempty"`
	Config      []byte              `msgpack:"cfg,omitempty"`
	Audience    audience.Definition `msgpack:"aud,omitempty"`
	Destination Destination         `msgpack:"dst,omitempty"`
	Erasure     ErasureRequest      `msgpack:"er,omitempty"`
	Token       Token               `msgpack:"tok,omitempty"`
	User        User                `msgpack:"usr,omitempty"`
	Model       Model               `msgpack:"md,omitempty"`
	// Probabilistic identity (matching.go).
	Match         *MatchRecord    `msgpack:"mt,omitempty"`
	Review        *ReviewDecision `msgpack:"rv,omitempty"`
	IdentityModel *match.Model    `msgpack:"im,omitempty"`
	Split         *SplitRequest   `msgpack:"sp,omitempty"` // identity.split (split.go)
	Progress      *MatchProgress  `msgpack:"pg,omitempty"`
	Time          int64           `msgpack:"t"` // Unix ms, stamped at the edge
}

// Control kinds.
const (
	ControlSourceCreate   = "source.create"   // Source
	ControlSourceRotate   = "source.rotate"   // Source: Name, the new KeyHash, OldKeyUntil (the old key's end)
	ControlSourceDelete   = "source.delete"   // Source.Name
	ControlIdentityConfig = "identity.config" // Config: JSON identity.Config, in effect from this entry on
	ControlAudiencePut    = "audience.put"    // Audience: create or replace (Version is assigned by Apply)
	ControlAudienceDelete = "audience.delete" // Audience.Name
	ControlTick           = "tick"            // Time: the passage of time
)

// Source is an ingest source. Only the hash of its write key is kept;
// after a rotation also the hash of the previous key, valid until
// OldKeyUntil (Unix ms, edge time).
type Source struct {
	Name        string `msgpack:"n"`
	KeyHash     []byte `msgpack:"h"`
	Created     int64  `msgpack:"c"`
	OldKeyHash  []byte `msgpack:"oh,omitempty"`
	OldKeyUntil int64  `msgpack:"ou,omitempty"`
	// Deleted marks, in Result.Sources only, a source deleted by the entry.
	Deleted bool `msgpack:"-"`
}

// MergeRecord records one merge and what caused it.
type MergeRecord struct {
	From    []byte `msgpack:"f"`
	Into    []byte `msgpack:"i"`
	EventID []byte `msgpack:"e"`
	Type    string `msgpack:"t"`
	Time    int64  `msgpack:"tm"`
	Seq     uint64 `msgpack:"q"`
	// Match is the id of the probabilistic match (mt/) that caused the
	// merge; EventID is then that id and Type "probabilistic".
	Match []byte `msgpack:"m,omitempty"`
}

// OutMsg is an outbox entry: a message to publish with a deterministic id.
type OutMsg struct {
	Subject string `msgpack:"s"`
	MsgID   string `msgpack:"id"`
	Data    []byte `msgpack:"d"`
	// Identifiers (sealed) are unsealed by the publisher and added to Data
	// as "identifiers": {type: [values]}.
	Identifiers []OutIdent `msgpack:"ids,omitempty"`
	// Profile is the profile the message is about (published as the
	// Aurum-Profile header, so an erasure finds its copies); nil for an
	// erased exit, which must not be found and deleted.
	Profile []byte `msgpack:"p,omitempty"`
	// Consent holds, for an audience transition, the person's explicit
	// consent statements (channel → granted) when it happened, if
	// ConsentKnown; the publisher adds the default for the other channels.
	// Without ConsentKnown the publisher reads the current consent.
	Consent      map[string]bool `msgpack:"cs,omitempty"`
	ConsentKnown bool            `msgpack:"ck,omitempty"`
}

// OutIdent is a sealed identifier of an output message.
type OutIdent struct {
	Type   string `msgpack:"t"`
	Key    []byte `msgpack:"k"`
	Sealed []byte `msgpack:"s"`
}

// Result summarises what one Apply did, for metrics and the engine's caches.
type Result struct {
	Events     int // records applied
	Duplicates int // records dropped as duplicate messageIds
	Invalid    int // malformed records skipped
	Created    int // profiles created
	Merges     int // merges performed
	Outbox     int // outbox entries written
	// Outboxes are the outboxes the entry wrote entries to, as indexes in
	// OutboxPrefixes (0: the global one; 1+p: partition p's), ascending;
	// nil when Outbox is 0. The publisher scans only these.
	Outboxes []int
	Sources  []Source // sources created
	// IdentityConfig is set when the entry changed the identity config.
	IdentityConfig bool
	// Audiences is set when the entry changed the audience definitions.
	Audiences bool
	// Destinations is set when the entry changed the destinations.
	Destinations bool
	// Models is set when the entry changed the prediction models.
	Models bool
	// Matches counts identity.match records applied, Reviews reviewer
	// decisions; IdentityModel is set when the entry recorded a model.
	Matches, Reviews int
	IdentityModel    bool
	// Splits counts identity.split records applied (split.go).
	Splits int
	// MatchProfiles are the root profiles whose matching traits changed
	// (the matcher's work), when probabilistic matching is on.
	MatchProfiles [][]byte
	// Transitions counts audience entries and exits.
	Transitions int
	// Erasures counts erasure records (requested or completed) applied.
	Erasures int
	// ErasedKeys are the data key ids of the erasures this entry
	// completed. Every node destroys its own copies of them (the node that
	// ran the erasure worker already has): with keys shared by a cluster,
	// the others hold copies in their own keys databases.
	ErasedKeys [][]byte
	// Suppressed counts records dropped because they carry an erased
	// (suppressed) identifier.
	Suppressed int

	erasure []byte // id of the erasure requested by this entry

	// Access is set when the entry changed the tokens, sessions or users.
	Access bool
}

// Apply applies the log entry (seq, subject, data) to rw and records seq as
// the applied position, all in rw (the caller commits rw atomically). An entry
// that cannot be decoded leaves the state unchanged but for the applied
// position, so every replay skips it alike; the error wraps ErrCorruptEntry.
//
// After an error the caller must discard rw's changes (it then may Skip
// seq on a fresh batch). Writes to the store other than through Apply and
// Skip that keep the applied position need ResetCache.
func (sm *StateMachine) Apply(rw store.ReadWriter, seq uint64, subject string, data []byte) (Result, error) {
	return sm.applyEntry(rw, seq, subject, data, false)
}

// DefaultMaxHeldProfiles bounds the GCRs a partition holds decoded across
// the entries of a group (ApplyHeld): past it, the entry writes them all
// and the next starts afresh. 256 a partition, 4,096 over 16 partitions at
// a few KB each: a group of 25,600 events over as many people holds no
// more than that, while a group that sees people again holds them all.
const DefaultMaxHeldProfiles = 256

// ApplyHeld is Apply for a caller that applies several entries into one
// batch and commits them together (the engine's apply groups): the GCRs an
// event entry changes may stay in memory, decoded, in their partitions'
// open GCR Txns, instead of being encoded and written once per entry, and
// the next entries change them there. Before it commits, or hands rw to
// anything else, the caller must call Release. Entries that read GCRs from
// the store (control entries: erasures, splits, match reviews, ticks;
// every entry while probabilistic matching is on) release what is held
// first and hold nothing; an event entry that merges a held profile away
// releases that profile's partition before it reads it. The state written
// once Release has run is the state Apply would have written, byte for
// byte (TestApplyHeld).
//
// When ApplyHeld fails, what it held is dropped with the entry: the caller
// discards the batch, as after a failed Apply.
func (sm *StateMachine) ApplyHeld(rw store.ReadWriter, seq uint64, subject string, data []byte) (Result, error) {
	return sm.applyEntry(rw, seq, subject, data, true)
}

// Release writes the GCRs that ApplyHeld keeps in memory to rw, the writer
// the entries were applied to, and closes the Txns that held them. It does
// nothing when nothing is held. After a failure, discard rw as after a
// failed Apply.
func (sm *StateMachine) Release(rw store.ReadWriter) error {
	if !sm.holding() {
		return nil
	}
	prev, err := Applied(rw)
	if err != nil {
		return err
	}
	err = sm.withCache(rw, prev, sm.releaseHeld)
	if err != nil {
		sm.dropHeld()
	}
	return err
}

func (sm *StateMachine) applyEntry(rw store.ReadWriter, seq uint64, subject string, data []byte, hold bool) (Result, error) {
	var res Result
	err := sm.withCache(rw, seq, func(rw store.ReadWriter) error {
		if sm.kcf != nil {
			if err := sm.kcf.ensure(rw); err != nil {
				return err
			}
			rw = keychainFiltered{ReadWriter: rw, f: sm.kcf}
		}
		hold := hold && subject == SubjectEvents && sm.Keychain().Config().Probabilistic == nil
		if !hold {
			if err := sm.releaseHeld(rw); err != nil {
				return err
			}
		}
		var err error
		res, err = sm.apply(rw, seq, subject, data, hold)
		return err
	})
	if err != nil {
		sm.forgetTimers() // some partitions may have recorded this entry's
		sm.dropHeld()     // and held its GCRs
	}
	return res, err
}

// holding reports whether a partition holds GCRs (ApplyHeld).
func (sm *StateMachine) holding() bool {
	for _, p := range sm.partitions {
		if p.held != nil {
			return true
		}
	}
	return false
}

// releaseHeld writes every partition's held GCRs through rw (Release).
func (sm *StateMachine) releaseHeld(rw store.ReadWriter) error {
	for _, p := range sm.partitions {
		if err := p.releaseHeld(rw); err != nil {
			return err
		}
	}
	return nil
}

// releaseOwner writes the held GCRs of profile's partition through rw, if
// it holds profile: before the profile is read from the store.
func (sm *StateMachine) releaseOwner(rw store.ReadWriter, profile []byte) error {
	p := sm.partitions[gcr.PartitionOf(profile, len(sm.partitions))]
	if p.held == nil || !p.held.Held(profile) {
		return nil
	}
	sm.ownerReleases++
	return p.releaseHeld(rw)
}

// dropHeld forgets what the partitions hold, unwritten: after a failed
// entry, whose batch the caller discards, or a Load.
func (sm *StateMachine) dropHeld() {
	for _, p := range sm.partitions {
		p.held = nil
	}
}

// forgetTimers drops what the partitions know of their timers
// (Partition.knowTimers).
func (sm *StateMachine) forgetTimers() {
	for _, p := range sm.partitions {
		p.timersOK = false
	}
}

func (sm *StateMachine) apply(rw store.ReadWriter, seq uint64, subject string, data []byte, hold bool) (Result, error) {
	var res Result
	prev, err := Applied(rw)
	if err != nil {
		return res, err
	}
	if seq <= prev {
		return res, fmt.Errorf("projections: apply seq %d: already applied up to %d", seq, prev)
	}
	if err := setUint64(rw, keyApplied, seq); err != nil {
		return res, err
	}
	cmds := sm.emptyCommands(seq)
	var entryTime int64
	if subject == SubjectControl {
		if err := CheckMsgpack(data); err != nil {
			return res, fmt.Errorf("%w: seq %d: %v", ErrCorruptEntry, seq, err)
		}
	}
	switch subject {
	case SubjectEvents:
		b, err := event.DecodeBatch(data) // bounds-checked: no CheckMsgpack needed
		if err != nil {
			return res, fmt.Errorf("%w: seq %d: %v", ErrCorruptEntry, seq, err)
		}
		if err := sm.applyBatch(rw, seq, &b, cmds, &res); err != nil {
			return res, err
		}
		entryTime = b.Received
	case SubjectControl:
		var c Control
		if err := msgpack.Unmarshal(data, &c); err != nil {
			return res, fmt.Errorf("%w: seq %d: %v", ErrCorruptEntry, seq, err)
		}
		if err := sm.applyControl(rw, &c, &res); err != nil {
			return res, err
		}
		if err := sm.applyErasureControl(rw, seq, &c, cmds, &res); err != nil {
			return res, err
		}
		if err := sm.applyMatchControl(rw, seq, &c, cmds, &res); err != nil {
			return res, err
		}
		if c.Kind == ControlIdentitySplit {
			if err := sm.applySplit(rw, seq, &c, cmds, &res); err != nil {
				return res, err
			}
		}
		entryTime = c.Time
	default: // a subject of a later version: skipped, position recorded
	}
	now, err := advanceClock(rw, entryTime)
	if err != nil {
		return res, err
	}
	gen, err := readUint64(rw, keyAudienceGen)
	if err != nil {
		return res, err
	}
	set := sm.audiences.Load()
	for i := range cmds {
		cmds[i].Now, cmds[i].Audiences, cmds[i].Gen, cmds[i].hold = now, set, gen, hold
	}
	if err := sm.applyPartitions(rw, cmds); err != nil {
		return res, err
	}
	if err := sm.indexBlocks(rw, seq, cmds, &res); err != nil {
		return res, err
	}
	for i := range cmds {
		res.Transitions += cmds[i].transitions
	}
	res.Outbox += res.Transitions
	if err := sm.finishErasure(rw, cmds, &res); err != nil {
		return res, err
	}
	res.Outboxes = outboxesWritten(&res, cmds)
	return res, nil
}

// outboxesWritten lists the outboxes an entry wrote to (Result.Outboxes):
// a partition's when its command wrote transitions (every row of a
// partition outbox is one), the global one when the entry wrote more rows
// than transitions (merge, match and split records).
func outboxesWritten(res *Result, cmds []PartitionCommand) []int {
	if res.Outbox == 0 {
		return nil
	}
	var out []int
	if res.Outbox > res.Transitions {
		out = append(out, 0)
	}
	for i := range cmds {
		if cmds[i].transitions > 0 {
			out = append(out, 1+i)
		}
	}
	return out
}

// advanceClock moves the log clock (meta/now) to t if t is later, and
// returns it: the state machine's "now" never goes back, whatever the edge
// clocks did.
func advanceClock(rw store.ReadWriter, t int64) (int64, error) {
	cur, err := readUint64(rw, keyNow)
	if err != nil {
		return 0, err
	}
	if t > int64(cur) {
		return t, setUint64(rw, keyNow, uint64(t))
	}
	return int64(cur), nil
}

func readUint64(r store.Reader, key []byte) (uint64, error) {
	v, err := r.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("projections: read %s: %w", key, err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("projections: %s has %d bytes: %w", key, len(v), ErrCorruptEntry)
	}
	return binary.BigEndian.Uint64(v), nil
}

// Skip records seq as applied, by the state machine and every partition,
// with no other change: the fate of a log entry that cannot be decoded.
func (sm *StateMachine) Skip(rw store.ReadWriter, seq uint64) error {
	sm.forgetTimers() // the store at seq is not what an Apply of seq recorded
	return sm.withCache(rw, seq, func(rw store.ReadWriter) error {
		if err := setUint64(rw, keyApplied, seq); err != nil {
			return err
		}
		return sm.applyPartitions(rw, sm.emptyCommands(seq))
	})
}

func (sm *StateMachine) emptyCommands(seq uint64) []PartitionCommand {
	cmds := make([]PartitionCommand, len(sm.partitions))
	for i := range cmds {
		cmds[i].Seq = seq
	}
	return cmds
}

func (sm *StateMachine) applyControl(rw store.ReadWriter, c *Control, res *Result) error {
	switch c.Kind {
	case ControlSourceCreate:
		if event.ValidSourceName(c.Source.Name) != nil {
			return nil
		}
		key := sourceKey(c.Source.Name)
		if _, err := rw.Get(key); err == nil {
			return nil // first creation wins
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := setMsgpack(rw, key, &c.Source); err != nil {
			return err
		}
		res.Sources = append(res.Sources, c.Source)
	case ControlSourceRotate, ControlSourceDelete:
		return sm.applySourceChange(rw, c, res)
	case ControlAudiencePut, ControlAudienceDelete:
		return sm.applyAudienceControl(rw, c, res)
	case ControlDestinationPut, ControlDestinationDelete, ControlDestinationSynced:
		return sm.applyDestinationControl(rw, c, res)
	case ControlModelPut, ControlModelDelete:
		return sm.applyModelControl(rw, c, res)
	case ControlTokenPut, ControlTokenRevoke, ControlUserPut, ControlUserDelete:
		return sm.applyAccessControl(rw, c, res)
	case ControlExportSchedule:
		return applyExportSchedule(rw, c)
	case ControlTick:
		// Time passing: the partitions run their due timers (see Apply).
	case ControlIdentityConfig:
		cfg, err := decodeIdentityConfig(c.Config)
		if err != nil {
			return nil // an invalid config on the log is ignored alike by every replay
		}
		if err := rw.Set(keyIdentity, c.Config); err != nil {
			return err
		}
		sm.keychain.Store(identity.New(cfg))
		res.IdentityConfig = true
	}
	return nil
}

func sourceKey(name string) []byte { return append(append([]byte(nil), prefixSource...), name...) }

// applyBatch runs the keychain over the batch's records in order and routes
// the GCR work to the partitions: each event to the profile that is its root
// at the end of the entry, each profile merged away to its root's partition
// (Absorb, with its GCR as it was before the entry) and to its own (Drop).
func (sm *StateMachine) applyBatch(rw store.ReadWriter, seq uint64, b *event.Batch, cmds []PartitionCommand, res *Result) error {
	var outIdx uint32
	var adds []Addition
	var mergedAway [][]byte
	var created map[string]bool // profiles this entry created (Addition.Fresh)
	anySuppressed, err := hasSuppressions(rw)
	if err != nil {
		return err
	}
	if len(b.Records) > 0 {
		if err := sm.ddf.ensure(rw); err != nil {
			return err
		}
	}
	for i := range b.Records {
		rec := &b.Records[i]
		if anySuppressed {
			drop, err := suppressed(rw, rec)
			if err != nil {
				return err
			}
			if drop {
				res.Suppressed++ // an erased person's identifier: never a new profile
				continue
			}
		}
		dup, err := sm.dedup(rw, rec)
		if err != nil {
			return err
		}
		if dup {
			res.Duplicates++
			continue
		}
		if rec.Kind == "" || len(rec.ID) != 16 {
			res.Invalid++ // malformed on the log: skipped alike by every replay
			continue
		}
		ir, err := sm.Keychain().Resolve(rw, identity.Input{EventID: rec.ID, Time: rec.Time, IDs: rec.IDs})
		if errors.Is(err, identity.ErrInvalidInput) || errors.Is(err, identity.ErrNoIdentifiers) {
			res.Invalid++ // a record that can never resolve must not stop the node
			continue
		}
		if err != nil {
			return fmt.Errorf("projections: apply seq %d record %d: %w", seq, i, err)
		}
		if ir.Created {
			res.Created++
			if !sm.opts.noFreshProfiles {
				if created == nil {
					created = make(map[string]bool)
				}
				created[string(ir.Profile)] = true
			}
		}
		for _, m := range ir.Merges {
			if err := sm.recordMerge(rw, seq, &outIdx, rec, m); err != nil {
				return err
			}
			mergedAway = append(mergedAway, m.From)
			res.Merges++
		}
		owned := make([]event.IDRef, 0, len(ir.Owned))
		for _, j := range ir.Owned {
			owned = append(owned, rec.IDs[j])
		}
		// Its properties are opened by its partition (Partition.Apply).
		adds = append(adds, Addition{Profile: ir.Profile, Record: rec, Owned: owned})
		res.Events++
	}
	res.Outbox = int(outIdx)
	if res.Suppressed > 0 {
		if err := countSuppressed(rw, res.Suppressed); err != nil {
			return err
		}
	}

	roots := map[string][]byte{}
	root := func(p []byte) ([]byte, error) {
		if r, ok := roots[string(p)]; ok {
			return r, nil
		}
		r, err := sm.Keychain().Root(rw, p)
		if err != nil {
			return nil, fmt.Errorf("projections: apply seq %d: root of %x: %w", seq, p, err)
		}
		roots[string(p)] = r
		return r, nil
	}
	n := len(sm.partitions)
	seen := map[string]bool{}
	for _, from := range mergedAway {
		if seen[string(from)] {
			continue
		}
		seen[string(from)] = true
		if created[string(from)] {
			continue // created and merged away within this entry: it has no GCR to absorb
		}
		r, err := root(from)
		if err != nil {
			return err
		}
		if err := sm.absorb(rw, from, r, cmds); err != nil {
			return err
		}
	}
	for _, a := range adds {
		// A profile Resolve returned is a root then; only a merge later in
		// the entry makes it not one, and every merge is in mergedAway.
		r := a.Profile
		if len(mergedAway) > 0 {
			var err error
			if r, err = root(a.Profile); err != nil {
				return err
			}
		}
		a.Profile = r
		a.Fresh = created[string(r)]
		pi := gcr.PartitionOf(r, n)
		cmds[pi].Add = append(cmds[pi].Add, a)
	}
	if len(b.Records) > 0 {
		return sm.pruneDedup(rw, b.Received)
	}
	return nil
}

// dedup reports whether rec's messageId was seen for its source within the
// window, and remembers it otherwise.
func (sm *StateMachine) dedup(rw store.ReadWriter, rec *event.Record) (bool, error) {
	if rec.MessageID == "" {
		return false, nil
	}
	key := dedupKey(rec.Source, rec.MessageID)
	v, err := []byte(nil), store.ErrNotFound
	if sm.ddf.mayContain(key) { // else: certainly absent, as the store would say
		v, err = rw.Get(key)
	}
	switch {
	case err == nil && len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > rec.Received:
		return true, nil
	case err == nil:
		// Expired but not yet pruned: forget the old expiry entry.
		if len(v) == 8 {
			if err := rw.Delete(dedupExpiryKey(binary.BigEndian.Uint64(v), key)); err != nil {
				return false, err
			}
		}
	case !errors.Is(err, store.ErrNotFound):
		return false, err
	}
	exp := uint64(max(0, rec.Received+sm.opts.DedupWindow))
	if err := rw.Set(key, binary.BigEndian.AppendUint64(nil, exp)); err != nil {
		return false, err
	}
	if sm.ddf != nil {
		sm.ddf.add(key)
	}
	return false, rw.Set(dedupExpiryKey(exp, key), nil)
}

// dedupKey is the dedup table key of a source's messageId.
func dedupKey(source, messageID string) []byte {
	h := sha256.Sum256([]byte(messageID))
	key := make([]byte, 0, len(prefixDedup)+len(source)+1+16)
	return append(append(append(append(key, prefixDedup...), source...), 0), h[:16]...)
}

// Seen reports whether the dedup table of r remembers source's messageId
// at log time at (ms): an event with it appended now would count once
// already. It reads only; the answer of the state machine's apply, later,
// can differ only for ids whose window ends in between.
func Seen(r store.Reader, source, messageID string, at int64) (bool, error) {
	if messageID == "" {
		return false, nil
	}
	v, err := r.Get(dedupKey(source, messageID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("projections: dedup look-up: %w", err)
	}
	return len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > at, nil
}

// applySourceChange applies a write-key rotation (the current key becomes
// the old one, valid until c.Source.OldKeyUntil) or a deletion of a
// source; an unknown source is no change.
func (sm *StateMachine) applySourceChange(rw store.ReadWriter, c *Control, res *Result) error {
	key := sourceKey(c.Source.Name)
	cur, ok, err := getMsgpack[Source](rw, key)
	if err != nil || !ok {
		return err
	}
	if c.Kind == ControlSourceDelete {
		if err := rw.Delete(key); err != nil {
			return err
		}
		res.Sources = append(res.Sources, Source{Name: cur.Name, Deleted: true})
		return nil
	}
	cur.OldKeyHash, cur.OldKeyUntil, cur.KeyHash = cur.KeyHash, c.Source.OldKeyUntil, c.Source.KeyHash
	if err := setMsgpack(rw, key, &cur); err != nil {
		return err
	}
	res.Sources = append(res.Sources, cur)
	return nil
}

func dedupExpiryKey(exp uint64, ddKey []byte) []byte {
	k := make([]byte, 0, len(prefixDedupX)+8+len(ddKey))
	k = append(k, prefixDedupX...)
	k = binary.BigEndian.AppendUint64(k, exp)
	return append(k, ddKey...)
}

// pruneDedup forgets message ids whose window ended at or before now (log
// time), at most MaxPrunePerEntry per entry.
func (sm *StateMachine) pruneDedup(rw store.ReadWriter, now int64) error {
	if now <= 0 {
		return nil
	}
	upper := binary.BigEndian.AppendUint64(append([]byte(nil), prefixDedupX...), uint64(now)+1)
	var expired [][]byte
	err := rw.Scan(prefixDedupX, upper, false, func(k, _ []byte) bool {
		expired = append(expired, append([]byte(nil), k...))
		return len(expired) < sm.opts.MaxPrunePerEntry
	})
	if err != nil {
		return err
	}
	for _, k := range expired {
		if err := rw.Delete(k); err != nil {
			return err
		}
		if err := rw.Delete(k[len(prefixDedupX)+8:]); err != nil {
			return err
		}
	}
	return nil
}

func (sm *StateMachine) recordMerge(rw store.ReadWriter, seq uint64, idx *uint32, rec *event.Record, m identity.Merge) error {
	return sm.recordMergeAt(rw, seq, idx, rec.Time, m, nil)
}

// recordMergeAt records merge m at time t; match is the id of the
// probabilistic match that caused it (nil: the event m.EventID did).
func (sm *StateMachine) recordMergeAt(rw store.ReadWriter, seq uint64, idx *uint32, t int64, m identity.Merge, match []byte) error {
	mr := MergeRecord{From: m.From, Into: m.Into, EventID: m.EventID, Type: m.Type, Time: t, Seq: seq, Match: match}
	k := append(append([]byte(nil), prefixMerge...), m.Into...)
	k = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(k, seq), *idx)
	if err := setMsgpack(rw, k, &mr); err != nil {
		return err
	}
	data, err := mergeJSON(&mr)
	if err != nil {
		return err
	}
	out := OutMsg{Subject: SubjectMerged, MsgID: "merge:" + ulidString(m.EventID) + ":" + ulidString(m.From), Data: data,
		Profile: m.Into}
	ok := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(append([]byte(nil), prefixOutbox...), seq), *idx)
	*idx++
	return setMsgpack(rw, ok, &out)
}

// Applied returns the last applied log sequence (0 when none).
func Applied(r store.Reader) (uint64, error) {
	v, err := r.Get(keyApplied)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("projections: read applied: %w", err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("projections: applied position has %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func setUint64(w store.Writer, key []byte, v uint64) error {
	return w.Set(key, binary.BigEndian.AppendUint64(nil, v))
}

func setMsgpack(w store.Writer, key []byte, v any) error {
	data, err := msgpack.Marshal(v)
	if err != nil {
		return fmt.Errorf("projections: encode %q: %w", key, err)
	}
	return w.Set(key, data)
}
