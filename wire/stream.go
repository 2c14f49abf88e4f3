package wire

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Stream is a bidirectional stream that can be half-closed, as a libp2p
// stream is. LimitStream and CountStream wrap one.
type Stream interface {
	io.ReadWriteCloser
	// CloseWrite closes the writing side, signalling end of stream to
	// the peer, while reading stays possible.
	CloseWrite() error
}

type closeWriter interface{ CloseWrite() error }

// Counter counts the bytes sent and received through the streams wrapped
// with Count or CountStream. It is safe for concurrent use, and one
// Counter may be shared by several streams. The zero value is ready.
type Counter struct {
	sent, received atomic.Uint64
}

// Sent returns the number of bytes written so far.
func (c *Counter) Sent() uint64 { return c.sent.Load() }

// Received returns the number of bytes read so far.
func (c *Counter) Received() uint64 { return c.received.Load() }

// Count returns rw wrapped so that the bytes its Read and Write calls
// transfer are added to c (bytes returned together with an error count
// too). The result also has Close and/or CloseWrite() error, forwarded to
// rw, when rw has them; other methods of rw are not exposed. If c is nil,
// rw itself is returned. Count never fails.
func Count(rw io.ReadWriter, c *Counter) io.ReadWriter {
	if c == nil {
		return rw
	}
	var closeFn, closeWriteFn func() error
	if cl, ok := rw.(io.Closer); ok {
		closeFn = cl.Close
	}
	if cw, ok := rw.(closeWriter); ok {
		closeWriteFn = cw.CloseWrite
	}
	return expose(&counted{rw: rw, c: c}, closeFn, closeWriteFn)
}

// CountStream is Count for a Stream: Close and CloseWrite are forwarded to
// s. If c is nil, s itself is returned.
func CountStream(s Stream, c *Counter) Stream {
	if c == nil {
		return s
	}
	return &countedStream{counted{rw: s, c: c}, s}
}

type counted struct {
	rw io.ReadWriter
	c  *Counter
}

func (x *counted) Read(p []byte) (int, error) {
	n, err := x.rw.Read(p)
	if n > 0 {
		x.c.received.Add(uint64(n))
	}
	return n, err
}

func (x *counted) Write(p []byte) (int, error) {
	n, err := x.rw.Write(p)
	if n > 0 {
		x.c.sent.Add(uint64(n))
	}
	return n, err
}

type countedStream struct {
	counted
	s Stream
}

func (x *countedStream) Close() error      { return x.s.Close() }
func (x *countedStream) CloseWrite() error { return x.s.CloseWrite() }

// Limit returns rw wrapped so that its writes are throttled by up and its
// reads by down; a nil limiter leaves that direction unthrottled, and if
// both are nil rw itself is returned. Writes wait before sending each
// piece; reads wait after receiving, for the bytes actually read. Pieces
// are at most the limiter's burst size clamped to 16 KiB .. 1 MiB.
//
// The result also has Close and/or CloseWrite() error, forwarded to rw,
// when rw has them; other methods of rw are not exposed. Close also wakes
// reads and writes waiting in the limiters, which then fail with an error
// wrapping net.ErrClosed. Otherwise errors are those of rw.
func Limit(rw io.ReadWriter, up, down *Limiter) io.ReadWriter {
	if up == nil && down == nil {
		return rw
	}
	l := newLimited(rw, up, down)
	var closeFn, closeWriteFn func() error
	if cl, ok := rw.(io.Closer); ok {
		closeFn = func() error { l.cancel(); return cl.Close() }
	}
	if cw, ok := rw.(closeWriter); ok {
		closeWriteFn = cw.CloseWrite
	}
	return expose(l, closeFn, closeWriteFn)
}

// LimitStream is Limit for a Stream: Close (which also wakes waiting reads
// and writes) and CloseWrite are forwarded to s. If up and down are both
// nil, s itself is returned.
func LimitStream(s Stream, up, down *Limiter) Stream { return LimitStreamRTT(s, up, down, 0) }

// LimitStreamRTT is LimitStream over a link with round-trip time rtt: the
// first read of the stream, and every read that follows a write, waits
// rtt before it reads, as a request has to reach the far end and the
// answer come back (a request-response exchange costs one round trip, a
// stream's opening is included in its first). Close wakes that wait too.
// With rtt 0 it is LimitStream.
func LimitStreamRTT(s Stream, up, down *Limiter, rtt time.Duration) Stream {
	return LimitStreamLink(s, up, down, Link{RTT: rtt})
}

// Link is an emulated link's latency and loss (its rates are the
// limiters').
type Link struct {
	// RTT is the round-trip time (see LimitStreamRTT).
	RTT time.Duration
	// Loss is the probability that a packet of MSS bytes is lost. The
	// emulation is TCP's retransmission stall, not its congestion
	// window: every piece of a transfer in which a packet is lost waits
	// one retransmission timeout, RTO, before it goes on. A piece is what
	// the limiter lets through in one step (at least 16 KiB); without a
	// limiter, one read, or at most 1 MiB of a write.
	Loss float64
	// Seed seeds the draws of losses (each stream draws from its own
	// generator, seeded with Seed and the stream's number).
	Seed uint64
}

// MSS is the packet payload of the loss emulation, TCP's over Ethernet.
const MSS = 1460

// RTO is the retransmission timeout a lost packet costs on a link with
// round-trip time rtt: twice the RTT, at least Linux's minimum of 200 ms.
func RTO(rtt time.Duration) time.Duration { return max(2*rtt, 200*time.Millisecond) }

// streams numbers the streams with emulated loss, for their seeds.
var streams atomic.Uint64

// LimitStreamLink is LimitStreamRTT over link: with link.Loss > 0 each
// piece of a transfer either way loses a packet with the probability that
// one of its packets is lost, and then waits RTO(link.RTT) (Close wakes
// that wait too). A loss outside [0, 1) counts as 0.
func LimitStreamLink(s Stream, up, down *Limiter, link Link) Stream {
	loss := link.Loss
	if !(loss > 0 && loss < 1) {
		loss = 0
	}
	if up == nil && down == nil && link.RTT <= 0 && loss == 0 {
		return s
	}
	l := newLimited(s, up, down)
	l.rtt = max(link.RTT, 0)
	if loss > 0 {
		l.loss, l.rto = loss, RTO(l.rtt)
		l.rng = rand.New(rand.NewPCG(link.Seed, streams.Add(1)))
	}
	return &limitedStream{l, s}
}

type limited struct {
	rw       io.ReadWriter
	up, down *Limiter
	ctx      context.Context
	cancel   context.CancelFunc
	rtt      time.Duration
	mu       sync.Mutex
	turned   bool // a read has happened and no write since
	// Loss emulation: the packet loss probability, the stall a loss
	// costs and the draws (under mu).
	loss float64
	rto  time.Duration
	rng  *rand.Rand
}

// lossStall is how long a piece of n bytes waits for retransmission: RTO
// if one of its packets is lost, else 0.
func (x *limited) lossStall(n int) time.Duration {
	if x.loss == 0 || n <= 0 {
		return 0
	}
	packets := (n + MSS - 1) / MSS
	delivered := math.Pow(1-x.loss, float64(packets))
	x.mu.Lock()
	lost := x.rng.Float64() >= delivered
	x.mu.Unlock()
	if lost {
		return x.rto
	}
	return 0
}

// stall waits out the loss of a piece of n bytes.
func (x *limited) stall(n int) error {
	if d := x.lossStall(n); d > 0 {
		if err := sleep(x.ctx, d); err != nil {
			return closedErr(err)
		}
	}
	return nil
}

func newLimited(rw io.ReadWriter, up, down *Limiter) *limited {
	ctx, cancel := context.WithCancel(context.Background())
	return &limited{rw: rw, up: up, down: down, ctx: ctx, cancel: cancel}
}

// piece is the largest transfer made in one step under l.
func piece(l *Limiter) int {
	return min(max(l.burst, 16<<10), 1<<20)
}

func (x *limited) Read(p []byte) (int, error) {
	if x.rtt > 0 {
		x.mu.Lock()
		wait := !x.turned
		x.turned = true
		x.mu.Unlock()
		if wait {
			if err := sleep(x.ctx, x.rtt); err != nil {
				return 0, closedErr(err)
			}
		}
	}
	if x.down == nil {
		n, err := x.rw.Read(p)
		if serr := x.stall(n); serr != nil && err == nil {
			err = serr
		}
		return n, err
	}
	if len(p) > piece(x.down) {
		p = p[:piece(x.down)]
	}
	n, err := x.rw.Read(p)
	if n > 0 {
		if werr := x.down.Wait(x.ctx, n); werr != nil && err == nil {
			err = closedErr(werr)
		}
		if serr := x.stall(n); serr != nil && err == nil {
			err = serr
		}
	}
	return n, err
}

func (x *limited) Write(p []byte) (int, error) {
	if x.rtt > 0 && len(p) > 0 {
		x.mu.Lock()
		x.turned = false
		x.mu.Unlock()
	}
	step := 1 << 20
	if x.up != nil {
		step = piece(x.up)
	} else if x.loss == 0 {
		return x.rw.Write(p)
	}
	done := 0
	for done < len(p) {
		q := p[done:min(done+step, len(p))]
		if x.up != nil {
			if err := x.up.wait(x.ctx, len(q), done > 0); err != nil {
				return done, closedErr(err)
			}
		}
		if err := x.stall(len(q)); err != nil {
			return done, err
		}
		n, err := x.rw.Write(q)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// closedErr translates the cancellation done by Close.
func closedErr(error) error {
	return fmt.Errorf("wire: stream closed while throttled: %w", net.ErrClosed)
}

type limitedStream struct {
	*limited
	s Stream
}

func (x *limitedStream) Close() error {
	x.cancel()
	return x.s.Close()
}

func (x *limitedStream) CloseWrite() error { return x.s.CloseWrite() }

// expose returns base with Close and/or CloseWrite methods added for the
// non-nil functions given.
func expose(base io.ReadWriter, closeFn, closeWriteFn func() error) io.ReadWriter {
	switch {
	case closeFn != nil && closeWriteFn != nil:
		return &rwBoth{base, closeFn, closeWriteFn}
	case closeFn != nil:
		return &rwCloser{base, closeFn}
	case closeWriteFn != nil:
		return &rwCloseWriter{base, closeWriteFn}
	default:
		return base
	}
}

type rwCloser struct {
	io.ReadWriter
	close func() error
}

func (x *rwCloser) Close() error { return x.close() }

type rwCloseWriter struct {
	io.ReadWriter
	closeWrite func() error
}

func (x *rwCloseWriter) CloseWrite() error { return x.closeWrite() }

type rwBoth struct {
	io.ReadWriter
	close, closeWrite func() error
}

func (x *rwBoth) Close() error      { return x.close() }
func (x *rwBoth) CloseWrite() error { return x.closeWrite() }

// NetStream is a stream over a network connection: a Stream that can also
// be reset (aborted in both directions) and given a deadline.
type NetStream interface {
	Stream
	Reset() error
	SetDeadline(t time.Time) error
}
