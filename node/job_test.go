package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/store"
	"github.com/cairnlabs/cairn/synth"
)

// TestGenerationJob: two honest workers and one that returns wrong
// solutions (each solution's last result off by one) take batches of a
// generation job over libp2p. The coordinator re-verifies every sample:
// the honest workers are paid exactly the reward for each verified
// sample, and their samples form the dataset; the cheater is caught on its
// first batch, earns nothing, is slashed below the minimum stake and
// refused from then on; a batch sent again is neither paid nor slashed
// twice.
func TestGenerationJob(t *testing.T) {
	p := testLedgerParams
	trs, accts := jobWorkers(t, 3, p.MinStake)
	var keys []string
	for _, tr := range trs {
		keys = append(keys, tr.ID())
	}
	d := synth.Difficulty{Numbers: 4, Max: 20}
	j, err := StartJob(JobOptions{DataDir: t.TempDir(), Listen: loopback, Difficulty: d, Seed: 5, PerBatch: 6, Reward: 70,
		Ledger: &p, Accounts: accts, BlockInterval: 50 * time.Millisecond, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	verified := make([]int, 3)
	for b := uint64(0); b < 4; b++ {
		for w, tr := range trs {
			c, err := DialJob(ctx, tr, j.Addrs()[0])
			if err != nil {
				t.Fatal(err)
			}
			rep, err := c.Batch(ctx, b)
			if w == 2 && b > 0 {
				if err == nil || !strings.Contains(err.Error(), "below its minimum") {
					t.Fatalf("the slashed cheater asked for batch %d: %v", b, err)
				}
				continue
			}
			if err != nil || len(rep.Problems) != 6 || rep.Reward != 70 {
				t.Fatalf("worker %d batch %d: %+v %v", w, b, rep, err)
			}
			sols := make([]string, len(rep.Problems))
			for k, pr := range rep.Problems {
				steps, ok := synth.Solve(pr)
				if !ok {
					continue
				}
				if w == 2 {
					steps[len(steps)-1].C++
				}
				sols[k] = synth.FormatSolution(steps)
			}
			v, err := c.Submit(ctx, b, sols)
			if err != nil {
				t.Fatal(err)
			}
			if w == 2 {
				if v.Verified != 0 || v.Wrong != 6 || len(v.Reasons) != 6 || !strings.Contains(v.Reasons[0], "wrong arithmetic") {
					t.Fatalf("the cheater's verdicts: %+v", v)
				}
			} else if v.Wrong != 0 || v.Verified+v.Unanswered != 6 {
				t.Fatalf("worker %d batch %d verdicts: %+v", w, b, v)
			}
			verified[w] += v.Verified
			if again, err := c.Submit(ctx, b, sols); err != nil || again.Verified != 0 || again.Wrong != 0 || again.Seen != 6-v.Unanswered {
				t.Fatalf("worker %d sent batch %d again: %+v %v", w, b, again, err)
			}
			time.Sleep(150 * time.Millisecond) // the verdicts reach the chain
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(j.pendingCopy()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for w, tr := range trs {
		k, _ := p2p.AccountOf(tr.ID())
		acct, err := j.Ledger().Chain().Account(k)
		if err != nil {
			t.Fatal(err)
		}
		switch w {
		case 2:
			if acct.Balance != 0 || acct.Stake >= p.MinStake {
				t.Errorf("the cheater: %+v", acct)
			}
		default:
			if verified[w] == 0 || acct.Balance != uint64(70*verified[w]) || acct.Stake != p.MinStake {
				t.Errorf("honest worker %d: %d verified, account %+v", w, verified[w], acct)
			}
		}
	}
	held, wrong := map[[32]byte]int{}, 0
	err = j.Samples().Each(func(s store.Sample) error {
		if s.Wrong {
			if s.Worker != mustAccount(t, keys[2]) {
				t.Errorf("an honest worker's sample kept as wrong: %q", s.Solution)
			}
			wrong++
			return nil
		}
		if s.Worker == mustAccount(t, keys[2]) {
			t.Errorf("a sample of the cheater in the dataset: %q", s.Solution)
		}
		held[s.Worker]++
		pr, _, err := synth.ParseProblem(s.Prompt + " ")
		if err == nil {
			_, err = synth.Verify(pr, s.Solution)
		}
		if err != nil {
			t.Errorf("a dataset sample does not verify: %v", err)
		}
		return nil
	})
	if err != nil || held[mustAccount(t, keys[0])] != verified[0] || held[mustAccount(t, keys[1])] != verified[1] || wrong != 6 {
		t.Fatalf("the dataset: %v %v, verified %v; %d wrong samples kept", held, err, verified, wrong)
	}
}

// TestJobVerdictsSurviveCrash: a job that judged a cheater's batch wrong
// and an honest batch verified, and died before either verdict reached
// the chain, records both when it starts again from its data directory:
// the cheater is slashed, the honest worker paid, and neither twice.
func TestJobVerdictsSurviveCrash(t *testing.T) {
	p := testLedgerParams
	trs, accts := jobWorkers(t, 2, p.MinStake)
	dir := t.TempDir()
	d := synth.Difficulty{Numbers: 4, Max: 20}
	opts := JobOptions{DataDir: dir, Listen: loopback, Difficulty: d, Seed: 9, PerBatch: 4, Reward: 70,
		Ledger: &p, Accounts: accts, BlockInterval: time.Hour, Log: testLog(t)}
	j, err := StartJob(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	verified := 0
	for w, tr := range trs {
		c, err := DialJob(ctx, tr, j.Addrs()[0])
		if err != nil {
			t.Fatal(err)
		}
		rep, err := c.Batch(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		sols := make([]string, len(rep.Problems))
		for k, pr := range rep.Problems {
			if steps, ok := synth.Solve(pr); ok {
				if w == 1 {
					steps[len(steps)-1].C++
				}
				sols[k] = synth.FormatSolution(steps)
			}
		}
		v, err := c.Submit(ctx, 0, sols)
		if err != nil {
			t.Fatal(err)
		}
		if w == 0 {
			verified = v.Verified
		} else if v.Wrong == 0 {
			t.Fatalf("the cheater's verdicts: %+v", v)
		}
	}
	if n := len(j.pendingCopy()); n == 0 || verified == 0 {
		t.Fatalf("%d verdicts pending, %d verified before the crash", n, verified)
	}
	// The crash: the node stops without recording what is pending.
	close(j.stop)
	<-j.done
	if err := j.closeParts(); err != nil {
		t.Fatal(err)
	}
	opts.Accounts, opts.BlockInterval = nil, 50*time.Millisecond
	j, err = StartJob(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(j.pendingCopy()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := j.Stats(); len(j.pendingCopy()) != 0 || st.Held != verified || st.Wrong == 0 {
		t.Fatalf("after the restart: %d pending, stats %+v, %d verified before", len(j.pendingCopy()), st, verified)
	}
	for w, tr := range trs {
		k, _ := p2p.AccountOf(tr.ID())
		acct, err := j.Ledger().Chain().Account(k)
		if err != nil {
			t.Fatal(err)
		}
		if w == 0 && (acct.Balance != uint64(70*verified) || acct.Stake != p.MinStake) || w == 1 && (acct.Balance != 0 || acct.Stake >= p.MinStake) {
			t.Fatalf("worker %d after the restart: %+v (%d verified)", w, acct, verified)
		}
	}
}

// jobWorkers makes n worker identities with transports on loopback
// (closed when the test ends) and their genesis accounts, staked.
func jobWorkers(t *testing.T, n int, stake uint64) ([]Transport, []ledger.GenesisAccount) {
	t.Helper()
	var trs []Transport
	var accts []ledger.GenesisAccount
	for range n {
		tr := client(t)
		trs = append(trs, tr)
		accts = append(accts, ledger.GenesisAccount{Key: mustAccount(t, tr.ID()), Stake: stake})
	}
	return trs, accts
}

func mustAccount(t *testing.T, id string) ledger.PubKey {
	k, err := p2p.AccountOf(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pendingCopy is the verdicts not yet on the chain.
func (j *Job) pendingCopy() []pendingSample {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]pendingSample(nil), j.pending...)
}
