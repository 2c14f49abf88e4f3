package main

import (
	"fmt"
	"io"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/web"
)

// runMembersDemo is 'cairn demo --decentralised': a run without an
// aggregator on loopback.
func runMembersDemo(stdout, stderr io.Writer, cfg diloco.RunConfig, text []byte, members, validators int, window time.Duration, out string, verbose bool, view viewFlags) error {
	log := logger(io.Discard, false)
	if verbose {
		log = logger(stderr, true)
	}
	if validators == 0 {
		validators = min(members, 4)
	}
	fmt.Fprintf(stdout, "DiLoCo without an aggregator: %d members on loopback libp2p, %d rounds of H=%d inner steps, %s contributions; model %d params (d %d, %d layers, ctx %d), batch %d per member\n",
		members, cfg.Rounds, cfg.InnerSteps, cfg.Codec, cfg.Model.NumParams(), cfg.Model.NEmbd, cfg.Model.NLayer, cfg.Model.BlockSize, cfg.Batch)
	fmt.Fprintf(stdout, "rounds on a CometBFT chain of %d validators (member rounds: commitments for %s of block time, then the members vote on the result); contributions spread peer to peer; every member aggregates every round itself\n",
		validators, window)
	hub, stopWeb, err := startWeb(stdout, view.addr, view.public, "demo without an aggregator", cfg.Rounds)
	if err != nil {
		return err
	}
	defer stopWeb()
	ddpRound := experiment.DDPBytes(cfg, members) / uint64(max(cfg.Rounds, 1))
	p := newProgress(stderr, cfg.Rounds, "members")
	if p.bar == nil {
		p.out = stdout
	}
	start := time.Now()
	ctx, cancel := signalContext()
	defer cancel()
	res, err := node.RunMembersLocal(ctx, node.MembersLocalOptions{Config: cfg, Text: text, Members: members, Validators: validators,
		CommitWindow: window, EvalBatches: 20, Log: log,
		OnChain: func(n *chain.Node) { hub.SetLedgerSource(validatorLedger{n}, p2p.AccountOf) },
		OnRound: func(r node.MembersRound) {
			hub.AddRound(web.Round{Round: r.Round + 1, ValLoss: r.ValLoss, Tokens: int64(r.Tokens), TookMs: r.Took.Milliseconds(),
				BytesSent: r.Uploaded + r.Downloaded, DDPBytes: int64(ddpRound) * int64(r.Round+1), Accepted: r.Workers, Weights: r.Hash.String()})
			if r.Round+1 == cfg.Rounds {
				hub.FreezeLedger() // the chain stops with the run
			}
			status := fmt.Sprintf("val loss %.4f, %d contributions, %d/%d members agree on %s, swarm traffic %s", r.ValLoss, r.Contributions, r.Agreed, members, r.Hash.String()[:12], human(uint64(r.Uploaded)))
			p.log("round %d/%d: %s (%s)", r.Round+1, cfg.Rounds, status, time.Since(start).Round(time.Second))
			if p.bar != nil {
				p.update(r.Round+1, status)
			}
		}})
	p.finish()
	hub.Finish()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "stopped")
			return nil
		}
		return err
	}
	vl, err := valLoss(cfg, text, res.Weights)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nvalidation loss %.4f (whole validation split) after %d rounds; every member holds weights %s\n", vl, len(res.Rounds), res.Hash)
	var up uint64
	for i, st := range res.PerMember {
		up += uint64(st.Uploaded)
		if verbose {
			fmt.Fprintf(stdout, "  member %d (%s): uploaded %s, downloaded %s of contributions\n", i, st.ID, human(uint64(st.Uploaded)), human(uint64(st.Downloaded)))
		}
	}
	ddp := experiment.DDPBytes(cfg, members)
	fmt.Fprintf(stdout, "wall time %s; contributions sent %s in all (each went to every member); per-step data-parallel training would have sent %s for the same tokens\n",
		res.Wall.Round(time.Millisecond), human(up), human(ddp))
	dissent := 0
	for _, info := range res.Chain {
		for _, v := range info.Votes {
			if !v.Agrees {
				dissent++
				fmt.Fprintf(stdout, "round %d: member %s voted for another result\n", info.Round, v.Member)
			}
		}
	}
	fmt.Fprintf(stdout, "chain %s: %d rounds closed by the members' votes, %d dissenting votes\n", res.ChainID, len(res.Chain), dissent)
	if err := saveAndSample(stdout, cfg, res.Weights, out); err != nil {
		return err
	}
	if dissent > 0 {
		return failedCheck{"members disagreed on a round's result (see above)"}
	}
	lingerWeb(ctx, stdout, view.addr, view.linger)
	return nil
}
