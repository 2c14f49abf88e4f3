package experiment

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/swarm"
)

// The chain side of a simulated member round, on the real ledger state
// machine: every node commits its contribution at the start; the window
// closes in the block that holds the last commit; the nodes, seeing it,
// fetch (the swarm simulation, shifted to start then), aggregate and vote
// (ledger.VoteTx, the first ledger.ResultPosters of the posting order with
// the result in full, the others sending it after their turn if it has not
// come); the chain makes a block every BlockTime of what has reached it.

// chainTimes is what the chain side of a round measured.
type chainTimes struct {
	windowClosed, closed, allVoted time.Duration
	agreeing, disagreeing          int
	fullResults, refused           int
	bytes                          int64
	blocks                         int
}

// chainTx is a transaction on its way to the chain.
type chainTx struct {
	arrive time.Duration
	raw    []byte
	node   int
	vote   bool
	result bool // a ResultTx (the result in full)
}

// simulateChain runs round 0's commits and votes through a ledger. held
// reports whether node i ended the fetch holding node j's contribution;
// fetched is when node i held all it would get (from the start of its
// fetch), or negative if it waited for the fetch timeout.
func simulateChain(o ScaleOptions, ids []swarm.ID, gone []bool, held func(i, j int) bool, fetched func(i int) time.Duration) (*chainTimes, error) {
	n := len(ids)
	keys := make([]ed25519.PrivateKey, n)
	pubs := make([]ledger.PubKey, n)
	index := map[ledger.PubKey]int{}
	for i := range keys {
		seed := sha256.Sum256(fmt.Appendf(nil, "cairn/scale/node/%d/%d", o.Seed, i))
		keys[i] = ed25519.NewKeyFromSeed(seed[:])
		pubs[i] = ledger.KeyOf(keys[i])
		index[pubs[i]] = i
	}
	org := ed25519.NewKeyFromSeed(make([]byte, 32))
	accts := make([]ledger.GenesisAccount, n)
	for i, k := range pubs {
		accts[i] = ledger.GenesisAccount{Key: k, Stake: 100}
	}
	slices.SortFunc(accts, func(a, b ledger.GenesisAccount) int { return slices.Compare(a.Key[:], b.Key[:]) })
	g := ledger.Genesis{ChainID: "cairn-scale", Authorities: []ledger.PubKey{ledger.KeyOf(org)}, Accounts: accts,
		MinStake: 100, UnbondingRounds: 3, EmissionPerRound: 1_000_000, SlashBasisPoints: 5000, SettlementLag: 2,
		CommitWindow: int64(10 * time.Minute)}
	l, err := ledger.New(g)
	if err != nil {
		return nil, err
	}
	p, err := ledger.NewProducer(l, org)
	if err != nil {
		return nil, err
	}
	sign := func(i int, nonce uint64, b ledger.Body) ([]byte, error) {
		return ledger.SignTx(g.ChainID, keys[i], nonce, b)
	}
	half := o.RTT / 2
	ct := &chainTimes{}
	var queue []chainTx
	commits := make([]*ledger.CommitTx, n)
	for i := range n {
		commits[i] = &ledger.CommitTx{Round: 0, DeltaHash: ledger.Hash(ids[i]), Tokens: 1000, StartState: ledger.Hash{1}, EndState: ledger.Hash{2}, Fresh: true, Kernel: "avx512"}
		raw, err := sign(i, 1, commits[i])
		if err != nil {
			return nil, err
		}
		queue = append(queue, chainTx{arrive: half, raw: raw, node: i})
	}
	// Each node's vote: the contributions it holds, accepted; the others
	// rejected as unavailable. The weights hash stands for the replica's
	// result, a function of the contributions aggregated.
	votes := make([]*ledger.ResultTx, n)
	sorted := sortedKeys(pubs)
	for i := range n {
		if gone[i] {
			continue
		}
		v := &ledger.ResultTx{Round: 0, Accepted: []ledger.Contribution{}, Rejected: []ledger.Rejection{}}
		h := sha256.New()
		for _, k := range sorted {
			j := index[k]
			if j == i || held(i, j) {
				v.Accepted = append(v.Accepted, ledger.Contribution{Worker: k, DeltaHash: commits[j].DeltaHash, Tokens: commits[j].Tokens})
				h.Write(k[:])
			} else {
				v.Rejected = append(v.Rejected, ledger.Rejection{Worker: k, Reason: "its payload could not be fetched"})
			}
		}
		copy(v.ModelHash[:], h.Sum(nil))
		votes[i] = v
	}

	var now time.Duration
	var windowDone, closedAt time.Duration = -1, -1
	voted := make([]bool, n)
	posted := map[ledger.Hash]bool{}
	type due struct {
		at   time.Duration
		node int
	}
	var fallbacks []due
	stayed := 0
	for i := range n {
		if !gone[i] {
			stayed++
		}
	}
	for now = o.BlockTime; now <= 30*time.Minute; now += o.BlockTime {
		// Fallback results due by now: sent if the round is still open and
		// nobody has sent this node's result.
		for _, f := range fallbacks {
			if f.at > now || f.at < now-o.BlockTime || closedAt >= 0 {
				continue
			}
			if h := ledger.ResultHash(votes[f.node]); !posted[h] {
				raw, err := sign(f.node, 3, votes[f.node])
				if err != nil {
					return nil, err
				}
				queue = append(queue, chainTx{arrive: f.at + half, raw: raw, node: f.node, result: true})
			}
		}
		// The block: what has reached the chain, in order of arrival.
		slices.SortStableFunc(queue, func(a, b chainTx) int { return int(a.arrive - b.arrive) })
		var in []chainTx
		rest := queue[:0]
		for _, t := range queue {
			if t.arrive <= now && len(in) < ledger.MaxBlockTxs {
				in = append(in, t)
			} else {
				rest = append(rest, t)
			}
		}
		queue = rest
		for _, t := range in {
			if err := p.Submit(t.raw); err != nil {
				// A result sent after its turn that crossed the round's
				// closing (the node would log and go on).
				ct.refused++
				continue
			}
			ct.bytes += int64(len(t.raw))
			if t.result {
				ct.fullResults++
			}
			if t.vote {
				voted[t.node] = true
			}
		}
		if _, _, err := p.MakeBlock(int64(now)); err != nil {
			return nil, err
		}
		if _, err := p.Commit(); err != nil {
			return nil, err
		}
		ct.blocks++
		info, err := l.Round(0)
		if err != nil {
			return nil, err
		}
		for _, h := range info.Posted {
			posted[h] = true
		}
		if windowDone < 0 && info.Window != nil && info.Window.Closed(&g, int64(now)) && info.Window.Commits == uint64(n) {
			// Every node sees the closed window half a round trip later,
			// fetches, aggregates and votes.
			windowDone = now
			for i := range n {
				if gone[i] {
					continue
				}
				f := fetched(i)
				if f < 0 {
					f = o.FetchTimeout
				}
				at := now + half + f + o.Aggregate
				rank := ledger.PostingRank(0, pubs, pubs[i])
				var body ledger.Body = &ledger.VoteTx{Round: 0, Result: ledger.ResultHash(votes[i])}
				full := rank < ledger.ResultPosters
				if full {
					body = votes[i]
				} else {
					fallbacks = append(fallbacks, due{at: at + time.Duration(rank)*time.Second, node: i})
				}
				raw, err := sign(i, 2, body)
				if err != nil {
					return nil, err
				}
				queue = append(queue, chainTx{arrive: at + half, raw: raw, node: i, vote: true, result: full})
			}
		}
		if closedAt < 0 && info.Result != nil {
			closedAt = now
			res := info.Result
			for i := range n {
				if gone[i] {
					continue
				}
				if votes[i].ModelHash == res.ModelHash {
					ct.agreeing++
				} else {
					ct.disagreeing++
				}
			}
		}
		all := windowDone >= 0
		for i := range n {
			if !gone[i] && !voted[i] {
				all = false
			}
		}
		if all && closedAt >= 0 {
			ct.allVoted = now
			break
		}
	}
	if windowDone < 0 || closedAt < 0 {
		return nil, fmt.Errorf("scale: the round did not close on the chain within %s of simulated time", now)
	}
	ct.windowClosed, ct.closed = windowDone, closedAt
	return ct, nil
}

func sortedKeys(ks []ledger.PubKey) []ledger.PubKey {
	out := slices.Clone(ks)
	slices.SortFunc(out, func(a, b ledger.PubKey) int { return slices.Compare(a[:], b[:]) })
	return out
}
