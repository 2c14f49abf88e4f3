package experiment

import (
	"fmt"
	"slices"
	"time"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
)

// AdversaryResult is what the trust experiment measured.
type AdversaryResult struct {
	P         float64 // the verification probability
	Validated bool    // false: both arms ran without a validator
	Honest    int     // honest workers
	Rounds    int     // rounds of each arm
	// HonestArm is the honest workers alone; AdversarialArm the same with
	// the adversaries.
	HonestArm, AdversarialArm ArmReport
	Adversaries               []AdversaryReport // in the order of the options' kinds
	Slow                      *SlowReport       // nil without AdversaryOptions.Slow
}

// ArmReport is one arm of the experiment.
type ArmReport struct {
	Name    string
	Rounds  int     // rounds closed
	ValLoss float64 // final, on the whole validation split
	Wall    time.Duration
	// Compute is the workers' time inside inner steps (worker processes
	// included), less the time the slowed worker slept.
	Compute   time.Duration
	Validator node.ValidatorStats
	// Accepted counts the contributions aggregated.
	Accepted int
	// HonestSlashed lists the honest workers (peer IDs) with a failed
	// verdict; HonestFailures says, for each failed verdict on an honest
	// worker, the worker, its kernel path, the round and the reason.
	HonestSlashed  []string
	HonestFailures []string
	// Settled counts the rounds settled; Conserved those whose rewards
	// add up exactly to the emission, or to 0 when no contribution could
	// be paid (every accepted one failed).
	Settled, Conserved int
	// Paid is the rewards of every verdict; Minted and Burned the
	// chain's totals.
	Paid, Minted, Burned uint64
	// LedgerErr is the chain's invariants' or replay's complaint (nil:
	// the supply adds up and the file replays from its genesis).
	LedgerErr error
	// Kernels are the kernel paths the honest workers' commits declare,
	// sorted.
	Kernels []string
}

// Overhead is the verification overhead in percent: the compute spent
// checking contributions, the validator's recomputations and the
// screening's held-out losses, over the workers' compute.
func (a ArmReport) Overhead() float64 {
	if a.Compute <= 0 {
		return 0
	}
	return 100 * (a.Validator.Busy + a.Validator.Screening).Seconds() / a.Compute.Seconds()
}

// EmissionConserved reports whether every round was settled with rewards
// adding up to exactly its emission (or 0 when nothing could be paid),
// the rewards add up to what the chain minted, and the chain checks out.
func (a ArmReport) EmissionConserved() bool {
	return a.Settled == a.Rounds && a.Conserved == a.Settled && a.Paid == a.Minted && a.LedgerErr == nil
}

// AdversaryReport is what became of one adversary.
type AdversaryReport struct {
	Kind   string
	Worker string // peer ID
	// Committed counts the rounds it committed a contribution in.
	Committed int
	// FirstCheat is the first round it committed a forged contribution
	// in (the copier's is round 1: it has nothing to copy in round 0);
	// -1 if it never did.
	FirstCheat int
	// Caught is the round of its first failed verdict (-1: never), and
	// Reason that verdict's reason.
	Caught int
	Reason string
	// Slashed is the stake it lost; Reward what it was paid in all, and
	// PaidAfter what it was paid for rounds after Caught.
	Slashed, Reward, PaidAfter uint64
}

// Delay is the detection delay in rounds: Caught - FirstCheat, or -1
// when it was not caught (or never cheated).
func (a AdversaryReport) Delay() int {
	if a.Caught < 0 || a.FirstCheat < 0 {
		return -1
	}
	return a.Caught - a.FirstCheat
}

// SlowReport is how the slowed worker fared.
type SlowReport struct {
	Worker      string  // peer ID
	Contributed int     // rounds its contribution was aggregated in
	Rounds      int     // rounds of the run
	Speed       float64 // its inner steps per second of compute over its honest peers'
	Steps       int     // inner steps it trained
}

// Share is the fraction of rounds it contributed to.
func (s SlowReport) Share() float64 {
	if s.Rounds == 0 {
		return 0
	}
	return float64(s.Contributed) / float64(s.Rounds)
}

// Caught counts the adversaries with a failed verdict.
func (r *AdversaryResult) Caught() int {
	n := 0
	for _, a := range r.Adversaries {
		if a.Caught >= 0 {
			n++
		}
	}
	return n
}

// Within is the longest detection delay among the adversaries caught, or
// the run's length when none was.
func (r *AdversaryResult) Within() int {
	w := -1
	for _, a := range r.Adversaries {
		w = max(w, a.Delay())
	}
	if w < 0 {
		return r.Rounds
	}
	return w
}

// HonestSlashed counts the honest workers slashed in either arm (they
// are the same identities in both).
func (r *AdversaryResult) HonestSlashed() int {
	seen := map[string]bool{}
	for _, a := range []ArmReport{r.HonestArm, r.AdversarialArm} {
		for _, id := range a.HonestSlashed {
			seen[id] = true
		}
	}
	return len(seen)
}

// LossGap is the adversarial arm's final validation loss less the honest
// arm's, in nats.
func (r *AdversaryResult) LossGap() float64 { return r.AdversarialArm.ValLoss - r.HonestArm.ValLoss }

// EmissionConserved reports whether both arms conserved the emission in
// every round.
func (r *AdversaryResult) EmissionConserved() bool {
	return r.HonestArm.EmissionConserved() && r.AdversarialArm.EmissionConserved()
}

// Summary is the experiment's last line: "caught K/N within R rounds;
// honest slashed H; loss gap +X nats; emission conserved: yes|no;
// verification overhead Y%", the overhead the adversarial arm's.
func (r *AdversaryResult) Summary() string {
	yes := "no"
	if r.EmissionConserved() {
		yes = "yes"
	}
	return fmt.Sprintf("caught %d/%d within %d rounds; honest slashed %d; loss gap %+.4f nats; emission conserved: %s; verification overhead %.1f%%",
		r.Caught(), len(r.Adversaries), r.Within(), r.HonestSlashed(), r.LossGap(), yes, r.AdversarialArm.Overhead())
}

// report summarises an arm from its run and chain.
func (a *armRun) report(name string) ArmReport {
	res := a.res
	ll := res.Ledger
	r := ArmReport{Name: name, Rounds: res.Rounds, ValLoss: a.valLoss, Wall: res.Wall, Compute: res.Compute - a.slept,
		Validator: res.Validator, Accepted: res.Contributed, Minted: ll.Totals.Minted, Burned: ll.Totals.Burned}
	for _, st := range a.remote {
		r.Compute += st.Compute
		r.Accepted += st.Rounds
	}
	switch {
	case ll.Invariants != nil:
		r.LedgerErr = ll.Invariants
	case ll.Verified != nil:
		r.LedgerErr = ll.Verified
	}
	honest := map[ledger.PubKey]string{}
	for _, id := range a.honest {
		if k, err := p2p.AccountOf(id); err == nil {
			honest[k] = id
		}
	}
	slashed := map[string]bool{}
	kernels := map[string]bool{}
	kernelOf := map[ledger.PubKey]map[uint64]string{}
	for _, ri := range ll.Rounds {
		for _, c := range ri.Commits {
			if _, ok := honest[c.Worker]; ok {
				if kernelOf[c.Worker] == nil {
					kernelOf[c.Worker] = map[uint64]string{}
				}
				kernelOf[c.Worker][ri.Round] = c.Kernel
			}
			if _, ok := honest[c.Worker]; ok && !kernels[c.Kernel] {
				kernels[c.Kernel] = true
				r.Kernels = append(r.Kernels, c.Kernel)
			}
		}
		if ri.Status == "settled" {
			r.Settled++
			if conserved(ri, ll.EmissionPerRound) {
				r.Conserved++
			}
		}
		for _, v := range ri.Verdicts {
			r.Paid += v.Reward
			if id, ok := honest[v.Worker]; ok && (v.Outcome == ledger.Failed || v.Slashed > 0) {
				r.HonestFailures = append(r.HonestFailures, fmt.Sprintf("%s (kernel path %s) in round %d: %s", id, kernelOf[v.Worker][ri.Round], ri.Round, v.Reason))
			}
			if id, ok := honest[v.Worker]; ok && (v.Outcome == ledger.Failed || v.Slashed > 0) && !slashed[id] {
				slashed[id] = true
				r.HonestSlashed = append(r.HonestSlashed, id)
			}
		}
	}
	slices.Sort(r.Kernels)
	return r
}

// conserved reports whether a settled round's rewards add up to exactly
// the emission when some accepted contribution did not fail, and to 0
// when none could be paid.
func conserved(ri ledger.RoundInfo, emission uint64) bool {
	failed := map[ledger.PubKey]bool{}
	var paid uint64
	for _, v := range ri.Verdicts {
		paid += v.Reward
		if v.Outcome == ledger.Failed {
			failed[v.Worker] = true
		}
	}
	payable := 0
	if ri.Result != nil {
		for _, c := range ri.Result.Accepted {
			if !failed[c.Worker] {
				payable++
			}
		}
	}
	if payable == 0 {
		return paid == 0
	}
	return paid == emission
}

// adversaryReport reads an adversary's fate from the chain's rounds
// (those settled so far, during a run) and the rounds its behaviour
// forged a contribution in.
func adversaryReport(kind, id string, ll node.LocalLedger, cheats map[int]bool) AdversaryReport {
	a := AdversaryReport{Kind: kind, Worker: id, FirstCheat: -1, Caught: -1}
	k, err := p2p.AccountOf(id)
	if err != nil {
		return a
	}
	for _, ri := range ll.Rounds {
		for _, c := range ri.Commits {
			if c.Worker != k {
				continue
			}
			a.Committed++
			if cheats[int(c.Round)] && a.FirstCheat < 0 {
				a.FirstCheat = int(c.Round)
			}
		}
		for _, v := range ri.Verdicts {
			if v.Worker != k {
				continue
			}
			a.Slashed += v.Slashed
			a.Reward += v.Reward
			if a.Caught >= 0 && int(v.Round) > a.Caught {
				a.PaidAfter += v.Reward
			}
			if v.Outcome == ledger.Failed && a.Caught < 0 {
				a.Caught, a.Reason = int(v.Round), v.Reason
			}
		}
	}
	return a
}

// slowReport says how the slowed worker fared: the rounds its
// contribution was aggregated in, and its speed against its honest
// peers' (inner steps per second inside Train, its sleep included).
func (a *armRun) slowReport() SlowReport {
	st := a.res.PerWorker[a.slow]
	id := a.res.Ledger.Accounts[a.slow].ID
	s := SlowReport{Worker: id, Rounds: a.res.Rounds, Steps: st.Steps}
	if k, err := p2p.AccountOf(id); err == nil {
		for _, ri := range a.res.Ledger.Rounds {
			if ri.Result == nil {
				continue
			}
			for _, c := range ri.Result.Accepted {
				if c.Worker == k {
					s.Contributed++
				}
			}
		}
	}
	var peers []node.WorkerStats
	for i, id := range a.honest {
		if id == s.Worker {
			continue
		}
		if i < len(a.res.PerWorker) && a.res.Ledger.Accounts[i].ID == id {
			peers = append(peers, a.res.PerWorker[i])
		}
	}
	peers = append(peers, a.remote...)
	var steps int
	var compute time.Duration
	for _, p := range peers {
		steps += p.Steps
		compute += p.Compute
	}
	if steps > 0 && compute > 0 && st.Compute > 0 {
		s.Speed = (float64(st.Steps) / st.Compute.Seconds()) / (float64(steps) / compute.Seconds())
	}
	return s
}
