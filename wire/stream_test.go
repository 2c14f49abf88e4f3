package wire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"testing"
	"time"
)

// zeros is an endless stream of zero bytes that discards what is written.
type zeros struct{}

func (zeros) Read(p []byte) (int, error)  { clear(p); return len(p), nil }
func (zeros) Write(p []byte) (int, error) { return len(p), nil }

type fakeCloser struct {
	zeros
	closed *bool
}

func (f fakeCloser) Close() error { *f.closed = true; return nil }

type fakeCloseWriter struct {
	zeros
	closedWrite *bool
}

func (f fakeCloseWriter) CloseWrite() error { *f.closedWrite = true; return nil }

type fakeStream struct {
	zeros
	closed, closedWrite *bool
}

func (f fakeStream) Close() error      { *f.closed = true; return nil }
func (f fakeStream) CloseWrite() error { *f.closedWrite = true; return nil }

func TestWrappersExposeClose(t *testing.T) {
	wrappers := []struct {
		name string
		wrap func(io.ReadWriter) io.ReadWriter
	}{
		{"Count", func(rw io.ReadWriter) io.ReadWriter { return Count(rw, new(Counter)) }},
		{"Limit up", func(rw io.ReadWriter) io.ReadWriter { return Limit(rw, NewLimiter(1e9, 1<<20), nil) }},
		{"Limit down", func(rw io.ReadWriter) io.ReadWriter { return Limit(rw, nil, NewLimiter(1e9, 1<<20)) }},
	}
	for _, w := range wrappers {
		for _, hasClose := range []bool{false, true} {
			for _, hasCloseWrite := range []bool{false, true} {
				var closed, closedWrite bool
				var rw io.ReadWriter
				switch {
				case hasClose && hasCloseWrite:
					rw = fakeStream{closed: &closed, closedWrite: &closedWrite}
				case hasClose:
					rw = fakeCloser{closed: &closed}
				case hasCloseWrite:
					rw = fakeCloseWriter{closedWrite: &closedWrite}
				default:
					rw = zeros{}
				}
				got := w.wrap(rw)
				if _, ok := got.(zeros); ok {
					t.Fatalf("%s returned the unwrapped value", w.name)
				}
				c, ok := got.(io.Closer)
				if ok != hasClose {
					t.Fatalf("%s(close=%v, closeWrite=%v): has Close = %v", w.name, hasClose, hasCloseWrite, ok)
				}
				if ok {
					c.Close()
					if !closed {
						t.Fatalf("%s: Close not forwarded", w.name)
					}
				}
				cw, ok := got.(closeWriter)
				if ok != hasCloseWrite {
					t.Fatalf("%s(close=%v, closeWrite=%v): has CloseWrite = %v", w.name, hasClose, hasCloseWrite, ok)
				}
				if ok {
					cw.CloseWrite()
					if !closedWrite {
						t.Fatalf("%s: CloseWrite not forwarded", w.name)
					}
				}
			}
		}
	}
}

func TestStreamWrappers(t *testing.T) {
	for _, w := range []struct {
		name string
		wrap func(Stream) Stream
	}{
		{"CountStream", func(s Stream) Stream { return CountStream(s, new(Counter)) }},
		{"LimitStream", func(s Stream) Stream { return LimitStream(s, NewLimiter(1e9, 1<<20), NewLimiter(1e9, 1<<20)) }},
	} {
		var closed, closedWrite bool
		s := w.wrap(fakeStream{closed: &closed, closedWrite: &closedWrite})
		if _, ok := s.(fakeStream); ok {
			t.Fatalf("%s did not wrap", w.name)
		}
		if err := s.CloseWrite(); err != nil || !closedWrite || closed {
			t.Fatalf("%s: CloseWrite: %v, %v, %v", w.name, err, closedWrite, closed)
		}
		if err := s.Close(); err != nil || !closed {
			t.Fatalf("%s: Close: %v, %v", w.name, err, closed)
		}
	}
}

func TestUnlimitedIsIdentity(t *testing.T) {
	var closed, closedWrite bool
	s := fakeStream{closed: &closed, closedWrite: &closedWrite}
	if got := Limit(s, nil, nil); got != io.ReadWriter(s) {
		t.Fatal("Limit(rw, nil, nil) wrapped rw")
	}
	if got := LimitStream(s, nil, nil); got != Stream(s) {
		t.Fatal("LimitStream(s, nil, nil) wrapped s")
	}
	if got := Count(s, nil); got != io.ReadWriter(s) {
		t.Fatal("Count(rw, nil) wrapped rw")
	}
	if got := CountStream(s, nil); got != Stream(s) {
		t.Fatal("CountStream(s, nil) wrapped s")
	}
}

// halfDuplex is an in-memory stream: writes go to out, reads come from in.
type halfDuplex struct {
	in  io.Reader
	out *bytes.Buffer
}

func (h *halfDuplex) Read(p []byte) (int, error)  { return h.in.Read(p) }
func (h *halfDuplex) Write(p []byte) (int, error) { return h.out.Write(p) }

func TestCounter(t *testing.T) {
	var c Counter
	var out bytes.Buffer
	rw := Count(&halfDuplex{in: bytes.NewReader(make([]byte, 1000)), out: &out}, &c)
	if err := WriteMsg(rw, 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := WriteBlob(rw, make([]byte, ChunkSize+1)); err != nil {
		t.Fatal(err)
	}
	want := uint64(msgHeaderSize + 5 + EncodedBlobSize(ChunkSize+1))
	if c.Sent() != want || uint64(out.Len()) != want {
		t.Fatalf("Sent() = %d, buffer has %d, want %d", c.Sent(), out.Len(), want)
	}
	n, err := io.Copy(io.Discard, rw)
	if err != nil || n != 1000 || c.Received() != 1000 {
		t.Fatalf("copied %d (%v), Received() = %d, want 1000", n, err, c.Received())
	}
}

func TestCounterConcurrent(t *testing.T) {
	var c Counter
	var wg sync.WaitGroup
	const workers, rounds = 8, 1000
	for range workers {
		rw := Count(zeros{}, &c) // one Counter shared by several streams
		wg.Go(func() {
			buf := make([]byte, 100)
			for range rounds {
				rw.Write(buf[:7])
				rw.Read(buf[:3])
			}
		})
	}
	wg.Wait()
	if c.Sent() != workers*rounds*7 || c.Received() != workers*rounds*3 {
		t.Fatalf("Sent %d, Received %d", c.Sent(), c.Received())
	}
}

// within fails t unless d is within 20% of want.
func within(t *testing.T, what string, d, want time.Duration) {
	t.Helper()
	if d < want*8/10 || d > want*12/10 {
		t.Errorf("%s took %v, want %v ±20%%", what, d, want)
	} else {
		t.Logf("%s took %v (want %v)", what, d, want)
	}
}

func TestLimitAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	const total = 2_000_000
	const rate = 4e6
	tests := []struct {
		name  string
		burst int
		run   func(l *Limiter) error
	}{
		{"write one call", 64 << 10, func(l *Limiter) error {
			_, err := Limit(zeros{}, l, nil).Write(make([]byte, total))
			return err
		}},
		{"write small calls", 4 << 10, func(l *Limiter) error {
			w := Limit(zeros{}, l, nil)
			buf := make([]byte, 1000)
			for range total / len(buf) {
				if _, err := w.Write(buf); err != nil {
					return err
				}
			}
			return nil
		}},
		{"read", 64 << 10, func(l *Limiter) error {
			_, err := io.CopyN(io.Discard, Limit(zeros{}, nil, l), total)
			return err
		}},
		{"blob over limited stream", 64 << 10, func(l *Limiter) error {
			return WriteBlob(Limit(zeros{}, l, nil), make([]byte, total))
		}},
		{"Wait above burst", 1000, func(l *Limiter) error {
			return l.Wait(context.Background(), total)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(rate, tt.burst)
			start := time.Now()
			if err := tt.run(l); err != nil {
				t.Fatal(err)
			}
			// The bucket starts full, so the first burst passes at once.
			within(t, tt.name, time.Since(start), time.Duration(float64(total-tt.burst)/rate*float64(time.Second)))
		})
	}
}

func TestLimiterConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	const workers, each, piece = 8, 250_000, 10_000
	l := NewLimiter(4e6, piece)
	start := time.Now()
	var wg sync.WaitGroup
	done := make([]time.Duration, workers)
	for i := range workers {
		wg.Go(func() {
			for range each / piece {
				if err := l.Wait(context.Background(), piece); err != nil {
					t.Error(err)
					return
				}
			}
			done[i] = time.Since(start)
		})
	}
	wg.Wait()
	within(t, "8 concurrent waiters", time.Since(start), 500*time.Millisecond)
	// The rate is shared: nobody finishes long before the others.
	for i, d := range done {
		if d < 300*time.Millisecond {
			t.Errorf("worker %d finished after only %v", i, d)
		}
	}
}

func TestLimiterWaitCancel(t *testing.T) {
	l := NewLimiter(10, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Wait(ctx, 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancellation took %v", d)
	}
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := l.Wait(cancelled, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want Canceled", err)
	}
}

func TestLimiterTrivial(t *testing.T) {
	var nilL *Limiter
	if err := nilL.Wait(context.Background(), 1<<30); err != nil {
		t.Fatal(err)
	}
	if !math.IsInf(nilL.Rate(), 1) || nilL.Burst() != 0 {
		t.Fatal("nil limiter accessors")
	}
	inf := NewLimiter(math.Inf(1), 0)
	start := time.Now()
	if err := inf.Wait(context.Background(), 1<<40); err != nil || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("unlimited limiter: %v after %v", err, time.Since(start))
	}
	l := NewLimiter(1, -3)
	if l.Burst() != 1 || l.Rate() != 1 {
		t.Fatalf("got burst %d rate %v", l.Burst(), l.Rate())
	}
	if err := l.Wait(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	for _, rate := range []float64{0, -1, math.NaN(), math.Inf(-1)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewLimiter(%v) did not panic", rate)
				}
			}()
			NewLimiter(rate, 1)
		}()
	}
}

func TestLimiterHugeDebt(t *testing.T) {
	// A tiny rate must not overflow the wait into a negative duration.
	l := NewLimiter(1e-300, 1<<30)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	l.Wait(ctx, 1<<30) // drains the full bucket
	if err := l.Wait(ctx, 1<<30); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
}

func TestCloseWakesLimitedStream(t *testing.T) {
	var closed, closedWrite bool
	for _, dir := range []string{"write", "read"} {
		t.Run(dir, func(t *testing.T) {
			l := NewLimiter(100, 1) // 16 KiB would take minutes
			var s Stream
			if dir == "write" {
				s = LimitStream(fakeStream{closed: &closed, closedWrite: &closedWrite}, l, nil)
			} else {
				s = LimitStream(fakeStream{closed: &closed, closedWrite: &closedWrite}, nil, l)
			}
			errc := make(chan error, 1)
			go func() {
				var err error
				if dir == "write" {
					_, err = s.Write(make([]byte, 1<<20))
				} else {
					_, err = io.ReadFull(s, make([]byte, 1<<20))
				}
				errc <- err
			}()
			time.Sleep(50 * time.Millisecond)
			s.Close()
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("got %v, want net.ErrClosed", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Close did not wake the blocked call")
			}
		})
	}
}

func BenchmarkUnlimited(b *testing.B) {
	buf := make([]byte, 32<<10)
	for _, bm := range []struct {
		name string
		rw   io.ReadWriter
	}{
		{"raw", zeros{}},
		{"Count", Count(zeros{}, new(Counter))},
		{"Limit nil", Limit(zeros{}, nil, nil)},
		{"Limit inf", Limit(zeros{}, NewLimiter(math.Inf(1), 1<<20), nil)},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				bm.rw.Write(buf)
			}
		})
	}
}

// pipeStream is one end of an in-memory duplex pipe.
type pipeStream struct {
	net.Conn
}

func (p pipeStream) CloseWrite() error { return nil }

// TestLimitStreamRTT: a read waits one round trip when it is the stream's
// first or follows a write (a request-response turn), not when it
// continues reading; Close wakes a waiting read.
func TestLimitStreamRTT(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	const rtt = 60 * time.Millisecond
	s := LimitStreamRTT(pipeStream{a}, nil, nil, rtt)
	go func() { // the far end answers every request with 8 bytes, twice
		buf := make([]byte, 4)
		for {
			if _, err := io.ReadFull(b, buf); err != nil {
				return
			}
			b.Write(make([]byte, 8))
		}
	}()
	turn := func(name string, write bool, want time.Duration) {
		t.Helper()
		start := time.Now()
		if write {
			if _, err := s.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := io.ReadFull(s, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		got := time.Since(start)
		if got < want || got > want+rtt/2+200*time.Millisecond {
			t.Errorf("%s took %v, want about %v", name, got, want)
		}
	}
	turn("request, first half of the answer", true, rtt)
	turn("second half of the answer", false, 0)
	turn("next request", true, rtt)
	turn("its second half", false, 0)

	// Close wakes a read waiting out the round trip.
	c, d := net.Pipe()
	defer d.Close()
	slow := LimitStreamRTT(pipeStream{c}, nil, nil, time.Hour)
	done := make(chan error, 1)
	go func() { _, err := slow.Read(make([]byte, 1)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	slow.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("woken read: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the read")
	}
	if LimitStreamRTT(pipeStream{c}, nil, nil, 0) != Stream(pipeStream{c}) {
		t.Fatal("LimitStreamRTT with no limit and no RTT wrapped the stream")
	}
}

// TestLossStall: a piece stalls for one RTO when one of its packets is
// lost: never without loss, with the probability 1-(1-p)^packets with it
// (checked over many draws of a seeded stream), and the RTO is twice the
// RTT, at least 200 ms. Streams with the same seed draw differently.
func TestLossStall(t *testing.T) {
	if got := RTO(50 * time.Millisecond); got != 200*time.Millisecond {
		t.Errorf("RTO(50ms) = %v, want the 200ms minimum", got)
	}
	if got := RTO(300 * time.Millisecond); got != 600*time.Millisecond {
		t.Errorf("RTO(300ms) = %v, want 600ms", got)
	}
	fs := fakeStream{zeros{}, new(bool), new(bool)}
	if s := LimitStreamLink(fs, nil, nil, Link{Loss: 1.5}); s != Stream(fs) {
		t.Error("a loss outside [0, 1) with nothing else to emulate did not return the stream itself")
	}
	lim := func(loss float64) *limited {
		return LimitStreamLink(fs, nil, nil, Link{RTT: 100 * time.Millisecond, Loss: loss, Seed: 7}).(*limitedStream).limited
	}
	if d := lim(0.5).lossStall(0); d != 0 {
		t.Errorf("an empty piece stalled %v", d)
	}
	for _, tc := range []struct {
		loss  float64
		bytes int
	}{{0.01, 25 << 10}, {0.01, MSS}, {0.1, 4 * MSS}} {
		x := lim(tc.loss)
		const draws = 20000
		stalls := 0
		for range draws {
			switch d := x.lossStall(tc.bytes); d {
			case 0:
			case 200 * time.Millisecond:
				stalls++
			default:
				t.Fatalf("a stall of %v, want 0 or the RTO", d)
			}
		}
		packets := (tc.bytes + MSS - 1) / MSS
		want := 1 - math.Pow(1-tc.loss, float64(packets))
		got := float64(stalls) / draws
		if sd := math.Sqrt(want * (1 - want) / draws); math.Abs(got-want) > 5*sd {
			t.Errorf("loss %g, %d bytes: %.4f of pieces stalled, want %.4f ± %.4f", tc.loss, tc.bytes, got, want, 5*sd)
		}
	}
	a, b := lim(0.5), lim(0.5)
	same := true
	for range 64 {
		if a.lossStall(MSS) != b.lossStall(MSS) {
			same = false
		}
	}
	if same {
		t.Error("two streams drew the same 64 losses")
	}
}
