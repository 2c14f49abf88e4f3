package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/store"
)

const ledgerUsage = "usage: cairn ledger balances|history|verify --data-dir DIR"

// runLedger inspects a node's ledger file (DIR/ledger.db), read-only.
func runLedger(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return badInput(ledgerUsage)
	}
	sub := args[0]
	if sub != "balances" && sub != "history" && sub != "verify" {
		return badInput("%s (unknown %q)", ledgerUsage, sub)
	}
	fs := newFlags("ledger "+sub, stderr)
	dir := fs.String("data-dir", "", "the node's data directory (holds "+store.FileName+")")
	var rpc *string
	if sub == "balances" {
		rpc = fs.String("rpc", "", "read a CometBFT chain's ledger through this validator's RPC address host:port instead of a file")
	}
	var account *string
	if sub == "history" {
		account = fs.String("account", "", "only the transactions touching this account (peer ID or 64 hex digits)")
	}
	if err := parseFlags(fs, args[1:], 0); err != nil {
		return err
	}
	if rpc != nil && *rpc != "" {
		return chainBalances(*rpc, stdout)
	}
	path, err := ledgerPath(*dir)
	if err != nil {
		return err
	}
	switch sub {
	case "verify":
		return ledgerVerify(path, stdout)
	case "balances":
		return ledgerBalances(path, stdout)
	}
	var who *ledger.PubKey
	if *account != "" {
		k, err := parseAccount(*account)
		if err != nil {
			return err
		}
		who = &k
	}
	return ledgerHistory(path, who, stdout)
}

// ledgerPath checks --data-dir and returns its ledger file: DIR/ledger.db
// (an aggregator's data directory), or DIR/aggregator/ledger.db (the
// data directory of a demo or any local run).
func ledgerPath(dir string) (string, error) {
	if dir == "" {
		return "", badInput("--data-dir is required (%s)", ledgerUsage)
	}
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return "", badInput("--data-dir %s: no such directory", dir)
	}
	for _, path := range []string{filepath.Join(dir, store.FileName), filepath.Join(dir, "aggregator", store.FileName)} {
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", badInput("no ledger in %s (%s missing, and no aggregator/%s of a local run)", dir, store.FileName, store.FileName)
}

// openLedger opens the file read-only: a node holding it is bad input
// (stop it or ask it), a file that does not load is a failed check.
func openLedger(path string) (*store.Store, error) {
	s, err := store.OpenReadOnly(path)
	if errors.Is(err, store.ErrInUse) {
		return nil, badInput("%s is in use by a running node", path)
	}
	if err != nil {
		return nil, failedCheck{err.Error()}
	}
	return s, nil
}

func ledgerVerify(path string, stdout io.Writer) error {
	r, err := store.Verify(path)
	if errors.Is(err, store.ErrInUse) {
		return badInput("%s is in use by a running node", path)
	}
	line, ok := verifyLine(r, err)
	if !ok {
		return failedCheck{line}
	}
	fmt.Fprintln(stdout, line)
	return nil
}

// verifyLine is what `cairn ledger verify` says of store.Verify's result,
// and whether the ledger is intact.
func verifyLine(r store.Report, err error) (string, bool) {
	var ve *store.VerifyError
	switch {
	case errors.As(err, &ve):
		return "tampered or damaged: " + ve.Error(), false
	case err != nil:
		return fmt.Sprintf("not a readable ledger: %v", err), false
	}
	return fmt.Sprintf("ledger intact: chain %s, %d blocks, %d transactions replayed from genesis; state root %s (%d state pairs)",
		r.ChainID, r.Tip.Height, r.Txs, r.Tip.AppHash, r.Pairs), true
}

func ledgerBalances(path string, stdout io.Writer) error {
	s, err := openLedger(path)
	if err != nil {
		return err
	}
	defer s.Close()
	l := s.Ledger()
	tot, err := l.Totals()
	if err != nil {
		return failedCheck{err.Error()}
	}
	accts, err := l.Accounts()
	if err != nil {
		return failedCheck{err.Error()}
	}
	priv, ok, err := l.Privacy()
	if err != nil {
		return failedCheck{err.Error()}
	}
	var pp *ledger.PrivacyRecord
	if ok {
		pp = &priv
	}
	printBalances(stdout, l.Genesis(), tot, accts, pp)
	return nil
}

// chainBalances is ledgerBalances for a CometBFT chain, read through a
// validator's ABCI queries.
func chainBalances(rpc string, stdout io.Writer) error {
	c, err := chain.Dial(rpc)
	if err != nil {
		return badInput("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := c.Genesis(ctx)
	if err != nil {
		return err
	}
	var tot ledger.Totals
	var accts []ledger.Account
	var priv *ledger.PrivacyRecord
	for path, v := range map[string]any{"totals": &tot, "accounts": &accts, "privacy": &priv} {
		b, err := c.Query(ctx, path, nil)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
	}
	printBalances(stdout, *g, tot, accts, priv)
	return nil
}

// printBalances prints the chain's totals and accounts, and the privacy a
// run with differential privacy has spent (priv nil: none recorded).
func printBalances(stdout io.Writer, g ledger.Genesis, tot ledger.Totals, accts []ledger.Account, priv *ledger.PrivacyRecord) {
	fmt.Fprintf(stdout, "chain %s at block %d (state root %s); open round %d, rounds below %d settled\n",
		g.ChainID, tot.Tip.Height, tot.Tip.AppHash, tot.OpenRound, tot.NextSettle)
	rows := [][]string{{"account", "balance", "stake", "unbonding", "nonce"}}
	for _, a := range accts {
		id := peerIDOf(a.Key)
		if g.IsAuthority(a.Key) {
			id += " (authority)"
		}
		rows = append(rows, []string{id, fmt.Sprint(a.Balance), fmt.Sprint(a.Stake), fmt.Sprint(a.Unbonded()), fmt.Sprint(a.Nonce)})
	}
	printTable(stdout, rows)
	fmt.Fprintf(stdout, "supply %d = genesis %d + minted %d - burned %d\n", tot.Supply, tot.GenesisSupply, tot.Minted, tot.Burned)
	if priv != nil {
		fmt.Fprintf(stdout, "differential privacy: ε %.6f of a budget of %g spent once round %d was published (δ %g; recorded at block %d)\n",
			priv.Spent(), priv.BudgetValue(), priv.Round, priv.DeltaValue(), priv.Height)
	}
}

func ledgerHistory(path string, who *ledger.PubKey, stdout io.Writer) error {
	s, err := openLedger(path)
	if err != nil {
		return err
	}
	defer s.Close()
	type ref struct {
		height uint64
		index  uint32
	}
	var refs []ref
	if who != nil {
		hist, err := s.Ledger().History(*who)
		if err != nil {
			return failedCheck{err.Error()}
		}
		for _, h := range hist {
			refs = append(refs, ref{h.Height, h.Index})
		}
		fmt.Fprintf(stdout, "%d transactions touch %s\n", len(refs), peerIDOf(*who))
	} else {
		for h := uint64(1); h <= s.Ledger().Tip().Height; h++ {
			b, _, err := s.Block(h)
			if err != nil {
				return failedCheck{err.Error()}
			}
			for i := range b.Txs {
				refs = append(refs, ref{h, uint32(i)})
			}
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "block\ttx\ttime\tkind\tfrom\tnonce\tresult\tdetails")
	var blk *ledger.Block
	var results []ledger.TxResult
	for _, r := range refs {
		if blk == nil || blk.Header.Height != r.height {
			if blk, results, err = s.Block(r.height); err != nil {
				return failedCheck{err.Error()}
			}
		}
		if int(r.index) >= len(blk.Txs) {
			return failedCheck{fmt.Sprintf("block %d has no transaction %d", r.height, r.index)}
		}
		when := time.Unix(0, blk.Header.Time).UTC().Format(time.RFC3339)
		res := "ok"
		if rr := results[r.index]; rr.Code != ledger.CodeOK {
			res = rr.Code.String() + ": " + rr.Reason
		}
		tx, err := ledger.DecodeTx(blk.Txs[r.index])
		if err != nil {
			fmt.Fprintf(tw, "%d\t%d\t%s\t?\t?\t?\t%s\t%v\n", r.height, r.index, when, res, err)
			continue
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%v\t%s\t%d\t%s\t%s\n", r.height, r.index, when, tx.Body.Kind(), peerIDOf(tx.Sender), tx.Nonce, res, txDetails(tx))
	}
	return tw.Flush()
}

// printTable prints rows in columns: the first left-aligned, the others
// (numbers) right-aligned.
func printTable(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s", width[0], r[0])
		for i := 1; i < len(r); i++ {
			fmt.Fprintf(w, "  %*s", width[i], r[i])
		}
		fmt.Fprintln(w)
	}
}

// txDetails is a one-line summary of a transaction's body.
func txDetails(tx *ledger.Tx) string {
	short := func(h ledger.Hash) string { return h.String()[:16] }
	switch b := tx.Body.(type) {
	case *ledger.RegisterTx:
		return fmt.Sprintf("stake +%d", b.Amount)
	case *ledger.TransferTx:
		return fmt.Sprintf("%d to %s", b.Amount, peerIDOf(b.To))
	case *ledger.UnbondTx:
		return fmt.Sprintf("unbond %d", b.Amount)
	case *ledger.WithdrawTx:
		return "withdraw matured stake"
	case *ledger.CommitTx:
		fresh := ""
		if b.Fresh {
			fresh = " fresh start"
		}
		return fmt.Sprintf("round %d, %d tokens, delta %s, kernel %s%s", b.Round, b.Tokens, short(b.DeltaHash), b.Kernel, fresh)
	case *ledger.ResultTx:
		return fmt.Sprintf("round %d closed: %d accepted, %d rejected, model %s", b.Round, len(b.Accepted), len(b.Rejected), short(b.ModelHash))
	case *ledger.SettleTx:
		n := map[ledger.Outcome]int{}
		var failed []string
		for _, v := range b.Verdicts {
			n[v.Outcome]++
			if v.Outcome == ledger.Failed {
				failed = append(failed, fmt.Sprintf("%s (%s)", peerIDOf(v.Worker), v.Reason))
			}
		}
		s := fmt.Sprintf("round %d settled: %d passed, %d failed, %d unchecked", b.Round, n[ledger.Passed], n[ledger.Failed], n[ledger.Unchecked])
		if len(failed) > 0 {
			s += "; failed: " + strings.Join(failed, ", ")
		}
		return s
	case *ledger.ReceiptsTx:
		var reqs uint32
		var tokens, fees uint64
		for _, e := range b.Entries {
			reqs, tokens, fees = reqs+e.Requests, tokens+e.Tokens, fees+e.Fee
		}
		return fmt.Sprintf("served model %s: %d requests by %d requesters, %d tokens, fees %d split among the contributors", short(b.Model), reqs, len(b.Entries), tokens, fees)
	case *ledger.FingerprintTx:
		return fmt.Sprintf("fingerprint set %s committed for model %s", short(b.Set), short(b.Model))
	}
	return ""
}

// peerIDOf shows an account as the libp2p peer ID of its ed25519 key
// (what nodes print).
func peerIDOf(k ledger.PubKey) string { return p2p.PeerIDOf(k) }

// parseAccount reads --account: a peer ID (of an ed25519 key) or 64 hex
// digits.
func parseAccount(s string) (ledger.PubKey, error) {
	k, err := p2p.ParseAccount(s)
	if err != nil {
		return ledger.PubKey{}, badInput("--%v", err)
	}
	return k, nil
}
