package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/serve"
	"github.com/cairnlabs/cairn/store"
	"github.com/cairnlabs/cairn/watermark"
	"github.com/cairnlabs/cairn/web"
)

// runServe answers OpenAI-compatible completion requests from a model.
func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	ckpt := fs.String("ckpt", "out/model.safetensors", "model file, or a checkpoint directory")
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	viewAddr := fs.String("view", "", "serve the live view (requests, tokens, receipts and fees; read-only) on this host:port")
	viewPublic := fs.Bool("view-public", false, "let --view bind to an address other than loopback")
	dir := fs.String("data-dir", "cairn-serve", "the server's identity (signs receipts), its receipts (receipts.jsonl) and watermark key")
	keysPath := fs.String("keys", "", "JSON object of API keys to the ledger accounts they charge: {\"sk-...\": \"PEERID\", ...} (required)")
	ledgerAt := fs.String("ledger", "", "where balances are read: the RPC address host:port of a validator of the run's CometBFT chain, or a ledger file (DIR/ledger.db of a stopped aggregator); empty serves free of charge")
	price := fs.Uint64("price", 1, "fee per token (prompt and completion), in ledger units")
	noWM := fs.Bool("no-watermark", false, "serve without watermarking")
	wm := bindWatermarkFlags(fs, true)
	maxActive := fs.Int("max-active", 64, "requests generated at once (more wait their turn)")
	recordEvery := fs.Duration("record-every", 10*time.Second, "with --ledger a validator's RPC address: how often the receipts are recorded on the chain (the server's identity must be one of its authorities)")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *keysPath == "" {
		return badInput("--keys is required: a JSON object of API keys to ledger accounts")
	}
	keys, err := readKeys(*keysPath)
	if err != nil {
		return badInput("%v", err)
	}
	if err := wm.check(); err != nil {
		return err
	}
	balances, rpcClient, err := openBalances(*ledgerAt)
	if err != nil {
		return err
	}
	m, tok, pool, err := loadModelTok(*ckpt, *threads, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	var codec serve.Tokenizer
	if tok != nil {
		codec = tok
	}
	id, err := p2p.LoadIdentity(*dir)
	if err != nil {
		return badInput("--data-dir: %v", err)
	}
	key, err := p2p.LedgerKey(id)
	if err != nil {
		return err
	}
	var scheme *watermark.Scheme
	if !*noWM {
		if *wm.key == "" {
			if *wm.key, err = watermarkKey(*dir); err != nil {
				return err
			}
		}
		if scheme, err = wm.scheme(m.Config.VocabSize); err != nil {
			return err
		}
	}
	rlog, err := serve.OpenFileLog(filepath.Join(*dir, "receipts.jsonl"))
	if err != nil {
		return err
	}
	defer rlog.Close()
	modelHash := ledger.Hash(diloco.HashWeights(0, m.Params))
	reg := metrics.NewRegistry()
	statePath := filepath.Join(*dir, "receipts.recorded.json")
	srv, err := serve.New(serve.Options{Model: m, Tokenizer: codec, ModelHash: modelHash, Watermark: scheme, Keys: keys, Balances: balances,
		Price: *price, Receipts: rlog, Key: key, MaxActive: *maxActive, Metrics: reg, RecordState: statePath})
	if err != nil {
		return err
	}
	defer srv.Close()
	var recorder func(context.Context)
	if rpcClient != nil {
		gctx, c := context.WithTimeout(context.Background(), 30*time.Second)
		g, err := rpcClient.Genesis(gctx)
		c()
		if err != nil {
			return err
		}
		if !g.IsAuthority(ledger.KeyOf(key)) {
			return badInput("this server (%s) is not an authority of chain %s: it cannot record its receipts there (cairn chain init --authority %s)",
				p2p.PeerIDOf(ledger.KeyOf(key)), g.ChainID, p2p.PeerIDOf(ledger.KeyOf(key)))
		}
		cl := chainLedger{rpcClient}
		recorder = func(ctx context.Context) {
			rctx, c := context.WithTimeout(ctx, 2*time.Minute)
			defer c()
			n, err := srv.Record(rctx, cl, g.ChainID, statePath)
			if err != nil {
				fmt.Fprintf(stderr, "recording receipts on the chain: %v (tried again later)\n", err)
			} else if n > 0 {
				fmt.Fprintf(stdout, "recorded %d receipts on chain %s\n", n, g.ChainID)
			}
		}
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return badInput("--addr: %v", err)
	}
	hub, stopWeb, err := startWeb(stdout, *viewAddr, *viewPublic, filepath.Base(*ckpt), 0)
	if err != nil {
		return err
	}
	defer stopWeb()
	hub.SetServing(func() (web.Serving, error) { return servingView(srv, statePath) })
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	wmLine := "off"
	if scheme != nil {
		wmLine = fmt.Sprintf("on (%v, gamma %g, delta %g; key in %s unless --watermark-key)", scheme.Seeding, scheme.Gamma, scheme.Delta, *dir)
	}
	charge := "free of charge (no --ledger)"
	if balances != nil {
		charge = fmt.Sprintf("%d units per token, balances from %s", *price, *ledgerAt)
	}
	fmt.Fprintf(stdout, "serving %s on http://%s/v1 (model %s, %d API keys, %s; watermark %s; receipts signed by %s)\n",
		*ckpt, l.Addr(), modelHash, len(keys), charge, wmLine, p2p.PeerIDOf(ledger.KeyOf(key)))
	ctx, cancel := signalContext()
	defer cancel()
	if recorder != nil {
		recorder(ctx) // what a previous run left
		go func() {
			t := time.NewTicker(*recordEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					recorder(ctx)
				}
			}
		}()
		defer recorder(context.Background())
	}
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		hs.Shutdown(sctx)
	}()
	if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// readKeys reads the API keys file: a JSON object of keys to accounts.
func readKeys(path string) (map[string]ledger.PubKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > 16<<20 {
		return nil, fmt.Errorf("%s: %d bytes, too large for a keys file", path, len(b))
	}
	var raw map[string]string
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %v (want {\"KEY\": \"PEERID\", ...})", path, err)
	}
	out := map[string]ledger.PubKey{}
	for k, v := range raw {
		if len(k) < 8 {
			return nil, fmt.Errorf("%s: API key %q is shorter than 8 characters", path, k)
		}
		acct, err := p2p.ParseAccount(v)
		if err != nil {
			return nil, fmt.Errorf("%s: key %q: %v", path, k, err)
		}
		out[k] = acct
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no API keys", path)
	}
	return out, nil
}

// chainLedger records receipts through a validator's RPC.
type chainLedger struct{ c *chain.Client }

func (l chainLedger) Nonce(ctx context.Context, k ledger.PubKey) (uint64, error) {
	a, err := l.c.Account(ctx, k)
	return a.Nonce, err
}

func (l chainLedger) Submit(ctx context.Context, raw []byte) error {
	_, err := l.c.Submit(ctx, raw)
	return err
}

// openBalances reads balances from a chain's validator (whose client it
// also returns, for recording receipts) or a ledger file.
func openBalances(at string) (serve.Balances, *chain.Client, error) {
	if at == "" {
		return nil, nil, nil
	}
	if st, err := os.Stat(at); err == nil && !st.IsDir() {
		return func(_ context.Context, k ledger.PubKey) (uint64, error) {
			s, err := store.OpenReadOnly(at)
			if err != nil {
				return 0, err
			}
			defer s.Close()
			a, err := s.Ledger().Account(k)
			return a.Balance, err
		}, nil, nil
	}
	rpc, err := ledgerFlag(at)
	if err != nil || rpc == "" {
		return nil, nil, badInput("--ledger %q: neither a ledger file nor a validator's RPC address", at)
	}
	c, err := chain.Dial(rpc)
	if err != nil {
		return nil, nil, badInput("%v", err)
	}
	return func(ctx context.Context, k ledger.PubKey) (uint64, error) {
		a, err := c.Account(ctx, k)
		return a.Balance, err
	}, c, nil
}

// watermarkKey is the server's watermark key in dir (watermark.key),
// created at random (hex) if absent.
func watermarkKey(dir string) (string, error) {
	path := filepath.Join(dir, "watermark.key")
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) == 0 || len(b) > 1024 {
			return "", badInput("%s: not a watermark key", path)
		}
		return string(b), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var k [32]byte
	rand.Read(k[:])
	s := hex.EncodeToString(k[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		return "", err
	}
	return s, os.Rename(tmp, path)
}

// runServingExperiment is the serving load test: the same load with the
// server generating all requests at once and one at a time.
func runServingExperiment(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("experiment serving", stderr)
	ckpt := fs.String("ckpt", "out/model.safetensors", "model file, or a checkpoint directory")
	clients := fs.Int("clients", 64, "concurrent clients, each with its own API key and account")
	requests := fs.Int("requests", 2000, "requests in all")
	maxTokens := fs.Int("max-tokens", 32, "tokens per request")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *clients < 1 || *requests < 1 || *maxTokens < 1 || *maxTokens > 512 {
		return badInput("--clients and --requests must be at least 1, --max-tokens 1..512")
	}
	m, pool, err := loadModel(*ckpt, *threads)
	if err != nil {
		return err
	}
	defer pool.Close()
	scheme, err := watermark.New([]byte("cairn serving experiment"), m.Config.VocabSize, 0, 0, watermark.LeftHash, 0)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	fmt.Fprintf(stdout, "serving load: %d clients, %d requests of %d tokens, watermarked, each client its own key and account\n", *clients, *requests, *maxTokens)
	var tps [2]float64
	for i, active := range []int{*clients, 1} {
		p := newProgress(stderr, *requests, fmt.Sprintf("%d at once", active))
		rep, err := experiment.Serving(ctx, experiment.ServingOptions{Model: m, Watermark: scheme, Clients: *clients, Requests: *requests,
			MaxTokens: *maxTokens, MaxActive: active, Progress: func(done, _ int) { p.update(done, "") }})
		p.finish()
		if err != nil {
			return err
		}
		tps[i] = rep.TokensPerSec
		conserved := rep.ReceiptFees == rep.UsageFees && rep.UsageFees == rep.Charged && rep.BadReceipts == 0 && rep.Receipts == rep.Requests-rep.Failed &&
			rep.Recorded == rep.Receipts && rep.Debited == rep.ReceiptFees && rep.Credited == rep.ReceiptFees && rep.SupplyConserved
		fmt.Fprintf(stdout, "generating %d at once: %d requests, %d failed; %.0f tokens/s over %v; latency p50 %v, p99 %v; %d receipts, fees %d (usage says %d, charged %d); on the ledger %d receipts, requesters paid %d, contributor received %d: conserved %v\n",
			active, rep.Requests, rep.Failed, rep.TokensPerSec, rep.Wall.Round(time.Millisecond), rep.P50.Round(time.Millisecond), rep.P99.Round(time.Millisecond),
			rep.Receipts, rep.ReceiptFees, rep.UsageFees, rep.Charged, rep.Recorded, rep.Debited, rep.Credited, conserved)
		if rep.FirstErr != "" {
			fmt.Fprintf(stdout, "  first failure: %s\n", rep.FirstErr)
		}
	}
	fmt.Fprintf(stdout, "throughput, all at once over one at a time: %.2fx\n", tps[0]/tps[1])
	return nil
}

// servingView is the server's work for the live view: what it answered
// since it started, and the fees of all its receipts (recorded on the
// chain or not).
func servingView(srv *serve.Server, statePath string) (web.Serving, error) {
	rs, err := srv.Receipts()
	if err != nil {
		return web.Serving{}, err
	}
	rec, err := serve.Recorded(statePath)
	if err != nil {
		return web.Serving{}, err
	}
	st := srv.Stats()
	v := web.Serving{Requests: st.Requests, PromptTokens: st.PromptTokens, CompletionTokens: st.CompletionTokens}
	for i, r := range rs {
		v.Fees += r.Fee
		if i < rec {
			v.Recorded++
			v.RecordedFees += r.Fee
		}
	}
	return v, nil
}
