package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"

	"github.com/cairnlabs/cairn/ledger"
)

// LedgerParams are the economic rules of a run's chain (see
// ledger.Genesis for their exact meaning). Amounts are in the ledger's
// integer units.
type LedgerParams struct {
	MinStake         uint64 `json:"min_stake"`          // stake a worker needs to commit
	UnbondingRounds  uint64 `json:"unbonding_rounds"`   // rounds unbonding stake stays slashable
	EmissionPerRound uint64 `json:"emission_per_round"` // minted at each round's settlement
	SlashBasisPoints uint32 `json:"slash_basis_points"` // share of a failed worker's stake burned
	SettlementLag    uint64 `json:"settlement_lag"`     // rounds a result may wait for its settlement
}

// DefaultLedgerParams are the rules a run's chain gets unless its
// organiser chooses others:
//
//	EmissionPerRound  1,000,000 units
//	MinStake          100,000,000 units (100 rounds of the whole emission)
//	SlashBasisPoints  5000 (a failed verification burns half the stake)
//	SettlementLag     2 rounds
//	UnbondingRounds   8 rounds (4x the lag: stake stays slashable until
//	                  every round it took part in has been judged)
//
// Why these numbers: a worker that cheats in a round can earn at most R,
// the round's whole emission (when it is the only contribution paid).
// Verification recomputes a contribution with probability p; a caught
// worker loses f·S, the slashed share f of its stake S >= MinStake. Cheating
// does not pay when its expected loss exceeds its gain, p·f·S > R. At
// p = 10% the defaults give p·f·S = 0.1 · 0.5 · 100R = 5R: a margin of 5
// (Deterrence(0.1) = 5), even for a worker alone in the round, and more
// when the emission is shared. Equivalently, a cheater expects 1/p = 10
// rounds (10R) before it is caught and then loses 50R.
func DefaultLedgerParams() LedgerParams {
	return LedgerParams{
		MinStake:         100_000_000,
		UnbondingRounds:  8,
		EmissionPerRound: 1_000_000,
		SlashBasisPoints: 5000,
		SettlementLag:    2,
	}
}

// Deterrence is p·f·S / R for verification probability checkProb: the
// expected stake a cheater loses per round over the most it can earn in
// a round (S the minimum stake, f the slashed share, R the emission per
// round). Cheating does not pay when it is above 1. It is +Inf when
// nothing is emitted (there is nothing to gain).
func (p LedgerParams) Deterrence(checkProb float64) float64 {
	if p.EmissionPerRound == 0 {
		return math.Inf(1)
	}
	loss := checkProb * float64(p.SlashBasisPoints) / 10000 * float64(p.MinStake)
	return loss / float64(p.EmissionPerRound)
}

// LedgerChainID is the chain ID of a run: "cairn-" and the first 8 hex
// digits of the SHA-256 of run, a string that names the run (its
// configuration's JSON, or the hash of its initial weights). Nodes that
// know the run compute the same ID; every signature covers it, so a
// transaction signed for one run is invalid in any other.
func LedgerChainID(run string) string {
	h := sha256.Sum256([]byte(run))
	return "cairn-" + hex.EncodeToString(h[:4])
}

// RunGenesis builds the genesis of a run's chain: chain ID
// LedgerChainID(run), authority the aggregator's account (the key that
// signs results, settlements and blocks), the given initial accounts
// (balances and bonded stakes; any order, sorted here) and parameters.
// It fails on an empty run, an account listed twice, and anything
// ledger.Genesis.Validate refuses (a zero minimum stake, an unbonding
// period not longer than the settlement lag, a slash over 100%, a total
// supply over 2^64-1, more than ledger.MaxGenesisAccts accounts).
func RunGenesis(run string, authority ledger.PubKey, accounts []ledger.GenesisAccount, p LedgerParams) (*ledger.Genesis, error) {
	if run == "" {
		return nil, fmt.Errorf("ledger: genesis: empty run name")
	}
	return ChainGenesis(LedgerChainID(run), []ledger.PubKey{authority}, accounts, p)
}

// ChainGenesis is RunGenesis for a chain named chainID with several
// authorities (any order; sorted here, a repeat is dropped): the genesis
// of a chain that 'cairn chain init' configures for a CometBFT network
// before any run exists. It fails as RunGenesis does.
func ChainGenesis(chainID string, authorities []ledger.PubKey, accounts []ledger.GenesisAccount, p LedgerParams) (*ledger.Genesis, error) {
	auth := slices.Clone(authorities)
	slices.SortFunc(auth, func(a, b ledger.PubKey) int { return bytes.Compare(a[:], b[:]) })
	auth = slices.Compact(auth)
	if len(accounts) > ledger.MaxGenesisAccts {
		return nil, fmt.Errorf("ledger: genesis: %d accounts, at most %d", len(accounts), ledger.MaxGenesisAccts)
	}
	accts := slices.Clone(accounts)
	slices.SortFunc(accts, func(a, b ledger.GenesisAccount) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	for i := 1; i < len(accts); i++ {
		if accts[i].Key == accts[i-1].Key {
			return nil, fmt.Errorf("ledger: genesis: account %s listed twice", accts[i].Key)
		}
	}
	g := &ledger.Genesis{
		ChainID:          chainID,
		Authorities:      auth,
		Accounts:         accts,
		MinStake:         p.MinStake,
		UnbondingRounds:  p.UnbondingRounds,
		EmissionPerRound: p.EmissionPerRound,
		SlashBasisPoints: p.SlashBasisPoints,
		SettlementLag:    p.SettlementLag,
	}
	if err := g.Validate(); err != nil {
		return nil, err // "ledger: genesis: ..."
	}
	return g, nil
}

// ledgerParamsOf reads the parameters back from a genesis.
func ledgerParamsOf(g *ledger.Genesis) LedgerParams {
	return LedgerParams{MinStake: g.MinStake, UnbondingRounds: g.UnbondingRounds, EmissionPerRound: g.EmissionPerRound,
		SlashBasisPoints: g.SlashBasisPoints, SettlementLag: g.SettlementLag}
}
