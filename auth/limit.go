package auth

import (
	"math"
	"sync"
	"time"
)

// LimiterOptions configure a Limiter.
type LimiterOptions struct {
	// Rate is how many tokens a key regains per second. Required (> 0).
	Rate float64
	// Burst is a key's bucket size. Default: one second of Rate (at least 1).
	Burst float64
	// MaxKeys bounds the memory: when a new key would exceed it, the idle
	// keys (full buckets: forgetting them changes nothing) are evicted, then
	// the least recently seen ones. Default 100000.
	MaxKeys int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Limiter is a keyed token-bucket rate limiter. It is safe for concurrent
// use and its memory is bounded by MaxKeys.
type Limiter struct {
	opts    LimiterOptions
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time // when tokens was computed
}

// NewLimiter returns a limiter; it panics on a non-positive rate (a
// programmer error: callers disable limiting by not making one).
func NewLimiter(o LimiterOptions) *Limiter {
	if !(o.Rate > 0) {
		panic("auth: limiter rate must be positive")
	}
	if o.Burst < 1 {
		o.Burst = math.Max(1, o.Rate)
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 100000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Limiter{opts: o, buckets: map[string]*bucket{}}
}

// refill brings b up to now (the caller holds mu).
func (l *Limiter) refill(b *bucket, now time.Time) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(l.opts.Burst, b.tokens+dt*l.opts.Rate)
	}
	b.last = now
}

// get returns key's bucket, brought up to now; a new key starts full.
func (l *Limiter) get(key string, now time.Time) *bucket {
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.opts.MaxKeys {
			l.evict(now)
		}
		b = &bucket{tokens: l.opts.Burst, last: now}
		l.buckets[key] = b
		return b
	}
	l.refill(b, now)
	return b
}

// evict drops every full bucket, and if that frees nothing, the least
// recently seen quarter (the caller holds mu).
func (l *Limiter) evict(now time.Time) {
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.opts.Burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) < l.opts.MaxKeys {
		return
	}
	// All busy: drop the least recently seen quarter (at least one).
	var oldest time.Time
	n := max(1, len(l.buckets)/4)
	for range n {
		var ok string
		first := true
		for k, b := range l.buckets {
			if first || b.last.Before(oldest) {
				ok, oldest, first = k, b.last, false
			}
		}
		delete(l.buckets, ok)
	}
}

// AllowN takes n tokens from key's bucket if it holds them. Otherwise it
// takes nothing and says how long until it will. A request of more than
// Burst costs Burst (it is allowed when the bucket is full).
func (l *Limiter) AllowN(key string, n float64) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opts.Now()
	b := l.get(key, now)
	n = math.Min(n, l.opts.Burst)
	if b.tokens >= n {
		b.tokens -= n
		return true, 0
	}
	return false, l.wait(b, n)
}

// wait is how long until b holds n tokens.
func (l *Limiter) wait(b *bucket, n float64) time.Duration {
	return time.Duration(math.Ceil((n - b.tokens) / l.opts.Rate * float64(time.Second)))
}

// Allow is AllowN(key, 1).
func (l *Limiter) Allow(key string) (bool, time.Duration) { return l.AllowN(key, 1) }

// Peek reports whether key's bucket holds at least one token, and if not how
// long until it will, taking nothing.
func (l *Limiter) Peek(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return true, 0
	}
	l.refill(b, l.opts.Now())
	if b.tokens >= 1 {
		return true, 0
	}
	return false, l.wait(b, 1)
}

// Reset forgets key (its bucket is full again).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.buckets, key)
}

// Len is the number of keys remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// ThrottleOptions configure a Throttle.
type ThrottleOptions struct {
	// Failures is how many failures a key may have in a row before it is
	// throttled. Default 5.
	Failures int
	// Every is how often a throttled key regains one attempt. Default 1 min.
	Every time.Duration
	// MaxKeys and Now as for LimiterOptions.
	MaxKeys int
	Now     func() time.Time
}

// Throttle limits failed attempts (logins) per key: each failure takes a
// token from a bucket of Failures that refills one per Every; a success
// refills it. Check before the attempt, Fail or Succeed after.
type Throttle struct{ l *Limiter }

// NewThrottle returns a throttle.
func NewThrottle(o ThrottleOptions) *Throttle {
	if o.Failures <= 0 {
		o.Failures = 5
	}
	if o.Every <= 0 {
		o.Every = time.Minute
	}
	return &Throttle{l: NewLimiter(LimiterOptions{Rate: 1 / o.Every.Seconds(), Burst: float64(o.Failures), MaxKeys: o.MaxKeys, Now: o.Now})}
}

// Check reports whether key may attempt now, else how long until it may.
func (t *Throttle) Check(key string) (bool, time.Duration) { return t.l.Peek(key) }

// Fail records a failed attempt of key.
func (t *Throttle) Fail(key string) { t.l.AllowN(key, 1) }

// Succeed forgets key's failures.
func (t *Throttle) Succeed(key string) { t.l.Reset(key) }
