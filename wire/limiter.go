package wire

import (
	"context"
	"math"
	"sync"
	"time"
)

// Limiter is a token-bucket rate limiter counting bytes. Tokens accrue at
// the configured rate up to the burst size; the bucket starts full. It is
// safe for concurrent use: concurrent waiters share the rate, each being
// served in the order it reserved. A nil *Limiter imposes no limit.
type Limiter struct {
	rate  float64 // bytes per second; +Inf means unlimited
	burst int

	mu     sync.Mutex
	tokens float64 // may be negative: reserved by waiters still sleeping
	last   time.Time
}

// NewLimiter returns a limiter that lets bytesPerSecond bytes through per
// second on average and at most burst bytes at once after an idle period.
// A bytesPerSecond of +Inf means unlimited. A burst below 1 is taken as 1.
// NewLimiter panics if bytesPerSecond is NaN, zero or negative.
func NewLimiter(bytesPerSecond float64, burst int) *Limiter {
	if !(bytesPerSecond > 0) {
		panic("wire: NewLimiter: bytesPerSecond must be positive")
	}
	burst = max(burst, 1)
	return &Limiter{rate: bytesPerSecond, burst: burst, tokens: float64(burst), last: time.Now()}
}

// Rate returns the limiter's rate in bytes per second (+Inf for a nil
// limiter).
func (l *Limiter) Rate() float64 {
	if l == nil {
		return math.Inf(1)
	}
	return l.rate
}

// Burst returns the limiter's burst size in bytes (0 for a nil limiter).
func (l *Limiter) Burst() int {
	if l == nil {
		return 0
	}
	return l.burst
}

// Wait blocks until n bytes may pass. An n larger than the burst size is
// taken in pieces of at most the burst size, so Wait never fails for a
// large n; while it goes from one piece to the next, a late wake-up of up
// to 20 ms is made up for, so a large n takes n/rate seconds (less one
// burst if the bucket was full) even when the burst is small. Between
// separate calls the bucket holds at most the burst, so for accuracy the
// burst should cover the scheduling latency: a few milliseconds' worth of
// bytes. It returns nil at once if l is nil or n <= 0. If ctx ends first,
// Wait returns ctx.Err(); the bytes of the piece it was waiting for are
// given back to the bucket, but pieces already let through stay spent.
func (l *Limiter) Wait(ctx context.Context, n int) error {
	return l.wait(ctx, n, false)
}

// contSlack bounds the oversleep made up for when a caller continues a
// transfer it had to wait for.
const contSlack = 20 * time.Millisecond

// wait is Wait; cont says that the caller continues a transfer it was
// throttled on just before, so that its own late wake-up may be made up.
func (l *Limiter) wait(ctx context.Context, n int, cont bool) error {
	if l == nil || n <= 0 || math.IsInf(l.rate, 1) {
		return nil
	}
	for ; n > 0; cont = true {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(n, l.burst)
		if d := l.reserve(k, cont); d > 0 {
			if err := sleep(ctx, d); err != nil {
				l.refund(k)
				return err
			}
		}
		n -= k
	}
	return nil
}

// reserve takes k tokens, going into debt if needed, and returns how long
// the caller must wait for the debt it created to be paid off. Tokens
// accrue up to the burst size, or for a continuing caller up to contSlack
// more, which is the credit its own late wake-up earned.
func (l *Limiter) reserve(k int, cont bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if dt := now.Sub(l.last); dt > 0 {
		limit := float64(l.burst)
		if cont {
			limit += l.rate * contSlack.Seconds()
		}
		if l.tokens < limit {
			l.tokens = min(limit, l.tokens+dt.Seconds()*l.rate)
		}
		l.last = now
	}
	l.tokens -= float64(k)
	if l.tokens >= 0 {
		return 0
	}
	secs := -l.tokens / l.rate
	if secs >= float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(secs * float64(time.Second))
}

func (l *Limiter) refund(k int) {
	l.mu.Lock()
	l.tokens = min(float64(l.burst), l.tokens+float64(k))
	l.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
