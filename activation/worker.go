package activation

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/activation/connector"
	alog "github.com/aurumcdp/aurum/log"
)

const (
	// ackWaitMargin is added to Options.Timeout for the consumer's
	// AckWait: an attempt (or a dead-letter write) must end within it.
	ackWaitMargin = 30 * time.Second
	// deadLetterTimeout bounds one Options.DeadLetter call.
	deadLetterTimeout = 10 * time.Second
)

// worker delivers one destination's messages. Its goroutine (run) is
// owned by the Dispatcher: cancel stops it, done is closed when it ends.
type worker struct {
	d       *Dispatcher
	dest    Destination
	kind    connector.Kind      // a connector's kind (zero for a webhook)
	conn    connector.Connector // nil for a webhook
	connMu  sync.Mutex          // serialises conn.Deliver (the consumer and the consent sweep)
	durable string
	filters []string
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	stats   *statsCell
	logger  *slog.Logger
	// epoch is the Fence's epoch this worker delivers under, set by run
	// before any delivery and not changed after.
	epoch uint64
}

func (w *worker) run() {
	defer close(w.done)
	defer w.stats.update(func(s *DestStats) { s.Running = false })
	if !w.startEpoch() {
		return
	}
	if w.conn != nil {
		w.runConnector()
		return
	}
	w.consume(alog.ConsumeOptions{StartTime: w.dest.Since}, w.handle)
}

// consume runs the destination's durable consumer with handle until the
// worker stops; copts gives the start (the rest is set here).
func (w *worker) consume(copts alog.ConsumeOptions, handle func(alog.Msg) error) {
	copts.OnGiveUp = w.giveUp
	w.consumeWith(copts, func(copts alog.ConsumeOptions) error {
		return w.d.log.ConsumeDurable(w.ctx, alog.StreamOut, w.durable, w.filters, copts, handle)
	})
}

// consumeWith runs consume (the options completed here) until the worker
// stops, restarting it after a failure.
func (w *worker) consumeWith(copts alog.ConsumeOptions, consume func(alog.ConsumeOptions) error) {
	o := &w.d.opts
	copts.MaxDeliver = o.MaxAttempts
	copts.BackoffMin, copts.BackoffMax = o.BackoffMin, o.BackoffMax
	copts.AckWait = o.Timeout + ackWaitMargin
	for failures := uint64(1); ; failures++ {
		err := consume(copts)
		if err == nil || errors.Is(err, alog.ErrClosed) || w.ctx.Err() != nil {
			return
		}
		w.logger.Warn("activation: consumer failed; restarting", "err", err, "failures", failures)
		w.failed(fmt.Errorf("consumer: %w", err), false)
		t := time.NewTimer(o.backoff(failures))
		select {
		case <-t.C:
		case <-w.ctx.Done():
			t.Stop()
			return
		}
	}
}

// consumeBatch is consume with a handler of batches
// (log.ConsumeDurableBatch).
func (w *worker) consumeBatch(copts alog.ConsumeOptions, handle func([]alog.Msg) error) {
	w.consumeWith(copts, func(copts alog.ConsumeOptions) error {
		return w.d.log.ConsumeDurableBatch(w.ctx, alog.StreamOut, w.durable, w.filters, copts, handle)
	})
}

const (
	// fenceCheckTimeout bounds one Fence.Epoch call.
	fenceCheckTimeout = 5 * time.Second
	// fenceWait bounds the retries of a fence check that could not be
	// made, within one delivery step (< ackWaitMargin).
	fenceWait = 20 * time.Second
)

// startEpoch learns the epoch this worker delivers under (Options.Fence);
// it retries a check that could not be made, and reports false when the
// worker must not run (fenced, or stopped meanwhile).
func (w *worker) startEpoch() bool {
	f := w.d.opts.Fence
	if f == nil {
		return true
	}
	for failures := uint64(1); ; failures++ {
		ctx, cancel := context.WithTimeout(w.ctx, fenceCheckTimeout)
		epoch, err := f.Epoch(ctx)
		cancel()
		switch {
		case w.ctx.Err() != nil:
			return false
		case err == nil:
			w.epoch = epoch
			w.logger.Info("activation: delivering", "epoch", epoch)
			return true
		case errors.Is(err, alog.ErrFenced):
			w.fenced(err)
			return false
		}
		w.failed(fmt.Errorf("fence check: %w", err), false)
		if !w.sleep(w.d.opts.backoff(failures)) {
			return false
		}
	}
}

// checkFence is made before each delivery step: nil when this node still
// delivers under the worker's epoch. When it does not, the worker stops
// (its context is cancelled, so the consumer hands the message back at
// once) and the error wraps log.ErrFenced. A check that cannot be made
// (the fence's stream electing a leader) is tried again for up to
// fenceWait, well inside the consumer's AckWait, then returned as a
// *log.RetryAfter.
func (w *worker) checkFence() error {
	f := w.d.opts.Fence
	if f == nil {
		return nil
	}
	deadline := time.Now().Add(fenceWait)
	for failures := uint64(1); ; failures++ {
		ctx, cancel := context.WithTimeout(w.ctx, fenceCheckTimeout)
		epoch, err := f.Epoch(ctx)
		cancel()
		if err == nil && epoch == w.epoch {
			return nil
		}
		if w.ctx.Err() != nil {
			return w.ctx.Err()
		}
		if err == nil {
			err = fmt.Errorf("%w: the epoch moved from %d to %d", alog.ErrFenced, w.epoch, epoch)
		}
		if errors.Is(err, alog.ErrFenced) {
			w.fenced(err)
			return fmt.Errorf("activation: %s: %w", w.dest.Name, err)
		}
		err = fmt.Errorf("fence check: %w", err)
		w.failed(err, false)
		delay := min(w.d.opts.backoff(failures), time.Second)
		if time.Now().Add(delay).After(deadline) {
			return &alog.RetryAfter{Delay: delay, Err: err}
		}
		if !w.sleep(delay) {
			return w.ctx.Err()
		}
	}
}

// fenced stops the worker: this node lost the right to deliver.
func (w *worker) fenced(err error) {
	w.logger.Warn("activation: fenced: this node no longer delivers; worker stopped", "epoch", w.epoch, "err", err)
	w.stats.update(func(s *DestStats) {
		s.Fenced++
		s.LastError, s.LastErrorTime = err.Error(), w.d.opts.Now()
	})
	w.cancel()
}

// attemptError is the outcome of a failed attempt.
type attemptError struct {
	Status int   // HTTP status; 0 without a response
	Err    error // without a response: why
}

func (e *attemptError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("status %d", e.Status)
	}
	return e.Err.Error()
}

func (e *attemptError) Unwrap() error { return e.Err }

// retryable reports whether a failed attempt with this status (0: no
// response) is worth repeating.
func retryable(status int) bool {
	return status == 0 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// handle is the ConsumeDurable handler: one attempt at delivering m.
func (w *worker) handle(m alog.Msg) error {
	o := &w.d.opts
	if skip, err := w.checkConsent(m); err != nil {
		return err
	} else if skip {
		w.stats.update(func(s *DestStats) {
			s.Skipped++
			s.LastSeq, s.Lag = m.Seq, m.Pending
		})
		if o.OnSkip != nil {
			o.OnSkip(w.dest.Name, SkipConsent)
		}
		w.logger.Debug("activation: skipped: no consent", "seq", m.Seq, "channel", w.dest.Channel)
		return nil // acked: never retried
	}
	if err := w.checkFence(); err != nil {
		return err
	}
	status, retryAfter, err := w.attempt(m)
	if err == nil {
		w.stats.update(func(s *DestStats) {
			s.Delivered++
			s.LastSeq, s.Lag = m.Seq, m.Pending
		})
		return nil
	}
	if w.ctx.Err() != nil {
		return err // stopping: not the endpoint's failure
	}
	ae := &attemptError{Status: status, Err: err}
	w.failed(ae, true)
	w.logger.Debug("activation: attempt failed", "seq", m.Seq, "attempt", m.Delivered, "err", ae)
	if !retryable(status) {
		return fmt.Errorf("activation: %s: %w: %w", w.dest.Name, ae, alog.ErrPermanent)
	}
	delay := o.backoff(m.Delivered)
	if retryAfter > delay {
		delay = min(retryAfter, o.BackoffMax)
	}
	return &alog.RetryAfter{Delay: delay, Err: ae}
}

// checkConsent reports whether m must be skipped because its person has no
// consent for the destination's channel. A message without a profile id
// cannot be checked and is dead-lettered (never delivered unchecked); a
// failing check is retried. An exit with reason "erased" is always
// delivered: it carries no personal data, only the profile id, and it is how
// the destination learns to forget the person.
// ReasonErased is the reason of the exits an erasure emits.
const ReasonErased = "erased"

func (w *worker) checkConsent(m alog.Msg) (bool, error) {
	o := &w.d.opts
	if o.Consent == nil || w.dest.Channel == ChannelNone {
		return false, nil
	}
	var body struct {
		ProfileID string `json:"profile_id"`
		Type      string `json:"type"`
		Reason    string `json:"reason"`
	}
	err := json.Unmarshal(m.Data, &body)
	if err == nil && body.Type == "audience.exited" && body.Reason == ReasonErased {
		return false, nil
	}
	if err != nil || body.ProfileID == "" {
		err := fmt.Errorf("consent: message without a profile_id cannot be checked")
		w.failed(err, true)
		return false, fmt.Errorf("activation: %s: %w: %w", w.dest.Name, err, alog.ErrPermanent)
	}
	ok, err := o.Consent.Allowed(body.ProfileID, w.dest.Channel)
	if err != nil {
		if w.ctx.Err() != nil {
			return false, err
		}
		err = fmt.Errorf("consent check: %w", err)
		w.failed(err, true)
		return false, &alog.RetryAfter{Delay: o.backoff(m.Delivered), Err: err}
	}
	return !ok, nil
}

// attempt POSTs m once. It returns the HTTP status (0 without a
// response), the response's Retry-After (0 if none), and a nil error on
// a 2xx.
func (w *worker) attempt(m alog.Msg) (int, time.Duration, error) {
	o := &w.d.opts
	ctx, cancel := context.WithTimeout(w.ctx, o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.dest.URL, bytes.NewReader(m.Data))
	if err != nil {
		return 0, 0, fmt.Errorf("request: %w", err)
	}
	now := o.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "aurum-webhook")
	req.Header.Set(HeaderSignature, Sign(w.dest.Secret, now, m.Data))
	req.Header.Set(HeaderDelivery, deliveryID(m))
	req.Header.Set(HeaderAttempt, strconv.FormatUint(m.Delivered, 10))
	if o.Fence != nil {
		req.Header.Set(HeaderEpoch, strconv.FormatUint(w.epoch, 10))
	}
	resp, err := w.d.client.Do(req)
	if err != nil {
		// Drop the *url.Error wrapper: the URL may carry a token, and
		// the error ends up in stats and dead letters.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, 0, fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	return resp.StatusCode, connector.ParseRetryAfter(resp.Header.Get("Retry-After"), now), fmt.Errorf("status %d", resp.StatusCode)
}

// deliveryID is the Aurum-Delivery header of m.
func deliveryID(m alog.Msg) string {
	if m.MsgID != "" {
		return m.MsgID
	}
	return alog.StreamOut + "-" + strconv.FormatUint(m.Seq, 10)
}

// backoff is the delay after the given failed attempt (1-based):
// BackoffMin * 2^(attempt-1), at most BackoffMax.
func (o *Options) backoff(attempt uint64) time.Duration {
	d := o.BackoffMin
	for i := uint64(1); i < attempt && d < o.BackoffMax; i++ {
		d *= 2
	}
	return min(d, o.BackoffMax)
}

// failed records a failed attempt (attempt true) or a consumer failure.
func (w *worker) failed(err error, attempt bool) {
	now := w.d.opts.Now()
	w.stats.update(func(s *DestStats) {
		if attempt {
			s.FailedAttempts++
		}
		s.LastError, s.LastErrorTime = err.Error(), now
	})
}

// giveUp is the OnGiveUp of the consumer: it dead-letters m.
func (w *worker) giveUp(m alog.Msg, cause error) error {
	o := &w.d.opts
	dl := DeadLetter{
		Destination: w.dest.Name,
		Kind:        w.dest.Kind,
		Subject:     m.Subject,
		Seq:         m.Seq,
		DeliveryID:  deliveryID(m),
		Body:        m.Data,
		Attempts:    m.Delivered,
		Reason:      cause.Error(),
		Time:        o.Now(),
	}
	var ae *attemptError
	if errors.As(cause, &ae) {
		dl.Status, dl.Reason = ae.Status, ae.Error()
	}
	return w.writeDeadLetter(dl, m.Pending)
}

// writeDeadLetter stores dl (pending: the consumer's lag after it).
func (w *worker) writeDeadLetter(dl DeadLetter, pending uint64) error {
	o := &w.d.opts
	ctx, cancel := context.WithTimeout(w.ctx, deadLetterTimeout)
	defer cancel()
	write := o.DeadLetter
	if write == nil {
		write = w.d.logDeadLetter
	}
	if err := write(ctx, dl); err != nil {
		err = fmt.Errorf("activation: %s: dead letter %s: %w", w.dest.Name, dl.DeliveryID, err)
		w.failed(err, false)
		return err
	}
	w.stats.update(func(s *DestStats) {
		s.DeadLettered++
		if dl.Seq != 0 { // not a first-sync change
			s.LastSeq, s.Lag = dl.Seq, pending
		}
	})
	w.logger.Warn("activation: dead-lettered", "seq", dl.Seq, "delivery", dl.DeliveryID, "attempts", dl.Attempts, "reason", dl.Reason)
	return nil
}

// DeadLetterSource is the dead-letter source of webhook destination name
// when Options.DeadLetter is nil; a connector's is "<kind>:<name>".
func DeadLetterSource(name string) string { return KindWebhook + ":" + name }

// logDeadLetter writes dl to the log's dead-letter stream.
func (d *Dispatcher) logDeadLetter(ctx context.Context, dl DeadLetter) error {
	kind := cmp.Or(dl.Kind, KindWebhook)
	return d.log.DeadLetter(ctx, alog.DeadLetter{
		Source: kind + ":" + dl.Destination,
		Reason: fmt.Sprintf("%s %s: %s after %d attempts (delivery %s, %s seq %d, subject %s)",
			kind, dl.Destination, dl.Reason, dl.Attempts, dl.DeliveryID, alog.StreamOut, dl.Seq, dl.Subject),
		Payload:  dl.Body,
		Received: dl.Time,
	})
}
