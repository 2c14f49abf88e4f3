// Package chain runs Cairn's ledger on CometBFT (the v0.38 line), so that
// several organisers replicate and agree on it, tolerating a third of them
// crashing or lying. The ledger state machine (package ledger) runs
// unchanged as an ABCI application (App) in the validator's own process;
// store.AppStore persists its state and tip atomically on every Commit.
//
// Init writes a local network's configuration (a genesis document whose
// app_state is the ledger's genesis, one home per validator with keys and
// peers wired on loopback); Start runs a validator from its home; Client
// reaches any validator's RPC to broadcast transactions, wait for their
// inclusion, query the committed state and read blocks; Compare checks
// that validators agree on every block and app hash; Bench measures
// committed transactions per second, block time and latency.
//
// The aggregator and workers choose this ledger with --ledger HOST:PORT
// (package node); 'cairn chain init|start|bench|faults|verify' are the
// commands.
package chain
