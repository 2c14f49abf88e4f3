package kernels

import (
	"runtime"
	"sync"
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
type Pool struct {
	threads int
	ws      []*Workspace
	start   []chan task
	done    sync.WaitGroup
	closed  bool

	packB []float32 // shared packed panel of B for parallel Sgemm
	gemm  gemmJob
	packJ packBJob
}

type task struct {
	job    Job
	lo, hi int
}

// NewPool starts a pool of the given number of threads; threads < 1 means
// runtime.GOMAXPROCS(0). Call Close to stop its goroutines.
func NewPool(threads int) *Pool {
	if threads < 1 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &Pool{threads: threads, packB: make([]float32, kcBlock*(ncBlock+maxNR))}
	for i := 0; i < threads; i++ {
		p.ws = append(p.ws, NewWorkspace())
	}
	for i := 1; i < threads; i++ {
		ch := make(chan task, 1)
		p.start = append(p.start, ch)
		go p.worker(i, ch)
	}
	p.gemm.pool = p
	p.packJ.pool = p
	return p
}

func (p *Pool) worker(id int, ch chan task) {
	for t := range ch {
		t.job.Do(id, t.lo, t.hi)
		p.done.Done()
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
	p.done.Add(t - 1)
	for i := 1; i < t; i++ {
		p.start[i-1] <- task{job: job, lo: i * n / t, hi: (i + 1) * n / t}
	}
	job.Do(0, 0, n/t)
	p.done.Wait()
}

// Close stops the pool's goroutines. The pool must not be used afterwards.
func (p *Pool) Close() {
	if p.closed {
		return
	}
	p.closed = true
	for _, ch := range p.start {
		close(ch)
	}
}
