package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// LocalOptions describe a whole network in one process: an aggregator and
// Workers workers, each with its own libp2p host on loopback.
type LocalOptions struct {
	Config      diloco.RunConfig
	Init        []float32 // initial weights; nil for the run seed's
	Text        []byte
	Workers     int
	DataDir     string // each node gets a subdirectory; "" for a temporary one
	EvalBatches int
	// LinkBytesPerSec throttles every worker's streams (0: unlimited).
	LinkBytesPerSec float64
	Metrics         *metrics.Registry // the aggregator's; nil for a private one
	Log             *slog.Logger
	OnRound         func(RoundInfo)
}

// LocalResult summarises a local run.
type LocalResult struct {
	Rounds      int
	Wall        time.Duration
	BytesSent   uint64 // by all nodes, on DiLoCo streams
	Weights     []float32
	Compute     time.Duration // summed over workers: time inside inner steps
	WorkerWall  time.Duration // summed over workers: time from start to finish
	Tokens      int64         // trained on, over all workers
	Contributed int           // contributions accepted
	PerWorker   []WorkerStats
}

// Utilisation is the share of the workers' wall time spent computing.
func (r LocalResult) Utilisation() float64 {
	if r.WorkerWall == 0 {
		return 0
	}
	return r.Compute.Seconds() / r.WorkerWall.Seconds()
}

func seedBytes(seed uint64, i int) [32]byte {
	var b [32]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(i))
	copy(b[16:], "cairn/local/key")
	return b
}

// RunLocal runs a DiLoCo network on loopback until the run finishes.
func RunLocal(ctx context.Context, o LocalOptions) (LocalResult, error) {
	if o.Workers < 1 {
		return LocalResult{}, fmt.Errorf("need at least one worker, got %d", o.Workers)
	}
	dir := o.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "cairn-local-*")
		if err != nil {
			return LocalResult{}, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	threads := max(1, runtime.GOMAXPROCS(0)/o.Workers)
	loop := []string{"/ip4/127.0.0.1/tcp/0"}
	agg, err := StartAggregator(AggregatorOptions{DataDir: filepath.Join(dir, "aggregator"), Listen: loop, Config: o.Config, Init: o.Init,
		Text: o.Text, EvalBatches: o.EvalBatches, Threads: 1, Log: o.Log, Metrics: o.Metrics, OnRound: o.OnRound, Grace: 200 * time.Millisecond})
	if err != nil {
		return LocalResult{}, err
	}
	defer agg.Close()
	var workers []*Worker
	for i := 0; i < o.Workers; i++ {
		pool := kernels.NewPool(threads)
		defer pool.Close()
		// Identities derived from the run seed give the workers the same
		// data streams, and the run the same result, every time. They are
		// for this simulation only: anyone can recompute them.
		wdir := filepath.Join(dir, fmt.Sprintf("worker%d", i))
		key, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8(seedBytes(o.Config.Seed, i)))
		if err != nil {
			return LocalResult{}, err
		}
		if err := p2p.SaveIdentity(wdir, key); err != nil {
			return LocalResult{}, err
		}
		w, err := StartWorker(WorkerOptions{DataDir: wdir, Listen: loop,
			Join: agg.Addrs()[0], Text: o.Text, Pool: pool, LinkBytesPerSec: o.LinkBytesPerSec, Log: o.Log})
		if err != nil {
			return LocalResult{}, err
		}
		defer w.Close()
		workers = append(workers, w)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	errs := make(chan error, len(workers)+1)
	done := make([]time.Duration, len(workers))
	for i, w := range workers {
		go func() {
			err := w.Run(ctx)
			done[i] = time.Since(start)
			errs <- err
		}()
	}
	go func() { errs <- agg.Run(ctx) }()
	var first error
	for range len(workers) + 1 {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		return LocalResult{}, first
	}
	res := LocalResult{Wall: time.Since(start), BytesSent: agg.Counter().Sent()}
	res.Weights, res.Rounds = agg.Weights()
	for i, w := range workers {
		st := w.Stats()
		res.PerWorker = append(res.PerWorker, st)
		res.BytesSent += w.Counter().Sent()
		res.Compute += st.Compute
		res.WorkerWall += done[i]
		res.Contributed += st.Rounds
		res.Tokens += st.Tokens
	}

	return res, nil
}
