package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/verify"
)

// lazy trains half the steps in round cheat and claims a whole round's
// tokens; honest otherwise.
type lazy struct{ cheat int }

func (l lazy) Steps(round, steps int) int {
	if round == l.cheat {
		return steps / 2
	}
	return steps
}

func (l lazy) Forge(round int, honest []byte, tokens int) ([]byte, int) {
	if round == l.cheat {
		return honest, 2 * tokens
	}
	return honest, tokens
}

// Member checks: three members, each recomputing every contribution
// (P = 1) of the rounds it took part in, settle each round by a majority
// of their verdicts; the member that trained half its steps in the last
// round and claimed them all is failed there by the others' verdicts,
// unpaid and slashed, and passed in the rounds it trained honestly.
func TestMemberChecksCatchCheat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts CometBFT nodes and trains")
	}
	const members = 3
	cfg := tinyConfig(3)
	res, err := runCheckedMembers(cfg, members, 0, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	cheat, err := p2p.AccountOf(res.PerMember[2].ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range res.Chain {
		if info.Status != "settled" || info.Result == nil || len(info.Verdicts) != members || len(info.Checks) < members-1 {
			t.Fatalf("round %d on the chain: %+v", info.Round, info)
		}
		last := info.Round == uint64(cfg.Rounds-1)
		for _, v := range info.Verdicts {
			switch {
			case last && v.Worker == cheat:
				if v.Outcome != ledger.Failed || v.Reward != 0 || v.Slashed == 0 || !strings.Contains(v.Reason, "distance") {
					t.Fatalf("round %d: the cheat's verdict %+v: want failed with its distance, unpaid, slashed", info.Round, v)
				}
			case v.Outcome != ledger.Passed || v.Reward == 0 || v.Slashed != 0:
				t.Fatalf("round %d: verdict %+v: want passed and paid", info.Round, v)
			}
		}
		agree := 0
		for _, c := range info.Checks {
			if c.Agrees {
				agree++
			}
		}
		// Every member checks honestly (the cheat only trains lazily):
		// every verdict recorded agrees.
		if agree != len(info.Checks) {
			t.Fatalf("round %d: %d of %d members' verdicts agree with the settlement: %+v", info.Round, agree, len(info.Checks), info.Checks)
		}
	}
}

// Member checks by committee: of four members, only the two that each
// round's beacon picks recompute its contributions and send verdicts, and
// the two of them agreeing settles it; the lazy member is still caught in
// the round it cheats, and the members off a round's committee send
// nothing on it.
func TestMemberCommitteeChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts CometBFT nodes and trains")
	}
	const members, committee = 4, 2
	cfg := tinyConfig(3)
	logs := &countingHandler{counts: map[string]int{}}
	res, err := runCheckedMembers(cfg, members, committee, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	// Each member learns of each round whether it is on its committee;
	// only those on it recompute and send verdicts, none refused.
	if on, off, refused := logs.count("member: on the round's check committee"), logs.count("member: not on the round's check committee"),
		logs.count("member: verdicts refused"); on != committee*cfg.Rounds || off != (members-committee)*cfg.Rounds || refused != 0 {
		t.Fatalf("members on a round's committee %d times, off it %d, verdicts refused %d: want %d, %d, 0",
			on, off, refused, committee*cfg.Rounds, (members-committee)*cfg.Rounds)
	}
	cheat, err := p2p.AccountOf(res.PerMember[3].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Chain) != cfg.Rounds {
		t.Fatalf("%d rounds on the chain, want %d", len(res.Chain), cfg.Rounds)
	}
	for _, info := range res.Chain {
		if info.Status != "settled" || info.Result == nil || len(info.Verdicts) != members || len(info.Committee) != committee || info.Beacon == nil {
			t.Fatalf("round %d on the chain: %+v", info.Round, info)
		}
		on := map[ledger.PubKey]bool{}
		for _, m := range info.Committee {
			on[m] = true
		}
		agree := 0
		for _, c := range info.Checks {
			if !on[c.Member] {
				t.Fatalf("round %d: verdicts recorded from %s, off the committee %v", info.Round, c.Member, info.Committee)
			}
			if c.Agrees {
				agree++
			}
		}
		if agree != committee {
			t.Fatalf("round %d: %d of the committee's %d verdicts agree with the settlement: %+v", info.Round, agree, committee, info.Checks)
		}
		last := info.Round == uint64(cfg.Rounds-1)
		for _, v := range info.Verdicts {
			switch {
			case last && v.Worker == cheat:
				if v.Outcome != ledger.Failed || v.Reward != 0 || v.Slashed == 0 {
					t.Fatalf("round %d: the cheat's verdict %+v: want failed, unpaid, slashed", info.Round, v)
				}
			case v.Outcome != ledger.Passed || v.Reward == 0 || v.Slashed != 0:
				t.Fatalf("round %d: verdict %+v: want passed and paid", info.Round, v)
			}
		}
	}
}

// countingHandler counts log messages (at info and above) by text.
type countingHandler struct {
	mu     sync.Mutex
	counts map[string]int
}

func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[r.Message]++
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}

// A member's "caught before" is the chain's: the workers failed in the
// rounds settled when the round checked closed (SettlementLag before it),
// whatever rounds this member checked itself; a round that should be
// settled and is not is an error, asked again later.
func TestCaughtBeforeFromChain(t *testing.T) {
	w := func(s string) ledger.PubKey { return ledger.KeyOf(ed25519.NewKeyFromSeed(bytes.Repeat([]byte(s), 32))) }
	A, B, C := w("a"), w("b"), w("c")
	rounds := map[uint64]ledger.RoundInfo{
		0: {Status: "settled", Verdicts: []ledger.VerdictRecord{{Worker: A, Outcome: ledger.Failed}, {Worker: B, Outcome: ledger.Passed}}},
		1: {Status: "settled", Verdicts: []ledger.VerdictRecord{{Worker: B, Outcome: ledger.Unchecked}, {Worker: C, Outcome: ledger.Failed}}},
		2: {Status: "closed"},
	}
	asked := 0
	val := &validation{caught: map[string]bool{p2p.PeerIDOf(B): true}, caughtLag: 1,
		commit: func(r uint64) (ledger.RoundInfo, error) { asked++; return rounds[r], nil }}
	for _, tc := range []struct {
		round  uint64
		caught []ledger.PubKey
	}{{0, nil}, {1, []ledger.PubKey{A}}, {2, []ledger.PubKey{A, C}}} {
		got, err := val.caughtBefore(tc.round)
		if err != nil {
			t.Fatalf("round %d: %v", tc.round, err)
		}
		if len(got) != len(tc.caught) {
			t.Fatalf("round %d: caught %v, want %v (B, caught only in this member's memory, is not)", tc.round, got, tc.caught)
		}
		for _, k := range tc.caught {
			if !got[p2p.PeerIDOf(k)] {
				t.Fatalf("round %d: caught %v, want %v", tc.round, got, tc.caught)
			}
		}
	}
	if asked != 2 {
		t.Fatalf("the chain was read %d times for 2 settled rounds", asked)
	}
	if _, err := val.caughtBefore(3); err == nil || !strings.Contains(err.Error(), "round 2 is closed, not settled") {
		t.Fatalf("round 3 with round 2 unsettled: %v", err)
	}
	val.caughtLag = 0 // an aggregator's validator: its own findings
	if got, _ := val.caughtBefore(3); len(got) != 1 || !got[p2p.PeerIDOf(B)] {
		t.Fatalf("without the chain: %v", got)
	}
}

// runCheckedMembers runs members (the last of them lazy in the last
// round) with member checks recomputing every contribution, by a
// committee of the given size (0: every member); nothing is settled
// unchecked for being overdue: every round waits for its verdicts.
func runCheckedMembers(cfg diloco.RunConfig, members, committee int, log *slog.Logger) (*MembersResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	params := DefaultLedgerParams()
	params.SettlementLag, params.UnbondingRounds = uint64(cfg.Rounds), uint64(cfg.Rounds)+1
	checks := ValidationOptions{Sample: verify.SampleOptions{P: 1, Suspects: 0, Threshold: 1}}
	behaviours := make([]Behaviour, members)
	behaviours[members-1] = lazy{cheat: cfg.Rounds - 1}
	return RunMembersLocal(ctx, MembersLocalOptions{Config: cfg, Text: testText(), Members: members, Validators: 2,
		CommitWindow: time.Minute, EvalBatches: 2, Log: log, Checks: &checks, Committee: committee, Ledger: &params, Behaviours: behaviours})
}
