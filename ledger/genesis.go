package ledger

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
)

// GenesisVersion is the version byte of an encoded genesis.
const GenesisVersion = 1

// Genesis fixes a chain's rules and its initial accounts.
type Genesis struct {
	ChainID string `json:"chain_id"` // [a-z0-9._+/-], 1..64 bytes; part of every signature

	// Authorities may sign round results, settlements and blocks (the
	// organiser's or aggregator's keys): sorted, distinct, 1..16.
	Authorities []PubKey `json:"authorities"`

	// Accounts are the initial balances and stakes, sorted by key, distinct.
	Accounts []GenesisAccount `json:"accounts"`

	MinStake         uint64 `json:"min_stake"`          // stake a worker needs to commit; 0 for an open run (any account commits)
	UnbondingRounds  uint64 `json:"unbonding_rounds"`   // rounds an unbonding entry waits; more than SettlementLag
	EmissionPerRound uint64 `json:"emission_per_round"` // minted at each round's settlement, split among paid contributions
	SlashBasisPoints uint32 `json:"slash_basis_points"` // share of a failed worker's stake burned, in 1/10000; at most 10000
	SettlementLag    uint64 `json:"settlement_lag"`     // closing round r needs round r-SettlementLag settled; at least 1

	// CommitWindow, when positive, makes a run without an authority over
	// its rounds (member rounds, see members.go): round r's commits are
	// taken for CommitWindow of block time (Unix ns) from its first one,
	// the workers that committed vote on its result, and it closes, and
	// is settled, when more than half of them voted for the same result.
	// Encoded only when positive.
	CommitWindow int64 `json:"commit_window_ns,omitempty"`

	// MemberChecks, in a run with member rounds, has each closed round
	// settled by its members' verdicts (checks.go) rather than at once,
	// unchecked: the members recompute contributions, and more than half
	// of them agreeing on the outcomes settles the round, paying and
	// slashing. Encoded (after CommitWindow) only when set.
	MemberChecks bool `json:"member_checks,omitempty"`

	// CheckCommittee, with member checks, has each closed round's
	// verdicts come from a committee of that many of its members rather
	// than from all of them (committee.go): the round's beacon, fixed by
	// the block that closed it, picks them; only they may send verdicts on
	// it, and more than half of them agreeing settles it. Zero: every
	// member checks. Encoded (after the member checks flag) only when
	// positive.
	CheckCommittee uint32 `json:"check_committee,omitempty"`
}

// MemberRounds reports whether the run's rounds are closed by the votes of
// their workers rather than by an authority.
func (g *Genesis) MemberRounds() bool { return g.CommitWindow > 0 }

// GenesisAccount is an account that exists from the start. Stake is
// bonded (as by a RegisterTx) from the start.
type GenesisAccount struct {
	Key     PubKey `json:"key"`
	Balance uint64 `json:"balance"`
	Stake   uint64 `json:"stake"`
}

// Validate checks the rules: a valid chain ID, 1..16 sorted distinct
// authorities, sorted distinct accounts whose total fits in 64 bits, a
// settlement lag of at least 1, an unbonding
// period longer than the settlement lag (so a worker's stake is still
// there when its last round is judged), and a slash of at most 100%.
func (g *Genesis) Validate() error {
	if err := identifier(g.ChainID); err != nil || len(g.ChainID) > MaxChainIDBytes {
		return fmt.Errorf("ledger: genesis: chain ID %q: want 1..%d characters from [a-z0-9._+/-]", g.ChainID, MaxChainIDBytes)
	}
	if len(g.Authorities) == 0 || len(g.Authorities) > MaxAuthorities {
		return fmt.Errorf("ledger: genesis: %d authorities, want 1..%d", len(g.Authorities), MaxAuthorities)
	}
	for i := 1; i < len(g.Authorities); i++ {
		if bytes.Compare(g.Authorities[i-1][:], g.Authorities[i][:]) >= 0 {
			return errors.New("ledger: genesis: authorities not sorted or repeated")
		}
	}
	if len(g.Accounts) > MaxGenesisAccts {
		return fmt.Errorf("ledger: genesis: %d accounts, limit %d", len(g.Accounts), MaxGenesisAccts)
	}
	if _, err := g.supply(); err != nil {
		return err
	}
	for i := 1; i < len(g.Accounts); i++ {
		if bytes.Compare(g.Accounts[i-1].Key[:], g.Accounts[i].Key[:]) >= 0 {
			return errors.New("ledger: genesis: accounts not sorted by key or repeated")
		}
	}
	switch {
	case g.SettlementLag == 0:
		return errors.New("ledger: genesis: settlement lag must be at least 1 round")
	case g.UnbondingRounds <= g.SettlementLag:
		return fmt.Errorf("ledger: genesis: unbonding period %d rounds must exceed the settlement lag %d", g.UnbondingRounds, g.SettlementLag)
	case g.SlashBasisPoints > 10000:
		return fmt.Errorf("ledger: genesis: slash of %d basis points exceeds 10000", g.SlashBasisPoints)
	case g.CommitWindow < 0:
		return fmt.Errorf("ledger: genesis: negative commit window %d", g.CommitWindow)
	case g.MemberChecks && g.CommitWindow == 0:
		return errors.New("ledger: genesis: member checks need member rounds (a commit window)")
	case g.CheckCommittee > 0 && !g.MemberChecks:
		return errors.New("ledger: genesis: a check committee needs member checks")
	case g.CheckCommittee > MaxCheckCommittee:
		return fmt.Errorf("ledger: genesis: check committee of %d members exceeds the limit of %d", g.CheckCommittee, MaxCheckCommittee)
	}
	return nil
}

// supply is the total of the initial balances and stakes.
func (g *Genesis) supply() (uint64, error) {
	var total, c1, c2 uint64
	for _, a := range g.Accounts {
		total, c1 = bits.Add64(total, a.Balance, 0)
		total, c2 = bits.Add64(total, a.Stake, 0)
		if c1|c2 != 0 {
			return 0, errors.New("ledger: genesis: total supply overflows 64 bits")
		}
	}
	return total, nil
}

// IsAuthority reports whether k may sign results, settlements and blocks.
func (g *Genesis) IsAuthority(k PubKey) bool {
	for _, a := range g.Authorities {
		if a == k {
			return true
		}
	}
	return false
}

// Encode returns the canonical encoding of the genesis.
func (g *Genesis) Encode() []byte {
	e := encoder{}
	e.u8(GenesisVersion)
	e.str(g.ChainID)
	e.u32(uint32(len(g.Authorities)))
	for _, a := range g.Authorities {
		e.fixed(a[:])
	}
	e.u32(uint32(len(g.Accounts)))
	for _, a := range g.Accounts {
		e.fixed(a.Key[:])
		e.u64(a.Balance)
		e.u64(a.Stake)
	}
	e.u64(g.MinStake)
	e.u64(g.UnbondingRounds)
	e.u64(g.EmissionPerRound)
	e.u32(g.SlashBasisPoints)
	e.u64(g.SettlementLag)
	if g.CommitWindow > 0 {
		e.i64(g.CommitWindow)
		if g.MemberChecks {
			e.u8(1)
			if g.CheckCommittee > 0 {
				e.u32(g.CheckCommittee)
			}
		}
	}
	return e.b
}

const genesisDomain = "cairn/ledger/genesis/v1\x00"

// Hash is the SHA-256 of a domain tag and the encoding; block 1 chains to
// it.
func (g *Genesis) Hash() Hash {
	return sha256.Sum256(append([]byte(genesisDomain), g.Encode()...))
}

// DecodeGenesis decodes and validates a genesis; Encode of the result
// gives back exactly b.
func DecodeGenesis(b []byte) (*Genesis, error) {
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != GenesisVersion {
		d.fail("version %d, want %d", v, GenesisVersion)
	}
	g := &Genesis{ChainID: d.str("chain ID", MaxChainIDBytes, identifier)}
	n := d.count("authorities", MaxAuthorities, 32)
	if n > 0 {
		g.Authorities = make([]PubKey, n)
	}
	for i := 0; i < n; i++ {
		d.fixed(g.Authorities[i][:])
	}
	n = d.count("accounts", MaxGenesisAccts, 48)
	if n > 0 {
		g.Accounts = make([]GenesisAccount, n)
	}
	for i := 0; i < n; i++ {
		a := &g.Accounts[i]
		d.fixed(a.Key[:])
		a.Balance = d.u64()
		a.Stake = d.u64()
	}
	g.MinStake = d.u64()
	g.UnbondingRounds = d.u64()
	g.EmissionPerRound = d.u64()
	g.SlashBasisPoints = d.u32()
	g.SettlementLag = d.u64()
	if d.err == nil && len(d.b) > 0 {
		if g.CommitWindow = d.i64(); d.err == nil && g.CommitWindow <= 0 {
			d.fail("commit window %d encoded, want a positive one or none", g.CommitWindow)
		}
		if d.err == nil && len(d.b) > 0 {
			if flag := d.u8(); d.err == nil && flag != 1 {
				d.fail("member checks flag %d encoded, want 1 or none", flag)
			}
			g.MemberChecks = d.err == nil
			if d.err == nil && len(d.b) > 0 {
				if g.CheckCommittee = d.u32(); d.err == nil && g.CheckCommittee == 0 {
					d.fail("check committee of 0 encoded, want a positive one or none")
				}
			}
		}
	}
	if err := d.finish("genesis"); err != nil {
		return nil, err
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return g, nil
}
