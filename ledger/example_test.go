package ledger_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"sort"

	"github.com/cairnlabs/cairn/ledger"
)

// The whole cycle on the embedded single-node chain: a genesis, three
// workers bond stake, commit to their round-0 contributions, the
// aggregator closes the round, then settles it with one failed verdict:
// the failed worker is slashed below the minimum stake and can no longer
// commit, the others share the emission exactly, and the supply invariant
// holds.
func Example() {
	key := func(name string) ed25519.PrivateKey {
		seed := sha256.Sum256([]byte(name))
		return ed25519.NewKeyFromSeed(seed[:])
	}
	org, alice, bob, carol := key("organiser"), key("alice"), key("bob"), key("carol")
	names := map[ledger.PubKey]string{ledger.KeyOf(alice): "alice", ledger.KeyOf(bob): "bob", ledger.KeyOf(carol): "carol"}

	g := ledger.Genesis{
		ChainID:          "cairn-example",
		Authorities:      []ledger.PubKey{ledger.KeyOf(org)},
		MinStake:         100,
		UnbondingRounds:  3,
		EmissionPerRound: 1000,
		SlashBasisPoints: 5000, // a failed verdict burns half the stake
		SettlementLag:    1,
	}
	for _, k := range []ed25519.PrivateKey{alice, bob, carol} {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Key: ledger.KeyOf(k), Balance: 1000})
	}
	sort.Slice(g.Accounts, func(i, j int) bool { return bytes.Compare(g.Accounts[i].Key[:], g.Accounts[j].Key[:]) < 0 })

	l, err := ledger.New(g)
	if err != nil {
		panic(err)
	}
	p, err := ledger.NewProducer(l, org)
	if err != nil {
		panic(err)
	}
	nonce := map[ledger.PubKey]uint64{}
	submit := func(k ed25519.PrivateKey, body ledger.Body) error {
		nonce[ledger.KeyOf(k)]++
		raw, err := ledger.SignTx(g.ChainID, k, nonce[ledger.KeyOf(k)], body)
		if err != nil {
			panic(err)
		}
		return p.Submit(raw)
	}
	now := int64(1_767_225_600_000_000_000) // the caller's clock, not the ledger's
	produce := func() {
		now += 1e9
		if _, _, err := p.MakeBlock(now); err != nil { // a store would persist the block here
			panic(err)
		}
		if _, err := p.Commit(); err != nil {
			panic(err)
		}
	}

	// Registration.
	submit(alice, &ledger.RegisterTx{Amount: 200})
	submit(bob, &ledger.RegisterTx{Amount: 150})
	submit(carol, &ledger.RegisterTx{Amount: 200})
	produce()

	// Commits while round 0 is open.
	tokens := map[ledger.PubKey]uint64{ledger.KeyOf(alice): 300, ledger.KeyOf(bob): 300, ledger.KeyOf(carol): 400}
	var accepted []ledger.Contribution
	for _, k := range []ed25519.PrivateKey{alice, bob, carol} {
		c := &ledger.CommitTx{Round: 0, DeltaHash: sha256.Sum256([]byte("delta of " + names[ledger.KeyOf(k)])),
			Tokens: tokens[ledger.KeyOf(k)], EndState: sha256.Sum256([]byte("state of " + names[ledger.KeyOf(k)])), Fresh: true, Kernel: "avx512"}
		if err := submit(k, c); err != nil {
			panic(err)
		}
		accepted = append(accepted, ledger.Contribution{Worker: ledger.KeyOf(k), DeltaHash: c.DeltaHash, Tokens: c.Tokens})
	}
	produce()

	// The aggregator closes round 0 with θ1's hash.
	sort.Slice(accepted, func(i, j int) bool { return bytes.Compare(accepted[i].Worker[:], accepted[j].Worker[:]) < 0 })
	submit(org, &ledger.ResultTx{Round: 0, ModelHash: sha256.Sum256([]byte("theta 1")), Accepted: accepted})
	produce()
	fmt.Println("open round:", must(l.Totals()).OpenRound)

	// Recomputation later: bob's Δ does not match.
	var verdicts []ledger.Verdict
	for _, c := range accepted {
		v := ledger.Verdict{Worker: c.Worker, Outcome: ledger.Passed}
		switch names[c.Worker] {
		case "bob":
			v = ledger.Verdict{Worker: c.Worker, Outcome: ledger.Failed, Reason: "recomputed delta differs: cosine 0.12",
				Evidence: []byte("recomputed-delta-hash and distance")}
		case "carol":
			v.Outcome = ledger.Unchecked
		}
		verdicts = append(verdicts, v)
	}
	submit(org, &ledger.SettleTx{Round: 0, Verdicts: verdicts})
	produce()

	info := must(l.Round(0))
	var paid uint64
	for _, v := range info.Verdicts {
		fmt.Printf("%-5s %-9v reward %3d slashed %2d\n", names[v.Worker], v.Outcome, v.Reward, v.Slashed)
		paid += v.Reward
	}
	fmt.Println("rewards add up to the emission:", paid == g.EmissionPerRound)
	fmt.Println("bob's stake:", must(l.Account(ledger.KeyOf(bob))).Stake)
	err = submit(bob, &ledger.CommitTx{Round: 1, Tokens: 300, Fresh: true, Kernel: "avx512"})
	fmt.Println("bob commits again:", err)

	t := must(l.Totals())
	fmt.Printf("supply %d = genesis %d + minted %d - burned %d\n", t.Supply, t.GenesisSupply, t.Minted, t.Burned)
	fmt.Println("invariant:", l.CheckInvariants())
	// Output:
	// open round: 1
	// carol unchecked reward 571 slashed  0
	// alice passed    reward 429 slashed  0
	// bob   failed    reward   0 slashed 75
	// rewards add up to the emission: true
	// bob's stake: 75
	// bob commits again: ledger: rejected (not-staked): stake 75 is below the minimum 100
	// supply 3925 = genesis 3000 + minted 1000 - burned 75
	// invariant: <nil>
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
