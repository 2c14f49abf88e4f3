package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/verify"
	"github.com/cairnlabs/cairn/web"
)

// runMembersDemo is 'cairn demo --decentralised': a run without an
// aggregator on loopback.
// membersDemo are the settings of 'cairn demo --decentralised'.
type membersDemo struct {
	cfg                 diloco.RunConfig
	text                []byte
	members, validators int
	window              time.Duration
	checks, adversaries bool    // member checks; one more member of each adversary kind
	checkP              float64 // with checks: each contribution's chance to be recomputed
	committee           int     // with checks: members that check each round (0: all)
	out                 string
	verbose             bool
}

func runMembersDemo(stdout, stderr io.Writer, d membersDemo, view viewFlags) error {
	cfg, text, members, validators, window, out, verbose := d.cfg, d.text, d.members, d.validators, d.window, d.out, d.verbose
	honest := members
	var cast *experiment.Cast
	var behaviours []node.Behaviour
	if d.adversaries {
		var err error
		if cast, err = experiment.NewCast(cfg, experiment.AdversaryKinds(), cfg.Seed+uint64(honest)); err != nil {
			return err
		}
		behaviours = cast.Behaviours(honest)
		members = len(behaviours)
	}
	var checks *node.ValidationOptions
	if d.checks {
		sample := verify.DefaultSampleOptions()
		sample.P = d.checkP
		checks = &node.ValidationOptions{Sample: sample}
	}
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
	if d.adversaries {
		fmt.Fprintf(stdout, "with adversaries: one of each kind (%s) as members %d-%d (they cheat in what they train, not in how they check)\n",
			strings.Join(experiment.AdversaryKinds(), ", "), honest, members-1)
	}
	switch {
	case d.checks && d.committee > 0:
		fmt.Fprintf(stdout, "member checks by committee: %d of each round's members, picked by the block that closed it, recompute %g%% of its contributions (drawn by the same block) and the most suspicious; a majority of the committee's verdicts settles the round, paying and slashing\n", d.committee, 100*d.checkP)
	case d.checks:
		fmt.Fprintf(stdout, "member checks: every member recomputes %g%% of each round's contributions (drawn by the block that closed it) and the most suspicious; a majority of the members' verdicts settles the round, paying and slashing\n", 100*d.checkP)
	}
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
		CommitWindow: window, EvalBatches: 20, Log: log, Checks: checks, Committee: d.committee, Behaviours: behaviours,
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
	if d.checks {
		printMemberChecks(stdout, res.Chain, res.PerMember)
	}
	if cast != nil {
		var ids []string
		for _, st := range res.PerMember[honest:] {
			ids = append(ids, st.ID)
		}
		reps := cast.Reports(ids, node.LocalLedger{Rounds: res.Chain})
		caught := 0
		fmt.Fprintln(stdout, "\nadversaries:")
		for _, a := range reps {
			status := "not caught"
			if a.Caught >= 0 {
				caught++
				status = fmt.Sprintf("caught at round %d (%d after its first cheat): %s; slashed %d units, paid %d after", a.Caught, a.Delay(), a.Reason, a.Slashed, a.PaidAfter)
			}
			fmt.Fprintf(stdout, "  %-8s (%s): first cheat round %s; %s; paid %d in all\n", a.Kind, shortPeer(a.Worker), roundOrDash(a.FirstCheat), status, a.Reward)
		}
		fmt.Fprintf(stdout, "caught %d/%d adversaries\n", caught, len(reps))
	}
	if err := saveAndSample(stdout, cfg, res.Weights, out); err != nil {
		return err
	}
	if dissent > 0 {
		return failedCheck{"members disagreed on a round's result (see above)"}
	}
	lingerWeb(ctx, stdout, view.addr, view.linger)
	return nil
}

// printMemberChecks sums up the members' verdicts on the chain and the
// recomputation they cost.
func printMemberChecks(w io.Writer, rounds []ledger.RoundInfo, members []node.SwarmStats) {
	var passed, failed, unchecked, checks, dissent, unsettled, byVerdicts int
	for _, info := range rounds {
		if info.Status != "settled" {
			unsettled++
		} else if slices.ContainsFunc(info.Checks, func(v ledger.VoteRecord) bool { return v.Agrees }) {
			byVerdicts++
		}
		for _, v := range info.Verdicts {
			switch v.Outcome {
			case ledger.Passed:
				passed++
			case ledger.Failed:
				failed++
			default:
				unchecked++
			}
		}
		for _, c := range info.Checks {
			checks++
			if !c.Agrees {
				dissent++
				fmt.Fprintf(w, "round %d: member %s sent other verdicts\n", info.Round, c.Member)
			}
		}
	}
	recomputed, busy := 0, time.Duration(0)
	for _, m := range members {
		recomputed += m.Recomputed
		busy += m.CheckBusy
	}
	fmt.Fprintf(w, "member checks: %d verdict votes (%d dissenting); %d of %d rounds settled by the verdicts (the others unchecked, when overdue); %d passed, %d failed, %d unchecked; %d rounds unsettled; %d contributions recomputed by the members (%s of compute)\n",
		checks, dissent, byVerdicts, len(rounds), passed, failed, unchecked, unsettled, recomputed, busy.Round(100*time.Millisecond))
}
