package node_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
)

// The wiring of the ledger: the aggregator hosts the run's chain on its
// libp2p transport, a worker stakes through a LedgerClient, the
// aggregator's clock loop makes the block, and the worker reads its
// account back.
func ExampleLedgerClient() {
	ctx := context.Background()
	aggDir, _ := os.MkdirTemp("", "agg")
	workDir, _ := os.MkdirTemp("", "worker")
	defer os.RemoveAll(aggDir)
	defer os.RemoveAll(workDir)
	listen := []string{"/ip4/127.0.0.1/tcp/0"}

	// Aggregator: identity, transport, genesis, host.
	aggID, _ := p2p.LoadIdentity(aggDir)
	aggKey, _ := p2p.LedgerKey(aggID)
	aggTr, _ := p2p.NewTransport(aggID, listen)
	defer aggTr.Close()

	// Worker: identity and transport, funded in the genesis.
	workID, _ := p2p.LoadIdentity(workDir)
	workKey, _ := p2p.LedgerKey(workID)
	workTr, _ := p2p.NewTransport(workID, listen)
	defer workTr.Close()
	workAcct, _ := p2p.AccountOf(workTr.ID())

	params := node.DefaultLedgerParams()
	run := `{"run":"example"}` // the run configuration's JSON
	g, err := node.RunGenesis(run, ledger.KeyOf(aggKey),
		[]ledger.GenesisAccount{{Key: workAcct, Balance: 2 * params.MinStake}}, params)
	if err != nil {
		log.Fatal(err)
	}
	host, err := node.OpenLedgerHost(node.LedgerHostOptions{DataDir: aggDir, Genesis: g, Key: aggKey})
	if err != nil {
		log.Fatal(err)
	}
	defer host.Close()
	host.Serve(aggTr)

	// The worker joins and stakes the minimum.
	aggPeer, _ := workTr.Connect(ctx, aggTr.Addrs()[0])
	c, err := node.NewLedgerClient(ctx, workTr, aggPeer, workKey, node.LedgerChainID(run))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Register(ctx, params.MinStake); err != nil {
		log.Fatal(err)
	}

	// The aggregator's clock loop.
	if _, err := host.Tick(time.Now()); err != nil {
		log.Fatal(err)
	}

	a, _ := c.Account(ctx, c.Self())
	fmt.Println("chain", c.Info().ChainID)
	fmt.Println("balance", a.Balance, "stake", a.Stake, "nonce", a.Nonce)
	// Output:
	// chain cairn-99eefa7e
	// balance 100000000 stake 100000000 nonce 1
}
