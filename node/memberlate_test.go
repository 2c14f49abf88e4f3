package node

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
)

// TestMemberJoinsLate: two members run six rounds; a third, staked at
// genesis but started only after round 2 has closed, is behind by more
// than a round: it takes the others' replica state from the swarm (checked
// against the weights hash on the chain), joins the open round's window
// (JoinTx) so that it waits for its commit, contributes, and ends with the
// same weights as the others.
func TestMemberJoinsLate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts CometBFT nodes and trains")
	}
	const members, lateAfter = 3, 2
	cfg := tinyConfig(6)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	params := DefaultLedgerParams()
	var keys []crypto.PrivKey
	var accts []ledger.GenesisAccount
	for i := range members {
		key, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8(seedBytes(cfg.Seed, i)))
		if err != nil {
			t.Fatal(err)
		}
		lk, _ := p2p.LedgerKey(key)
		keys = append(keys, key)
		accts = append(accts, ledger.GenesisAccount{Key: ledger.KeyOf(lk), Stake: LocalStake(params)})
	}
	g, err := ChainGenesis("late-join", []ledger.PubKey{accts[0].Key}, accts, params)
	if err != nil {
		t.Fatal(err)
	}
	g.CommitWindow = int64(3 * time.Second)
	lc, err := startLocalChain(ctx, filepath.Join(t.TempDir(), "chain"), 1, g)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.stop()
	var hosts []host.Host
	for _, k := range keys {
		h, err := p2p.NewHost(k, []string{"/ip4/127.0.0.1/tcp/0"})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		hosts = append(hosts, h)
	}
	trainText, _ := corpus.Split(testText(), 0.9)
	var mu sync.Mutex
	rounds := make([][]MemberRound, members)
	closed := make(chan int, 64)
	finals := make([]diloco.Hash, members)
	errs := make([]error, members)
	var wg sync.WaitGroup
	start := func(i int) {
		var peers []peer.AddrInfo
		for j, h := range hosts {
			if j != i {
				peers = append(peers, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
			}
		}
		pool := kernels.NewPool(1)
		m := newMemberRun(MemberOptions{Run: cfg, Train: trainText, Key: keys[i], Host: hosts[i], Peers: peers,
			RPC: lc.nodes[0].RPC(), Pool: pool, Fetch: 30 * time.Second, Log: testLog(t),
			OnRound: func(r MemberRound) {
				mu.Lock()
				rounds[i] = append(rounds[i], r)
				mu.Unlock()
				if i == 0 {
					closed <- r.Round
				}
			}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pool.Close()
			finals[i], errs[i] = m.run(ctx)
		}()
	}
	start(0)
	start(1)
wait:
	for {
		select {
		case r := <-closed:
			if r == lateAfter {
				break wait
			}
		case <-ctx.Done(): // fail, not hang, when the round never closes
			wg.Wait()
			t.Fatalf("round %d did not close within the test's time: member errors %v", lateAfter, errs)
		}
	}
	start(2)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	if finals[2] != finals[0] || finals[1] != finals[0] {
		t.Fatalf("final weights differ: %v", finals)
	}
	late := rounds[2]
	if len(late) == 0 || late[0].Round <= lateAfter {
		t.Fatalf("the late member reported rounds %v: it should start past round %d", late, lateAfter)
	}
	contributed := 0
	for _, r := range late {
		if !r.Agreed {
			t.Fatalf("the late member disagreed in round %d", r.Round)
		}
		if r.Contributed {
			contributed++
		}
	}
	// It joins each round it is not expected in (JoinTx), so the windows
	// wait for its commit.
	if contributed == 0 {
		t.Fatal("the late member never contributed after catching up")
	}
	if err := lc.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	var commits int
	lc.nodes[0].App().Ledger(func(l *ledger.Ledger) {
		for r := lateAfter + 1; r < cfg.Rounds; r++ {
			info, _ := l.Round(uint64(r))
			for _, c := range info.Commits {
				if c.Worker == accts[2].Key {
					commits++
				}
			}
		}
	})
	t.Logf("the late member caught up at round %d and contributed to %d rounds (%d commits on the chain)", late[0].Round, contributed, commits)
	if commits != contributed {
		t.Fatalf("the chain has %d commits of the late member, it reported %d contributions", commits, contributed)
	}
}
