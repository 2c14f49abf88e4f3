package chain

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	coretypes "github.com/cometbft/cometbft/rpc/core/types"

	"github.com/cairnlabs/cairn/ledger"
)

// Bench accounts: well-known keys a test network funds at its genesis
// ('cairn chain init --bench-accounts N') so that 'cairn chain bench'
// can sign transactions. Anyone can derive them: never fund them on a
// network that matters.
const (
	MaxBenchAccounts = 4096
	BenchFunds       = 1 << 40
)

// BenchKey is bench account i's key.
func BenchKey(i int) ed25519.PrivateKey {
	seed := sha256.Sum256(fmt.Appendf(nil, "cairn chain bench account %d", i))
	return ed25519.NewKeyFromSeed(seed[:])
}

// BenchOptions configure Bench.
type BenchOptions struct {
	// Clients are the validators transactions are broadcast to, in turn
	// by sender; the first also reports blocks.
	Clients []*Client
	// Rate is the transactions per second to submit, Duration how long.
	Rate     float64
	Duration time.Duration
	// Accounts is the number of funded bench accounts (as given to
	// chain init); Senders of them sign, each its own sequence of
	// transfers (default min(Accounts, max(4, Rate/25))).
	Accounts, Senders int
	// Grace is how long to wait after the last broadcast for the
	// transactions still in the mempool (default 15 s).
	Grace time.Duration
	// Progress, if set, is called about once a second.
	Progress func(sent, committed int, height int64)
}

// BenchReport is what Bench measured.
type BenchReport struct {
	Sent      int // broadcast
	Refused   int // refused by CheckTx or the RPC
	Committed int // in a committed block with result OK
	Failed    int // in a block with a non-OK result
	Missing   int // accepted but in no block by the end of the grace period
	// Span is from the first broadcast to the commit of the last
	// committed transaction; TPS is Committed / Span.
	Span time.Duration
	TPS  float64
	// Blocks with bench transactions, and the block time (header time
	// between consecutive blocks) over the span: median and max.
	Blocks                 int
	BlockTimeP50, BlockMax time.Duration
	// Latency from broadcast to the client seeing the committed block.
	LatencyP50, LatencyP99, LatencyMax time.Duration
	FirstErr                           string
	MissingTxs                         []ledger.Hash // a few of the missing, to look up
}

// Bench submits signed transfers between bench accounts at o.Rate for
// o.Duration and reports the committed transactions per second, the
// block time and the latency from broadcast to commit. It fails if the
// chain cannot be reached or the bench accounts are not funded.
func Bench(ctx context.Context, o BenchOptions) (*BenchReport, error) {
	if len(o.Clients) == 0 {
		return nil, errors.New("chain: bench: no validator to submit to")
	}
	if o.Rate <= 0 || o.Duration <= 0 {
		return nil, errors.New("chain: bench: rate and duration must be positive")
	}
	if o.Accounts < 2 {
		return nil, errors.New("chain: bench: needs at least 2 funded bench accounts (chain init --bench-accounts N)")
	}
	if o.Senders <= 0 {
		o.Senders = min(o.Accounts, max(4, int(math.Ceil(o.Rate/25))))
	}
	o.Senders = min(o.Senders, o.Accounts)
	if o.Grace <= 0 {
		o.Grace = 15 * time.Second
	}
	c0 := o.Clients[0]
	g, err := c0.Genesis(ctx)
	if err != nil {
		return nil, err
	}
	start, err := c0.Head(ctx)
	if err != nil {
		return nil, err
	}
	type sender struct {
		key   ed25519.PrivateKey
		nonce uint64
		c     *Client
	}
	senders := make([]*sender, o.Senders)
	for i := range senders {
		k := BenchKey(i)
		a, err := c0.Account(ctx, ledger.KeyOf(k))
		if err != nil {
			return nil, err
		}
		if a.Balance < uint64(o.Rate*o.Duration.Seconds())+1 {
			return nil, fmt.Errorf("chain: bench: account %d holds %d units: not a funded bench account (chain init --bench-accounts %d)", i, a.Balance, o.Accounts)
		}
		senders[i] = &sender{key: k, nonce: a.Nonce, c: o.Clients[i%len(o.Clients)]}
	}

	var mu sync.Mutex
	sentAt := map[ledger.Hash]time.Time{}
	rep := &BenchReport{}
	first := time.Now()
	stopWatch := make(chan struct{})
	watchDone := make(chan error, 1)
	var latencies []time.Duration
	var blockTimes []time.Time
	var lastCommit time.Time
	go func() {
		watchDone <- watchBlocks(ctx, c0, start.Height, stopWatch, func(height int64, t time.Time, hashes []ledger.Hash, codes []uint32) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			mine := 0
			for i, h := range hashes {
				at, ok := sentAt[h]
				if !ok {
					continue
				}
				delete(sentAt, h)
				mine++
				if codes[i] != 0 {
					rep.Failed++
					continue
				}
				rep.Committed++
				latencies = append(latencies, now.Sub(at))
				lastCommit = now
			}
			if !t.Before(first) && (mine > 0 || len(sentAt) > 0) {
				blockTimes = append(blockTimes, t)
			}
			if mine > 0 {
				rep.Blocks++
			}
		})
	}()

	interval := time.Duration(float64(time.Second) * float64(o.Senders) / o.Rate)
	end := first.Add(o.Duration)
	var wg sync.WaitGroup
	for i, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			to := ledger.KeyOf(BenchKey((i + 1) % o.Accounts))
			next := first.Add(time.Duration(i) * interval / time.Duration(o.Senders))
			for next.Before(end) && ctx.Err() == nil {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				raw, err := ledger.SignTx(g.ChainID, s.key, s.nonce+1, &ledger.TransferTx{To: to, Amount: 1})
				if err != nil {
					return
				}
				h := ledger.Hash(sha256.Sum256(raw))
				mu.Lock()
				sentAt[h] = time.Now()
				rep.Sent++
				mu.Unlock()
				if _, err := s.c.Broadcast(ctx, raw); err != nil {
					mu.Lock()
					delete(sentAt, h)
					rep.Refused++
					if rep.FirstErr == "" {
						rep.FirstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				s.nonce++
			}
		}()
	}
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	sendersDone := make(chan struct{})
	go func() { wg.Wait(); close(sendersDone) }()
	deadline := (<-chan time.Time)(nil)
	for done := false; !done; {
		select {
		case <-sendersDone:
			sendersDone = nil
			deadline = time.After(o.Grace)
		case <-deadline:
			done = true
		case <-ctx.Done():
			done = true
		case <-progress.C:
			mu.Lock()
			sent, committed, pending := rep.Sent, rep.Committed, len(sentAt)
			mu.Unlock()
			if o.Progress != nil {
				h, _ := c0.Head(ctx)
				o.Progress(sent, committed, h.Height)
			}
			if sendersDone == nil && pending == 0 {
				done = true
			}
		}
	}
	close(stopWatch)
	werr := <-watchDone
	mu.Lock()
	defer mu.Unlock()
	rep.Missing = len(sentAt)
	for h := range sentAt {
		if len(rep.MissingTxs) < 5 {
			rep.MissingTxs = append(rep.MissingTxs, h)
		}
	}
	if rep.Committed > 0 {
		rep.Span = lastCommit.Sub(first)
		rep.TPS = float64(rep.Committed) / rep.Span.Seconds()
	}
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		rep.LatencyP50 = latencies[n/2]
		rep.LatencyP99 = latencies[min(n-1, n*99/100)]
		rep.LatencyMax = latencies[n-1]
	}
	var gaps []time.Duration
	for i := 1; i < len(blockTimes); i++ {
		gaps = append(gaps, blockTimes[i].Sub(blockTimes[i-1]))
	}
	slices.Sort(gaps)
	if n := len(gaps); n > 0 {
		rep.BlockTimeP50, rep.BlockMax = gaps[n/2], gaps[n-1]
	}
	if werr != nil && !errors.Is(werr, context.Canceled) {
		return rep, werr
	}
	return rep, nil
}

// watchBlocks calls f for every block after height from, in order, until
// stop closes (after a last look).
func watchBlocks(ctx context.Context, c *Client, from int64, stop <-chan struct{}, f func(height int64, t time.Time, hashes []ledger.Hash, codes []uint32)) error {
	next := from + 1
	fails := 0
	emit := func(h int64, b *coretypes.ResultBlock, res *coretypes.ResultBlockResults) { emitBlock(f, h, b, res) }
	for {
		stopping := false
		select {
		case <-stop:
			stopping = true
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		head, err := c.Head(ctx)
		if err != nil {
			if stopping {
				return err
			}
			continue
		}
		for ; next <= head.Height; next++ {
			// The block store runs a moment ahead of the saved results:
			// a block whose results are not there yet is read again at
			// the next look, for up to a few seconds.
			h := next
			b, err := c.rpc.Block(ctx, &h)
			if err == nil {
				var res *coretypes.ResultBlockResults
				if res, err = c.rpc.BlockResults(ctx, &h); err == nil {
					fails = 0
					emit(h, b, res)
					continue
				}
			}
			if fails++; fails > 250 {
				return fmt.Errorf("chain: block %d: %v", h, err)
			}
			break
		}
		if stopping && next > head.Height {
			return nil
		}
	}
}

// emitBlock hands a block's transactions and their result codes to f.
func emitBlock(f func(height int64, t time.Time, hashes []ledger.Hash, codes []uint32), h int64, b *coretypes.ResultBlock, res *coretypes.ResultBlockResults) {
	hashes := make([]ledger.Hash, len(b.Block.Txs))
	codes := make([]uint32, len(b.Block.Txs))
	for i, tx := range b.Block.Txs {
		hashes[i] = sha256.Sum256(tx)
		if i < len(res.TxsResults) {
			codes[i] = res.TxsResults[i].Code
		}
	}
	f(h, b.Block.Time, hashes, codes)
}
