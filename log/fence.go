package log

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Fencing of outputs in a cluster (ARCHITECTURE.md "Cluster"). The owner of
// partition p under epoch E claims p on aurum.fence.<p> (a subject of
// AURUM_OUT) and publishes every output of p on the condition that the last
// message on aurum.fence.<p> is still its claim: JetStream itself refuses
// the publishes of an owner whose claim was superseded.
//
// Subjects (AURUM_OUT, under FencePrefix; no Aurum-Profile header, so
// subscribers of aurum.audience.> and aurum.identity.> and the erasure
// scrub never see them):
//
//	aurum.fence.<p>           claims: JSON {"partition", "epoch", "node"}
//	aurum.fence.<p>.progress  the owner's outbox progress: JSON {"partition",
//	                          "epoch", "node", "pos"}, fenced like an output,
//	                          each rolling up the one before (Nats-Rollup: sub)
const (
	FencePrefix = "aurum.fence."

	// HeaderEpoch is the header of a fenced output: "<partition>.<epoch>".
	HeaderEpoch = "Aurum-Epoch"

	headerExpectedLastSubjSeq     = "Nats-Expected-Last-Subject-Sequence"
	headerExpectedLastSubjSeqSubj = "Nats-Expected-Last-Subject-Sequence-Subject"
	headerRollup                  = "Nats-Rollup"

	// maxFencePartition bounds the partition of a claim (the cluster's
	// limit).
	maxFencePartition = 1024
	// claimAttempts bounds the re-reads of a claim that lost a race.
	claimAttempts = 16
)

// ErrFenced reports that a newer claim on the partition exists: its
// owner must stop publishing the partition.
var ErrFenced = errors.New("log: fenced: a newer claim on the partition exists")

// Fence is an owner's claim on a partition: Seq is the claim's sequence in
// AURUM_OUT, the condition of every fenced publish.
type Fence struct {
	Partition int
	Epoch     uint64
	Node      string
	Seq       uint64
}

type claimMsg struct {
	Partition int    `json:"partition"`
	Epoch     uint64 `json:"epoch"`
	Node      string `json:"node"`
}

type progressMsg struct {
	Partition int    `json:"partition"`
	Epoch     uint64 `json:"epoch"`
	Node      string `json:"node"`
	Pos       []byte `json:"pos"`
	Applied   uint64 `json:"applied,omitempty"`
}

// Progress is an owner's last progress record of its partition's outbox.
type Progress struct {
	Pos   []byte // the owner's (opaque here); nil when none was recorded
	Epoch uint64 // of the owner that recorded it
	// Applied is the owner's watermark: every output of the partition
	// read from a state that had applied less than it was acknowledged
	// (or refused) before the record (0: none stated).
	Applied uint64
}

// FenceSubject is the subject of partition p's claims.
func FenceSubject(p int) string { return FencePrefix + strconv.Itoa(p) }

// ProgressSubject is the subject of partition p's outbox progress.
func ProgressSubject(p int) string { return FenceSubject(p) + ".progress" }

func checkFencePartition(p int) error {
	if p < 0 || p >= maxFencePartition {
		return fmt.Errorf("log: fence: partition %d out of [0, %d)", p, maxFencePartition)
	}
	return nil
}

// isWrongLastSeq reports JetStream's "wrong last sequence" (10071): the
// last message on the checked subject is not the expected one.
func isWrongLastSeq(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// isConditionBusy reports 10164 ("last sequence by subject mismatch"):
// on a replicated stream, nats-server (2.12+) refuses a conditional
// publish while another one checking the same subject is still being
// replicated, whatever the sequences. Not a verdict: try again.
func isConditionBusy(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// IsBusy reports whether err is a replicated stream's refusal of a
// conditional (fenced) publish while another one on the same checked
// subject is being replicated: not a verdict on the fence; publish again.
// The server may still refuse one right after the previous publish's
// acknowledgement (it clears its in-flight mark after the ack is sent).
func IsBusy(err error) bool { return isConditionBusy(err) }

// lastOn returns the last message on subject of AURUM_OUT, nil when there is
// none.
func (l *Log) lastOn(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	s, err := l.js.Stream(ctx, StreamOut)
	if err != nil {
		return nil, err
	}
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	return m, err
}

func (l *Log) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, l.opts.RequestTimeout)
}

// ClaimFence claims partition for node under epoch. The last claim on the
// partition must have a lower epoch, or be this node's own at this epoch
// (a re-claim after a restart, or a renewal); a newer claim, or another
// node's at the same epoch, gives ErrFenced. The claim is published on the
// condition that the last claim is still the one read; a claim that lost a
// race reads again.
func (l *Log) ClaimFence(ctx context.Context, partition int, epoch uint64, node string) (Fence, error) {
	if l.isClosed() {
		return Fence{}, ErrClosed
	}
	if err := checkFencePartition(partition); err != nil {
		return Fence{}, err
	}
	if epoch == 0 || node == "" {
		return Fence{}, fmt.Errorf("log: fence: claim of partition %d needs an epoch > 0 and a node (got %d, %q)", partition, epoch, node)
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	subject := FenceSubject(partition)
	for attempt := range claimAttempts {
		if attempt > 0 { // lost a race: back off a little, then read the winner
			t := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return Fence{}, fmt.Errorf("log: fence: claim of partition %d: %w", partition, ctx.Err())
			case <-t.C:
			}
		}
		last, err := l.lastOn(ctx, subject)
		if err != nil {
			return Fence{}, fmt.Errorf("log: fence: read claim of partition %d: %w", partition, err)
		}
		var lastSeq uint64
		if last != nil {
			var c claimMsg
			if err := json.Unmarshal(last.Data, &c); err != nil {
				return Fence{}, fmt.Errorf("log: fence: claim %d of partition %d: %w", last.Sequence, partition, err)
			}
			if c.Epoch > epoch || (c.Epoch == epoch && c.Node != node) {
				return Fence{}, fmt.Errorf("%w: partition %d claimed at epoch %d by %q (ours: %d by %q)", ErrFenced, partition, c.Epoch, c.Node, epoch, node)
			}
			lastSeq = last.Sequence
		}
		f, err := l.publishClaim(ctx, Fence{Partition: partition, Epoch: epoch, Node: node, Seq: lastSeq})
		if isWrongLastSeq(err) || isConditionBusy(err) {
			continue
		}
		return f, err
	}
	return Fence{}, fmt.Errorf("log: fence: claim of partition %d lost %d races", partition, claimAttempts)
}

// RenewFence publishes f's claim again, on the condition that f is still the
// last claim (ErrFenced otherwise), and returns the renewed fence: a claim
// must be renewed well within AURUM_OUT's max age (Options.OutMaxAge), or it
// ages out of the stream.
func (l *Log) RenewFence(ctx context.Context, f Fence) (Fence, error) {
	if l.isClosed() {
		return Fence{}, ErrClosed
	}
	if err := checkFencePartition(f.Partition); err != nil {
		return Fence{}, err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	nf, err := l.publishClaim(ctx, f)
	if isWrongLastSeq(err) {
		return Fence{}, fmt.Errorf("%w: renewal of partition %d at epoch %d: %w", ErrFenced, f.Partition, f.Epoch, err)
	}
	return nf, err
}

// publishClaim publishes the claim (f.Partition, f.Epoch, f.Node) on the
// condition that the last claim's sequence is f.Seq (0: none).
func (l *Log) publishClaim(ctx context.Context, f Fence) (Fence, error) {
	data, err := json.Marshal(claimMsg{Partition: f.Partition, Epoch: f.Epoch, Node: f.Node})
	if err != nil {
		return Fence{}, fmt.Errorf("log: fence: %w", err)
	}
	m := nats.NewMsg(FenceSubject(f.Partition))
	m.Data = data
	m.Header.Set(headerExpectedLastSubjSeq, strconv.FormatUint(f.Seq, 10))
	ack, err := l.js.PublishMsg(ctx, m)
	if err != nil {
		return Fence{}, fmt.Errorf("log: fence: claim partition %d: %w", f.Partition, err)
	}
	f.Seq = ack.Sequence
	return f, nil
}

// fencedHeaders adds to hdr the headers that make a publish conditional on
// f being the last claim of its partition.
func fencedHeaders(f Fence, hdr map[string]string) map[string]string {
	h := make(map[string]string, len(hdr)+3)
	for k, v := range hdr {
		h[k] = v
	}
	h[HeaderEpoch] = strconv.Itoa(f.Partition) + "." + strconv.FormatUint(f.Epoch, 10)
	h[headerExpectedLastSubjSeq] = strconv.FormatUint(f.Seq, 10)
	h[headerExpectedLastSubjSeqSubj] = FenceSubject(f.Partition)
	return h
}

// AppendAsyncFenced is AppendAsyncWithHeaders on the condition that f is
// still the last claim of its partition: the Future's error wraps ErrFenced
// when a newer claim exists. A message id already stored within the
// duplicate window is answered as a duplicate by the current owner; a
// stale owner gets ErrFenced from a single server (2.15.2 checks the
// condition first) and a duplicate from a replicated stream (which checks
// the id first): either way nothing is stored.
//
// On a replicated stream the server takes one conditional publish per
// checked subject at a time and refuses the others while one is being
// replicated (an error that is not ErrFenced, IsBusy): wait for each
// Future before the next fenced publish of the same partition, and publish
// again on IsBusy (it can happen right after an acknowledgement too).
func (l *Log) AppendAsyncFenced(f Fence, subject, msgID string, hdr map[string]string, data []byte) (*Future, error) {
	if err := checkFencePartition(f.Partition); err != nil {
		return nil, err
	}
	fut, err := l.AppendAsyncWithHeaders(subject, msgID, fencedHeaders(f, hdr), data)
	if err != nil {
		return nil, err
	}
	fut.fenced = true
	return fut, nil
}

// SetOutboxProgress records, fenced by f, how far f's owner has published
// its partition's outbox: pos is the caller's (opaque here), applied its
// watermark (Progress.Applied). It replaces the previous record (a
// rollup). ErrFenced: a newer claim exists.
func (l *Log) SetOutboxProgress(ctx context.Context, f Fence, pos []byte, applied uint64) error {
	if l.isClosed() {
		return ErrClosed
	}
	if err := checkFencePartition(f.Partition); err != nil {
		return err
	}
	data, err := json.Marshal(progressMsg{Partition: f.Partition, Epoch: f.Epoch, Node: f.Node, Pos: pos, Applied: applied})
	if err != nil {
		return fmt.Errorf("log: fence: %w", err)
	}
	if len(data) > MaxMessageSize {
		return fmt.Errorf("%w: progress of partition %d: %d bytes", ErrTooLarge, f.Partition, len(data))
	}
	m := nats.NewMsg(ProgressSubject(f.Partition))
	m.Data = data
	for k, v := range fencedHeaders(f, nil) {
		m.Header.Set(k, v)
	}
	m.Header.Set(headerRollup, jetstream.MsgRollupSubject)
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	if _, err := l.js.PublishMsg(ctx, m); err != nil {
		if isWrongLastSeq(err) {
			return fmt.Errorf("%w: progress of partition %d at epoch %d: %w", ErrFenced, f.Partition, f.Epoch, err)
		}
		return fmt.Errorf("log: fence: progress of partition %d: %w", f.Partition, err)
	}
	return nil
}

// RecordOutboxProgress records, without a fence, how far a single node's
// publisher has published partition's outbox (pos is the caller's, as
// with SetOutboxProgress; Epoch and Node are zero). It replaces the
// previous record (a rollup). The caller waits for the Future: a record
// must be stored only after the outputs it covers were acknowledged.
func (l *Log) RecordOutboxProgress(partition int, pos []byte, applied uint64) (*Future, error) {
	if err := checkFencePartition(partition); err != nil {
		return nil, err
	}
	data, err := json.Marshal(progressMsg{Partition: partition, Pos: pos, Applied: applied})
	if err != nil {
		return nil, fmt.Errorf("log: progress of partition %d: %w", partition, err)
	}
	if l.isClosed() {
		return nil, ErrClosed
	}
	m := nats.NewMsg(ProgressSubject(partition))
	m.Data = data
	m.Header.Set(headerRollup, jetstream.MsgRollupSubject)
	paf, err := l.js.PublishMsgAsync(m, jetstream.WithStallWait(l.opts.RequestTimeout))
	if err != nil {
		return nil, fmt.Errorf("log: progress of partition %d: %w", partition, err)
	}
	return &Future{l: l, subject: m.Subject, paf: paf}, nil
}

// OutboxProgress is the last progress recorded for partition's outbox (the
// zero Progress when none).
func (l *Log) OutboxProgress(ctx context.Context, partition int) (Progress, error) {
	if l.isClosed() {
		return Progress{}, ErrClosed
	}
	if err := checkFencePartition(partition); err != nil {
		return Progress{}, err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	m, err := l.lastOn(ctx, ProgressSubject(partition))
	if err != nil {
		return Progress{}, fmt.Errorf("log: fence: progress of partition %d: %w", partition, err)
	}
	if m == nil {
		return Progress{}, nil
	}
	var p progressMsg
	if err := json.Unmarshal(m.Data, &p); err != nil {
		return Progress{}, fmt.Errorf("log: fence: progress %d of partition %d: %w", m.Sequence, partition, err)
	}
	return Progress{Pos: p.Pos, Epoch: p.Epoch, Applied: p.Applied}, nil
}

// FenceRenewal is how often an owner renews its claim (RenewFence): a tenth
// of AURUM_OUT's max age, so a claim never ages out of the stream.
func (l *Log) FenceRenewal() time.Duration { return l.opts.OutMaxAge / 10 }

// CheckFence returns nil when the last claim on partition is node's at
// epoch (its claim or a renewal of it), an error wrapping ErrFenced when
// another claim is the last (or none exists), and another error when the
// claim could not be read. It is a read, not a condition of a write: what
// it guards (a webhook call, a connector's request) happens after it, so it
// narrows the time a superseded owner may act to one such step.
func (l *Log) CheckFence(ctx context.Context, partition int, epoch uint64, node string) error {
	if l.isClosed() {
		return ErrClosed
	}
	if err := checkFencePartition(partition); err != nil {
		return err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	last, err := l.lastOn(ctx, FenceSubject(partition))
	if err != nil {
		return fmt.Errorf("log: fence: read claim of partition %d: %w", partition, err)
	}
	if last == nil {
		return fmt.Errorf("%w: partition %d has no claim (ours: %d by %q)", ErrFenced, partition, epoch, node)
	}
	var c claimMsg
	if err := json.Unmarshal(last.Data, &c); err != nil {
		return fmt.Errorf("log: fence: claim %d of partition %d: %w", last.Sequence, partition, err)
	}
	if c.Epoch != epoch || c.Node != node {
		return fmt.Errorf("%w: partition %d claimed at epoch %d by %q (ours: %d by %q)", ErrFenced, partition, c.Epoch, c.Node, epoch, node)
	}
	return nil
}
