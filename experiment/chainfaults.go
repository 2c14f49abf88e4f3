package experiment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
)

// ChainFaultsOptions configure ChainFaults.
type ChainFaultsOptions struct {
	// Binary is the cairn executable whose 'chain start' runs each
	// validator as its own process.
	Binary string
	// Dir receives the network (chain init's output) and the validators'
	// logs.
	Dir string
	// BasePort as for chain init (default 46656).
	BasePort int
	// Load is the transfers per second submitted throughout (default 20).
	Load float64
	// Log receives progress lines.
	Log io.Writer
}

// ChainFaultsReport is what the drill observed.
type ChainFaultsReport struct {
	// Phase 1: one of four killed with SIGKILL.
	BlocksWithOneDown int // blocks committed while it was down
	CaughtUpIn        time.Duration
	// Phase 2: two of four killed.
	HaltedHeight      int64 // the height the survivors stopped at
	BlocksWithTwoDown int   // blocks committed while two were down (want 0)
	ResumedBlocks     int   // blocks after one of the two came back
	// The whole chain, on every validator.
	Heights     int64 // heights compared
	Mismatches  int   // 1 if two validators disagree on a block or app hash (the first such height is logged)
	TxCommitted int64 // load transactions committed
	Checks      []Check
}

// Check is one target of the drill and whether it held.
type Check struct {
	Name string
	OK   bool
	Got  string
}

// validatorProc is one validator process.
type validatorProc struct {
	home, log string
	cmd       *exec.Cmd
	done      chan struct{}
	c         *chain.Client
}

// ChainFaults runs a 4-validator CometBFT network of the ledger as four
// processes on loopback, under a light load of signed transfers, and
// checks its fault tolerance: with one validator killed (SIGKILL) blocks
// keep being committed, and the restarted validator catches up; with two
// of four killed commits stop (no quorum) and nothing forks, and with one
// of them back the chain continues; at the end every validator holds the
// same block hash and app hash at every height. It returns the report
// and an error if the network could not be run (the checks' failures are
// in the report).
func ChainFaults(ctx context.Context, o ChainFaultsOptions) (*ChainFaultsReport, error) {
	if o.Binary == "" || o.Dir == "" {
		return nil, errors.New("chain faults: no binary or directory")
	}
	if o.BasePort == 0 {
		o.BasePort = 46656
	}
	if o.Load <= 0 {
		o.Load = 20
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	const nAccts = 8
	var accts []ledger.GenesisAccount
	for i := range nAccts {
		accts = append(accts, ledger.GenesisAccount{Key: ledger.KeyOf(chain.BenchKey(i)), Balance: chain.BenchFunds})
	}
	g, err := node.ChainGenesis("cairn-faults", []ledger.PubKey{ledger.KeyOf(chain.BenchKey(nAccts))}, accts, node.DefaultLedgerParams())
	if err != nil {
		return nil, err
	}
	net, err := chain.Init(chain.InitOptions{Validators: 4, Out: o.Dir, Genesis: *g, BasePort: o.BasePort, EmptyBlocksInterval: time.Second})
	if err != nil {
		return nil, err
	}
	vs := make([]*validatorProc, len(net.Validators))
	for i, v := range net.Validators {
		c, err := chain.Dial(v.RPC)
		if err != nil {
			return nil, err
		}
		vs[i] = &validatorProc{home: v.Home, log: filepath.Join(o.Dir, v.Name+".log"), c: c}
	}
	start := func(v *validatorProc) error {
		f, err := os.OpenFile(v.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		cmd := exec.Command(o.Binary, "chain", "start", "--home", v.home)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			f.Close()
			return err
		}
		v.cmd, v.done = cmd, make(chan struct{})
		go func() { cmd.Wait(); f.Close(); close(v.done) }()
		return nil
	}
	kill := func(v *validatorProc) {
		if v.cmd != nil {
			v.cmd.Process.Signal(syscall.SIGKILL)
			<-v.done
			v.cmd = nil
		}
	}
	defer func() {
		for _, v := range vs {
			if v.cmd != nil {
				v.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-v.done:
				case <-time.After(10 * time.Second):
					kill(v)
				}
			}
		}
	}()
	for _, v := range vs {
		if err := start(v); err != nil {
			return nil, err
		}
	}
	ready, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, v := range vs {
		if err := v.c.WaitReady(ready); err != nil {
			return nil, fmt.Errorf("validator %s did not start: %v (its log: %s)", v.home, err, v.log)
		}
	}
	logf("4 validators live")

	rep := &ChainFaultsReport{}
	var alive [4]atomic.Bool
	for i := range alive {
		alive[i].Store(true)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runLoad(loadCtx, g.ChainID, vs, &alive, o.Load, nAccts, &rep.TxCommitted)
	}()
	defer func() { stopLoad(); wg.Wait() }()

	height := func(v *validatorProc) int64 {
		h, err := v.c.Head(ctx)
		if err != nil {
			return -1
		}
		return h.Height
	}
	sleep := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	check := func(name string, ok bool, got string) {
		rep.Checks = append(rep.Checks, Check{name, ok, got})
		mark := "ok"
		if !ok {
			mark = "FAILED"
		}
		logf("%s: %s (%s)", mark, name, got)
	}

	if err := sleep(5 * time.Second); err != nil { // some blocks under load first
		return rep, err
	}
	// Phase 1: kill one.
	h0 := height(vs[0])
	kill(vs[3])
	alive[3].Store(false)
	logf("killed v3 (SIGKILL) at height %d", h0)
	if err := sleep(10 * time.Second); err != nil {
		return rep, err
	}
	h1 := height(vs[0])
	rep.BlocksWithOneDown = int(h1 - h0)
	check("one of four down: blocks keep being committed", h1-h0 >= 3, fmt.Sprintf("%d blocks in 10 s", h1-h0))
	t := time.Now()
	if err := start(vs[3]); err != nil {
		return rep, err
	}
	caught := false
	for time.Since(t) < 60*time.Second {
		if h := height(vs[3]); h >= height(vs[0])-1 && h > h1 {
			caught = true
			break
		}
		if err := sleep(200 * time.Millisecond); err != nil {
			return rep, err
		}
	}
	rep.CaughtUpIn = time.Since(t)
	alive[3].Store(true)
	check("restarted validator catches up", caught, fmt.Sprintf("at height %d after %v", height(vs[3]), rep.CaughtUpIn.Round(time.Millisecond)))

	// Phase 2: kill two.
	kill(vs[2])
	kill(vs[3])
	alive[2].Store(false)
	alive[3].Store(false)
	if err := sleep(3 * time.Second); err != nil { // a block in flight may still land
		return rep, err
	}
	rep.HaltedHeight = height(vs[0])
	logf("killed v2 and v3; survivors at height %d", rep.HaltedHeight)
	if err := sleep(10 * time.Second); err != nil {
		return rep, err
	}
	after := max(height(vs[0]), height(vs[1]))
	rep.BlocksWithTwoDown = int(after - rep.HaltedHeight)
	check("two of four down: commits stop", after == rep.HaltedHeight, fmt.Sprintf("%d blocks in 10 s", rep.BlocksWithTwoDown))
	if err := start(vs[2]); err != nil {
		return rep, err
	}
	resumed := false
	t = time.Now()
	for time.Since(t) < 60*time.Second {
		if h := height(vs[0]); h >= rep.HaltedHeight+3 {
			resumed = true
			break
		}
		if err := sleep(200 * time.Millisecond); err != nil {
			return rep, err
		}
	}
	alive[2].Store(true)
	rep.ResumedBlocks = int(height(vs[0]) - rep.HaltedHeight)
	check("one of the two back: the chain continues", resumed, fmt.Sprintf("%d blocks after %v", rep.ResumedBlocks, time.Since(t).Round(time.Millisecond)))
	if err := start(vs[3]); err != nil {
		return rep, err
	}
	t = time.Now()
	for time.Since(t) < 60*time.Second && height(vs[3]) < height(vs[0])-1 {
		if err := sleep(200 * time.Millisecond); err != nil {
			return rep, err
		}
	}
	alive[3].Store(true)
	stopLoad()
	wg.Wait()
	if err := sleep(3 * time.Second); err != nil {
		return rep, err
	}

	// The whole chain, compared on every validator.
	var clients []*chain.Client
	for _, v := range vs {
		clients = append(clients, v.c)
	}
	agree, err := chain.Compare(ctx, clients)
	rep.Heights = agree.Heights
	if err != nil {
		rep.Mismatches = 1
		logf("%v", err)
	}
	top := agree.Heights
	check("same block hash and app hash on every validator at every height", rep.Mismatches == 0 && top > 0,
		fmt.Sprintf("%d heights, %d mismatches; %d load transactions committed", top, rep.Mismatches, rep.TxCommitted))
	return rep, nil
}

// runLoad submits transfers at rate from n bench accounts in turn, each
// to a live validator, until ctx ends; it counts those committed.
func runLoad(ctx context.Context, chainID string, vs []*validatorProc, alive *[4]atomic.Bool, rate float64, n int, committed *int64) {
	nonces := make([]uint64, n)
	for i := range nonces {
		if a, err := vs[0].c.Account(ctx, ledger.KeyOf(chain.BenchKey(i))); err == nil {
			nonces[i] = a.Nonce
		}
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	type sent struct {
		h  ledger.Hash
		at time.Time
	}
	var pending []sent
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		i := k % n
		var c *chain.Client
		for j := range vs {
			if v := (k + j) % len(vs); alive[v].Load() {
				c = vs[v].c
				break
			}
		}
		if c == nil {
			continue
		}
		raw, err := ledger.SignTx(chainID, chain.BenchKey(i), nonces[i]+1, &ledger.TransferTx{To: ledger.KeyOf(chain.BenchKey((i + 1) % n)), Amount: 1})
		if err != nil {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		h, err := c.Broadcast(sctx, raw)
		cancel()
		if err != nil {
			// A validator killed mid-request, or a refusal; the account's
			// committed nonce is read again so the next one is valid.
			if a, err := vs[0].c.Account(ctx, ledger.KeyOf(chain.BenchKey(i))); err == nil {
				nonces[i] = max(nonces[i], a.Nonce)
			}
			continue
		}
		nonces[i]++
		pending = append(pending, sent{h, time.Now()})
		// Count what has landed, looking at the oldest; one lost with a
		// killed validator's mempool is given up after 30 s.
		for len(pending) > 0 {
			in, ok, err := vs[0].c.Lookup(ctx, pending[0].h)
			if err != nil || !ok {
				if time.Since(pending[0].at) < 30*time.Second {
					break
				}
			} else if in.Result.Code == ledger.CodeOK {
				atomic.AddInt64(committed, 1)
			}
			pending = pending[1:]
		}
	}
}
