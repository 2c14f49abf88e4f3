package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/ledger"
)

// localChain is a CometBFT network of the ledger running in this process
// (RunLocal with LocalOptions.ChainValidators).
type localChain struct {
	nodes   []*chain.Node
	clients []*chain.Client
}

// startLocalChain starts n validators on loopback with their homes in
// dir: a network made by chain.Init with genesis g on free ports, or the
// one dir already holds (a resumed run; it must be for the same chain).
func startLocalChain(ctx context.Context, dir string, n int, g *ledger.Genesis) (*localChain, error) {
	netw, err := chain.ReadNetwork(dir)
	if err != nil {
		base, perr := chain.FreeBasePort(n)
		if perr != nil {
			return nil, perr
		}
		io := chain.InitOptions{Validators: n, Out: dir, Genesis: *g, BasePort: base}
		if g.MemberRounds() {
			// Members wait for block time to pass their commit window:
			// blocks keep coming without transactions.
			io.TimeoutCommit, io.EmptyBlocksInterval = 100*time.Millisecond, 200*time.Millisecond
		}
		if netw, err = chain.Init(io); err != nil {
			return nil, err
		}
	} else if netw.ChainID != g.ChainID || len(netw.Validators) != n {
		return nil, fmt.Errorf("%s holds chain %s of %d validators, not %s of %d: move it away", dir, netw.ChainID, len(netw.Validators), g.ChainID, n)
	}
	lc := &localChain{}
	for _, v := range netw.Validators {
		nd, err := chain.Start(v.Home, chain.NodeOptions{})
		if err != nil {
			lc.stop()
			return nil, err
		}
		lc.nodes = append(lc.nodes, nd)
		c, err := chain.Dial(nd.RPC())
		if err != nil {
			lc.stop()
			return nil, err
		}
		lc.clients = append(lc.clients, c)
	}
	ready, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, c := range lc.clients {
		if err := c.WaitReady(ready); err != nil {
			lc.stop()
			return nil, fmt.Errorf("the local chain's validator at %s: %v", c.Addr(), err)
		}
	}
	return lc, nil
}

// catchUp waits until the first validator has committed the highest
// block any validator has.
func (lc *localChain) catchUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var top int64
	for _, c := range lc.clients {
		h, err := c.Head(ctx)
		if err != nil {
			return err
		}
		top = max(top, h.Height)
	}
	for {
		h, err := lc.clients[0].Head(ctx)
		if err != nil {
			return err
		}
		if h.Height >= top {
			return nil
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("the first validator did not reach height %d: %v", top, err)
		}
	}
}

func (lc *localChain) stop() error {
	var errs []error
	for _, nd := range lc.nodes {
		errs = append(errs, nd.Stop())
	}
	lc.nodes = nil
	return errors.Join(errs...)
}

// readChainLedger summarises the run from the first validator's ledger
// once the run is over, and checks that every validator holds the same
// block hash and app hash at every height.
func (lc *localChain) readLedger(ctx context.Context, ids []string) (LocalLedger, error) {
	var ll LocalLedger
	var err error
	lc.nodes[0].App().Ledger(func(l *ledger.Ledger) {
		if l == nil {
			err = errors.New("the local chain's application has no ledger")
			return
		}
		ll, err = summariseLedger(l, ids)
	})
	if err != nil {
		return ll, err
	}
	ll.Path = lc.nodes[0].App().Path()
	ll.Validators = len(lc.nodes)
	agree, verr := chain.Compare(ctx, lc.clients)
	ll.Report.ChainID, ll.Report.Txs = ll.ChainID, agree.Txs
	ll.Report.Tip = ll.Totals.Tip
	ll.Verified = verr
	return ll, nil
}
