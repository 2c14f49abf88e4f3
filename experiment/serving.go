package experiment

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/serve"
	"github.com/cairnlabs/cairn/watermark"
)

// ServingOptions configure Serving.
type ServingOptions struct {
	Model     *gpt.Model
	Watermark *watermark.Scheme
	Clients   int // concurrent clients (default 64)
	Requests  int // requests in all (default 2000)
	MaxTokens int // per request (default 32)
	MaxActive int // the server's requests generated at once (default: Clients)
	Price     uint64
	// Progress, if set, is called as requests finish.
	Progress func(done, total int)
}

// ServingReport is what Serving measured.
type ServingReport struct {
	Requests, Failed int
	Tokens           int // completion tokens
	Wall             time.Duration
	TokensPerSec     float64
	P50, P99         time.Duration
	// Fees: what the receipts say, what the responses' usage implies at
	// the price, and what the accounts were charged (balance the server
	// holds against them); all three must agree.
	ReceiptFees, UsageFees, Charged uint64
	Receipts                        int
	BadReceipts                     int // receipts whose signature does not verify
	FirstErr                        string
	// On the ledger (an in-process chain whose one contributor has
	// settled tokens): receipts recorded, what the requesters paid and
	// what the contributor received, and whether the supply held.
	Recorded          int
	Debited, Credited uint64
	SupplyConserved   bool
}

// Serving runs a completion server on loopback and a bounded load of
// Clients concurrent clients sending Requests in all, each from its own
// funded account, and checks the receipts against the responses.
func Serving(ctx context.Context, o ServingOptions) (*ServingReport, error) {
	o.Clients = max(o.Clients, 1)
	if o.Requests <= 0 {
		o.Requests = 2000
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 32
	}
	if o.MaxActive <= 0 {
		o.MaxActive = o.Clients
	}
	if o.Price == 0 {
		o.Price = 1
	}
	keys := map[string]ledger.PubKey{}
	accounts := make([]ledger.PubKey, o.Clients)
	for i := range accounts {
		seed := sha256.Sum256(fmt.Appendf(nil, "cairn serving load client %d", i))
		accounts[i] = ledger.KeyOf(ed25519.NewKeyFromSeed(seed[:]))
		keys[fmt.Sprintf("sk-load-%04d", i)] = accounts[i]
	}
	funds := uint64(1) << 40
	seed := sha256.Sum256([]byte("cairn serving load server"))
	srvKey := ed25519.NewKeyFromSeed(seed[:])
	chain, err := newLoadChain(srvKey, accounts, funds)
	if err != nil {
		return nil, err
	}
	srv, err := serve.New(serve.Options{Model: o.Model, Watermark: o.Watermark, Keys: keys, Price: o.Price, MaxActive: o.MaxActive,
		MaxQueue: 4 * o.Clients, Key: srvKey, Balances: chain.balance})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(l)
	defer hs.Close()
	url := "http://" + l.Addr().String() + "/v1/completions"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Clients}, Timeout: 10 * time.Minute}

	rep := &ServingReport{Requests: o.Requests}
	var mu sync.Mutex
	var lat []time.Duration
	next := 0
	start := time.Now()
	var wg sync.WaitGroup
	for c := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("sk-load-%04d", c)
			for {
				mu.Lock()
				if next >= o.Requests || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				n := next
				next++
				mu.Unlock()
				body := fmt.Sprintf(`{"prompt":"ROMEO:\n","max_tokens":%d,"seed":%d}`, o.MaxTokens, n)
				t0 := time.Now()
				tokens, err := complete(ctx, client, url, key, body)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					rep.Failed++
					if rep.FirstErr == "" {
						rep.FirstErr = err.Error()
					}
				} else {
					lat = append(lat, d)
					rep.Tokens += tokens
					rep.UsageFees += o.Price * uint64(tokens+len("ROMEO:\n"))
				}
				done := len(lat) + rep.Failed
				mu.Unlock()
				if o.Progress != nil {
					o.Progress(done, o.Requests)
				}
			}
		}()
	}
	wg.Wait()
	rep.Wall = time.Since(start)
	rep.TokensPerSec = float64(rep.Tokens) / rep.Wall.Seconds()
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		rep.P50, rep.P99 = lat[n/2], lat[min(n-1, n*99/100)]
	}
	rs, err := srv.Receipts()
	if err != nil {
		return rep, err
	}
	rep.Receipts = len(rs)
	for _, r := range rs {
		if !r.Verify() {
			rep.BadReceipts++
		}
		rep.ReceiptFees += r.Fee
	}
	for _, a := range accounts {
		rep.Charged += srv.Spent(a)
	}
	// Every receipt on the ledger: the requesters pay, the contributor
	// is paid, nothing is created or lost.
	before, _ := chain.l.Totals()
	contrib, _ := chain.l.Account(chain.contributor)
	statePath := filepath.Join(os.TempDir(), fmt.Sprintf("cairn-serving-%d.json", time.Now().UnixNano()))
	defer os.Remove(statePath)
	if rep.Recorded, err = srv.Record(ctx, chain, chain.l.Genesis().ChainID, statePath); err != nil {
		return rep, err
	}
	for _, a := range accounts {
		acct, _ := chain.l.Account(a)
		rep.Debited += funds - acct.Balance
	}
	after, _ := chain.l.Account(chain.contributor)
	rep.Credited = after.Balance - contrib.Balance
	tot, _ := chain.l.Totals()
	rep.SupplyConserved = tot.Supply == before.Supply && chain.l.CheckInvariants() == nil
	return rep, nil
}

// loadChain is an in-process ledger for the load test: the server is its
// authority, every client's account is funded, and one contributor has
// settled tokens to be paid the fees. Each Submit is a block.
type loadChain struct {
	mu          sync.Mutex
	l           *ledger.Ledger
	p           *ledger.Producer
	now         int64
	contributor ledger.PubKey
}

func newLoadChain(srvKey ed25519.PrivateKey, accounts []ledger.PubKey, funds uint64) (*loadChain, error) {
	cseed := sha256.Sum256([]byte("cairn serving load contributor"))
	ckey := ed25519.NewKeyFromSeed(cseed[:])
	g := ledger.Genesis{ChainID: "cairn-serving-load", Authorities: []ledger.PubKey{ledger.KeyOf(srvKey)}, MinStake: 1,
		UnbondingRounds: 2, EmissionPerRound: 1000, SlashBasisPoints: 5000, SettlementLag: 1}
	g.Accounts = append(g.Accounts, ledger.GenesisAccount{Key: ledger.KeyOf(ckey), Stake: 1})
	for _, a := range accounts {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Key: a, Balance: funds})
	}
	slices.SortFunc(g.Accounts, func(a, b ledger.GenesisAccount) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	l, err := ledger.New(g)
	if err != nil {
		return nil, err
	}
	p, err := ledger.NewProducer(l, srvKey)
	if err != nil {
		return nil, err
	}
	c := &loadChain{l: l, p: p, now: 1, contributor: ledger.KeyOf(ckey)}
	delta := ledger.Hash{1}
	for _, tx := range []struct {
		key   ed25519.PrivateKey
		nonce uint64
		body  ledger.Body
	}{
		{ckey, 1, &ledger.CommitTx{Round: 0, DeltaHash: delta, Tokens: 1000, EndState: ledger.Hash{2}, Fresh: true, Kernel: "avx2"}},
		{srvKey, 1, &ledger.ResultTx{Round: 0, ModelHash: ledger.Hash{3}, Accepted: []ledger.Contribution{{Worker: ledger.KeyOf(ckey), DeltaHash: delta, Tokens: 1000}}}},
		{srvKey, 2, &ledger.SettleTx{Round: 0, Verdicts: []ledger.Verdict{{Worker: ledger.KeyOf(ckey), Outcome: ledger.Unchecked}}}},
	} {
		raw, err := ledger.SignTx(g.ChainID, tx.key, tx.nonce, tx.body)
		if err != nil {
			return nil, err
		}
		if err := c.Submit(context.Background(), raw); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *loadChain) balance(_ context.Context, k ledger.PubKey) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.l.Account(k)
	return a.Balance, err
}

// Nonce implements serve.Ledger.
func (c *loadChain) Nonce(_ context.Context, k ledger.PubKey) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.l.Account(k)
	return a.Nonce, err
}

// Submit implements serve.Ledger: the transaction is a block of its own.
func (c *loadChain) Submit(_ context.Context, raw []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.p.Submit(raw); err != nil {
		return err
	}
	c.now++
	_, res, err := c.p.MakeBlock(c.now)
	if err != nil {
		return err
	}
	if _, err := c.p.Commit(); err != nil {
		return err
	}
	if len(res.Results) != 1 {
		return errors.New("the transaction was dropped from its block")
	}
	return nil
}

// complete posts one request and returns its completion tokens.
func complete(ctx context.Context, c *http.Client, url, key, body string) (int, error) {
	v, err := serve.Complete(ctx, c, url, key, json.RawMessage(body))
	if err != nil {
		return 0, err
	}
	if v.Usage.CompletionTokens <= 0 {
		return 0, errors.New("no completion tokens")
	}
	return v.Usage.CompletionTokens, nil
}
