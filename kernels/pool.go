package kernels

import (
	"runtime"
	"sync/atomic"
	"time"
)

// A Job is work that a Pool splits over its threads. Do processes the items
// [lo, hi) on the thread numbered worker (0 ≤ worker < Pool.Threads()).
// Implementations are usually pointers to preallocated structs, so that
// handing a job to the pool allocates nothing.
type Job interface {
	Do(worker, lo, hi int)
}

// Pool is a fixed set of threads that run Jobs. The calling goroutine is
// thread 0 and Threads()-1 goroutines wait for work. A Pool is meant to be
// driven by one goroutine at a time: Run and Sgemm must not be called
// concurrently on the same Pool. Every thread owns a Workspace, so jobs can
// run single-threaded matrix products without allocating.
//
// A training step hands the pool hundreds of short jobs, back to back; a
// goroutine parked on a channel takes tens of microseconds to wake on a
// virtual machine, which made a product with many blocks wait more than it
// computed. So threads that finish spin for a short while (spinFor) watching
// for the next job or for the others to finish, and only then park.
type Pool struct {
	threads int
	ws      []*Workspace
	workers []*poolWorker
	pending atomic.Int32 // workers still running the current job
	parked  atomic.Bool  // the caller sleeps on done
	done    chan struct{}
	closed  bool

	packB []float32 // shared packed panel of B for parallel Sgemm
	tbuf  []float32 // A transposed for a weight-gradient product (transpose.go)
	tJob  transposeJob
	gemm  gemmJob
	packJ packBJob
	amx   amxGemm
}

// poolWorker is one waiting thread: Run publishes a task and bumps seq.
type poolWorker struct {
	seq    atomic.Uint64
	parked atomic.Bool
	wake   chan struct{}
	task   task
	quit   bool
}

type task struct {
	job    Job
	lo, hi int
}

// spinFor is how long a thread busy-waits before parking.
const spinFor = 50 * time.Microsecond

// spin calls ready until it reports true or spinFor has passed, and says
// which. The wait is short enough that other goroutines lose little by it
// (the runtime preempts a spinning thread anyway when they need one).
func spin(ready func() bool) bool {
	var start time.Time
	for i := 1; ; i++ {
		if ready() {
			return true
		}
		if i%256 == 0 {
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > spinFor {
				return false
			}
		}
	}
}

// NewPool starts a pool of the given number of threads; threads < 1 means
// runtime.GOMAXPROCS(0). Call Close to stop its goroutines.
func NewPool(threads int) *Pool {
	if threads < 1 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &Pool{threads: threads, packB: make([]float32, kcBlock*(ncBlock+maxNR)), done: make(chan struct{}, 1)}
	for i := 0; i < threads; i++ {
		p.ws = append(p.ws, NewWorkspace())
	}
	for i := 1; i < threads; i++ {
		w := &poolWorker{wake: make(chan struct{}, 1)}
		p.workers = append(p.workers, w)
		go p.worker(i, w)
	}
	p.gemm.pool = p
	p.packJ.pool = p
	return p
}

func (p *Pool) worker(id int, w *poolWorker) {
	var seen uint64
	for {
		fresh := func() bool { return w.seq.Load() != seen }
		for !spin(fresh) {
			// Park: announce it, then look once more, so that a task
			// published in between is not missed (Run stores seq before
			// it reads parked; this stores parked before it reads seq).
			w.parked.Store(true)
			if !fresh() {
				<-w.wake
			}
			w.parked.Store(false)
		}
		seen = w.seq.Load()
		if w.quit {
			return
		}
		t := w.task
		t.job.Do(id, t.lo, t.hi)
		w.task.job = nil
		if p.pending.Add(-1) == 0 && p.parked.Load() {
			select {
			case p.done <- struct{}{}:
			default:
			}
		}
	}
}

// publish hands w a task (or the order to quit) and wakes it if it sleeps.
func (w *poolWorker) publish() {
	w.seq.Add(1)
	if w.parked.Load() {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Threads reports how many threads the pool runs jobs on.
func (p *Pool) Threads() int { return p.threads }

// Workspace returns the scratch space owned by thread worker, for use by a
// Job running on that thread.
func (p *Pool) Workspace(worker int) *Workspace { return p.ws[worker] }

// Run splits the items [0, n) into at most Threads() contiguous ranges of
// near-equal size and calls job.Do on each range, one per thread, returning
// when all are done. The split depends only on n and Threads(); jobs that
// must give the same results for any thread count must compute each output
// from a fixed order of operations, whatever range it lands in.
func (p *Pool) Run(n int, job Job) {
	if n <= 0 {
		return
	}
	t := min(p.threads, n)
	if t == 1 {
		job.Do(0, 0, n)
		return
	}
	p.pending.Store(int32(t - 1))
	for i := 1; i < t; i++ {
		w := p.workers[i-1]
		w.task = task{job: job, lo: i * n / t, hi: (i + 1) * n / t}
		w.publish()
	}
	job.Do(0, 0, n/t)
	finished := func() bool { return p.pending.Load() == 0 }
	for !spin(finished) {
		p.parked.Store(true)
		if !finished() {
			<-p.done
		}
		p.parked.Store(false)
	}
	// A wake-up sent after the last look is left in the buffer; drop it so
	// that the next Run does not take it for its own.
	select {
	case <-p.done:
	default:
	}
}

// Close stops the pool's goroutines. The pool must not be used afterwards.
func (p *Pool) Close() {
	if p.closed {
		return
	}
	p.closed = true
	for _, w := range p.workers {
		w.quit = true
		w.publish()
	}
}
