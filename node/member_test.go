package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
)

// Three members with no aggregator: a CometBFT validator schedules the
// rounds and records commits and votes, contributions travel through the
// swarm, and every member computes bitwise the same weights every round,
// which the chain records as agreed by all.
func TestMemberRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a CometBFT node and trains")
	}
	const members, rounds = 3, 3
	cfg := tinyConfig(rounds)
	var keys []crypto.PrivKey
	var accts []ledger.GenesisAccount
	for range members {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		lk, _ := p2p.LedgerKey(k)
		accts = append(accts, ledger.GenesisAccount{Key: ledger.KeyOf(lk), Balance: 10, Stake: 1000})
	}
	params := DefaultLedgerParams()
	params.MinStake = 1000
	g, err := ChainGenesis("cairn-members", []ledger.PubKey{accts[0].Key}, accts, params)
	if err != nil {
		t.Fatal(err)
	}
	g.CommitWindow = int64(1500 * time.Millisecond)
	base, err := chain.FreeBasePort(2)
	if err != nil {
		t.Fatal(err)
	}
	netw, err := chain.Init(chain.InitOptions{Validators: 1, Out: t.TempDir(), Genesis: *g, BasePort: base,
		TimeoutCommit: 100 * time.Millisecond, EmptyBlocksInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	v, err := chain.Start(netw.Validators[0].Home, chain.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()

	var hosts []host.Host
	for _, k := range keys {
		h, err := p2p.NewHost(k, []string{"/ip4/127.0.0.1/tcp/0"})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		hosts = append(hosts, h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var mu sync.Mutex
	seen := map[int]map[diloco.Hash]int{}
	finals := make([]diloco.Hash, members)
	errs := make([]error, members)
	var wg sync.WaitGroup
	for i := range members {
		var peers []peer.AddrInfo
		for j, h := range hosts {
			if j != i {
				peers = append(peers, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
			}
		}
		pool := kernels.NewPool(1)
		defer pool.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			finals[i], errs[i] = RunMember(ctx, MemberOptions{Run: cfg, Train: trainPart(testText()), Key: keys[i], Host: hosts[i], Peers: peers,
				RPC: v.RPC(), Pool: pool, Fetch: 20 * time.Second, Log: testLog(t), OnRound: func(r MemberRound) {
					mu.Lock()
					defer mu.Unlock()
					if seen[r.Round] == nil {
						seen[r.Round] = map[diloco.Hash]int{}
					}
					seen[r.Round][r.Hash]++
					if !r.Agreed || r.Commits != members || r.Accepted != members {
						errs[i] = fmt.Errorf("member %d round %d: %+v", i, r.Round, r)
					}
				}})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	for r := range rounds {
		if len(seen[r]) != 1 {
			t.Fatalf("round %d: members computed %d different weights: %v", r, len(seen[r]), seen[r])
		}
	}
	if finals[0] != finals[1] || finals[1] != finals[2] {
		t.Fatal("members end with different weights")
	}
	// The chain: every round closed with the members' weights, every vote
	// agrees, every contribution was paid.
	lk, _ := p2p.LedgerKey(keys[0])
	lc, err := NewChainLedgerClient(ctx, v.RPC(), lk, g.ChainID)
	if err != nil {
		t.Fatal(err)
	}
	for r := range rounds {
		info, err := lc.Round(ctx, uint64(r))
		if err != nil {
			t.Fatal(err)
		}
		if info.Status != "settled" || info.Result == nil || len(info.Result.Accepted) != members || len(info.Verdicts) != members {
			t.Fatalf("round %d on the chain: %+v", r, info)
		}
		var h diloco.Hash
		for k := range seen[r] {
			h = k
		}
		if info.Result.ModelHash != ledger.Hash(h) {
			t.Fatalf("round %d closed with %s, the members computed %s", r, info.Result.ModelHash, h)
		}
		// Votes that came after the majority closed the round are recorded too.
		if len(info.Votes) != members {
			t.Fatalf("round %d: %d votes recorded, want %d", r, len(info.Votes), members)
		}
		for _, vt := range info.Votes {
			if !vt.Agrees {
				t.Fatalf("round %d: %s disagrees", r, vt.Member)
			}
		}
	}
}

func trainPart(text []byte) []byte {
	tr, _ := corpus.Split(text, 0.9)
	return tr
}
