package experiment

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	srv, err := serve.New(serve.Options{Model: o.Model, Watermark: o.Watermark, Keys: keys, Price: o.Price, MaxActive: o.MaxActive,
		MaxQueue: 4 * o.Clients, Key: ed25519.NewKeyFromSeed(seed[:]),
		Balances: func(context.Context, ledger.PubKey) (uint64, error) { return funds, nil }})
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
	return rep, nil
}

// complete posts one request and returns its completion tokens.
func complete(ctx context.Context, c *http.Client, url, key, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var v struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, err
	}
	if v.Usage.CompletionTokens <= 0 {
		return 0, errors.New("no completion tokens")
	}
	return v.Usage.CompletionTokens, nil
}
