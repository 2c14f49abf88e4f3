package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/web"
)

// viewFlags are a command's --http, --http-public and --http-linger.
type viewFlags struct {
	addr   string
	public bool
	linger time.Duration
}

// startWeb opens the live view on addr (none when addr is "") and prints
// its address.
func startWeb(stdout io.Writer, addr string, public bool, name string, rounds int) (*web.Hub, func(), error) {
	hub := web.NewHub(name, rounds)
	if addr == "" {
		return hub, func() {}, nil
	}
	s, err := web.Listen(addr, hub, public)
	if err != nil {
		return nil, nil, badInput("--http: %v", err)
	}
	fmt.Fprintf(stdout, "live view: %s\n", s.URL())
	return hub, func() { s.Close() }, nil
}

// lingerWeb keeps the live view up for d after a run, until ctx ends.
func lingerWeb(ctx context.Context, stdout io.Writer, addr string, d time.Duration) {
	if addr == "" || d <= 0 {
		return
	}
	fmt.Fprintf(stdout, "the live view stays up for %s (interrupt to stop)\n", d)
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// webRound is a closed round of an aggregator run as the live view shows
// it.
func webRound(r node.RoundInfo, cfg diloco.RunConfig, workers int) web.Round {
	wr := web.Round{Round: r.Round + 1, ValLoss: r.ValLoss, TrainLoss: r.TrainLoss, TookMs: r.Took.Milliseconds(), BytesSent: int64(r.Sent + r.Recv),
		DDPBytes: int64(experiment.DDPBytes(cfg, workers) / uint64(max(cfg.Rounds, 1)) * uint64(r.Round+1)),
		Accepted: []string{}, Refused: []web.Refusal{}, Missing: append([]string{}, r.Missing...)}
	if len(r.Compute) > 0 {
		wr.Compute = map[string]int64{}
		for id, d := range r.Compute {
			wr.Compute[id] = d.Milliseconds()
		}
	}
	if res := r.Result; res != nil {
		wr.Tokens, wr.Weights = int64(res.Tokens), res.Hash.String()
		for _, c := range res.Accepted {
			wr.Accepted = append(wr.Accepted, c.Worker)
		}
		for _, x := range res.Excluded {
			wr.Refused = append(wr.Refused, web.Refusal{Worker: x.Worker, Reason: "excluded by screening: " + x.Flags.String()})
		}
	}
	return wr
}

// webLedger gives the live view the run's ledger as it stood at the end
// (the aggregator, whose ledger the view read during the run, is closed).
func webLedger(hub *web.Hub, l node.LocalLedger) {
	hub.SetLedgerSource(&endLedger{l}, p2p.AccountOf)
	hub.SetVerified(l.Verified == nil && l.Invariants == nil)
}

// endLedger serves a finished local run's ledger summary as a
// web.LedgerSource.
type endLedger struct{ l node.LocalLedger }

func (e *endLedger) Totals() (ledger.Totals, error) { return e.l.Totals, nil }

func (e *endLedger) Round(r uint64) (ledger.RoundInfo, error) {
	if r >= uint64(len(e.l.Rounds)) {
		return ledger.RoundInfo{Round: r, Status: "future"}, nil
	}
	return e.l.Rounds[r], nil
}

func (e *endLedger) AccountOf(k ledger.PubKey) (ledger.Account, error) {
	for _, a := range e.l.Accounts {
		if a.Account.Key == k {
			return a.Account, nil
		}
	}
	return ledger.Account{Key: k}, nil
}
