package chain

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/cairnlabs/cairn/ledger"
)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

var (
	orgKey   = testKey("organiser")
	aliceKey = testKey("alice")
	bobKey   = testKey("bob")
)

func testGenesis() ledger.Genesis {
	g := ledger.Genesis{ChainID: "cairn-test", Authorities: []ledger.PubKey{ledger.KeyOf(orgKey)}, MinStake: 100,
		UnbondingRounds: 3, EmissionPerRound: 1000, SlashBasisPoints: 5000, SettlementLag: 1}
	for _, k := range []ed25519.PrivateKey{aliceKey, bobKey} {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Key: ledger.KeyOf(k), Balance: 1000})
	}
	slices.SortFunc(g.Accounts, func(a, b ledger.GenesisAccount) int { return strings.Compare(string(a.Key[:]), string(b.Key[:])) })
	return g
}

func appState(t testing.TB, g ledger.Genesis) []byte {
	b, err := json.Marshal(AppState{Ledger: g.Encode()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestApp(t *testing.T, dir string) *App {
	t.Helper()
	a, err := OpenApp(filepath.Join(dir, "app.db"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func transfer(t testing.TB, from ed25519.PrivateKey, nonce, amount uint64, to ed25519.PrivateKey) []byte {
	raw, err := ledger.SignTx("cairn-test", from, nonce, &ledger.TransferTx{To: ledger.KeyOf(to), Amount: amount})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

var ctx = context.Background()

func initApp(t *testing.T, a *App) []byte {
	t.Helper()
	g := testGenesis()
	res, err := a.InitChain(ctx, &abci.RequestInitChain{ChainId: g.ChainID, AppStateBytes: appState(t, g), InitialHeight: 1})
	if err != nil {
		t.Fatal(err)
	}
	return res.AppHash
}

// blockHash stands in for CometBFT's hash of the block at height.
func blockHash(height int64) []byte {
	h := sha256.Sum256(fmt.Appendf(nil, "block %d", height))
	return h[:]
}

// commitBlock runs a block through FinalizeBlock and Commit.
func commitBlock(t *testing.T, a *App, height int64, txs ...[]byte) *abci.ResponseFinalizeBlock {
	t.Helper()
	res, err := a.FinalizeBlock(ctx, &abci.RequestFinalizeBlock{Height: height, Time: time.Unix(1_800_000_000+height, 0), Txs: txs, Hash: blockHash(height)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Commit(ctx, &abci.RequestCommit{}); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestInitChainRefusesBadGenesis(t *testing.T) {
	a := newTestApp(t, t.TempDir())
	defer a.Close()
	g := testGenesis()
	for _, tc := range []struct {
		name, chainID string
		state         []byte
		want          string
	}{
		{"not JSON", g.ChainID, []byte("{"), "app_state"},
		{"no ledger", g.ChainID, []byte(`{}`), "no cairn_ledger_genesis"},
		{"garbled ledger genesis", g.ChainID, []byte(`{"cairn_ledger_genesis":"AAEC"}`), "app_state"},
		{"other chain ID", "cairn-other", appState(t, g), "chain"},
	} {
		_, err := a.InitChain(ctx, &abci.RequestInitChain{ChainId: tc.chainID, AppStateBytes: tc.state})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one naming %q", tc.name, err, tc.want)
		}
	}
	if info, _ := a.Info(ctx, &abci.RequestInfo{}); info.LastBlockHeight != 0 {
		t.Fatalf("height %d after refused genesis", info.LastBlockHeight)
	}
}

func TestCheckTxRejectsWithReason(t *testing.T) {
	a := newTestApp(t, t.TempDir())
	defer a.Close()
	initApp(t, a)
	good := transfer(t, aliceKey, 1, 10, bobKey)
	badSig := slices.Clone(good)
	badSig[len(badSig)-1] ^= 1
	otherChain, _ := ledger.SignTx("cairn-other", aliceKey, 1, &ledger.TransferTx{To: ledger.KeyOf(bobKey), Amount: 10})
	for _, tc := range []struct {
		name string
		tx   []byte
		code ledger.Code
	}{
		{"garbage", []byte("not a transaction"), ledger.CodeMalformed},
		{"empty", nil, ledger.CodeMalformed},
		{"bad signature", badSig, ledger.CodeBadSignature},
		{"signed for another chain", otherChain, ledger.CodeBadSignature},
		{"overspending", transfer(t, aliceKey, 1, 5000, bobKey), ledger.CodeInsufficientFunds},
	} {
		res, err := a.CheckTx(ctx, &abci.RequestCheckTx{Tx: tc.tx})
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != uint32(tc.code) || res.Log == "" || res.Codespace != Codespace {
			t.Errorf("%s: code %d log %q, want code %d (%v) with a reason", tc.name, res.Code, res.Log, tc.code, tc.code)
		}
	}
	if res, _ := a.CheckTx(ctx, &abci.RequestCheckTx{Tx: good}); res.Code != 0 {
		t.Fatalf("a valid transfer refused: %s", res.Log)
	}
	// A replay of a committed nonce is refused; a nonce the pending
	// state used but the committed state did not (gossip reordering) is
	// let into the mempool.
	commitBlock(t, a, 1, good)
	if res, _ := a.CheckTx(ctx, &abci.RequestCheckTx{Tx: transfer(t, aliceKey, 1, 11, bobKey)}); res.Code != uint32(ledger.CodeBadNonce) {
		t.Fatalf("replayed committed nonce: code %d, want %d", res.Code, ledger.CodeBadNonce)
	}
	if res, _ := a.CheckTx(ctx, &abci.RequestCheckTx{Tx: transfer(t, aliceKey, 3, 1, bobKey)}); res.Code != 0 {
		t.Fatalf("nonce 3: %s", res.Log)
	}
	if res, _ := a.CheckTx(ctx, &abci.RequestCheckTx{Tx: transfer(t, aliceKey, 2, 1, bobKey)}); res.Code != 0 {
		t.Fatalf("nonce 2 after 3 (out of order, not committed): refused: %s", res.Log)
	}
}

func TestProposalsKeepOnlyValidTransactions(t *testing.T) {
	a := newTestApp(t, t.TempDir())
	defer a.Close()
	initApp(t, a)
	t2, t3 := transfer(t, aliceKey, 2, 1, bobKey), transfer(t, aliceKey, 3, 1, bobKey)
	bad := transfer(t, bobKey, 1, 1_000_000, aliceKey) // overspends
	b1 := transfer(t, bobKey, 2, 5, aliceKey)
	// Alice's nonces arrive out of order, with Bob's between them.
	prep, err := a.PrepareProposal(ctx, &abci.RequestPrepareProposal{Height: 1, Time: time.Unix(1_800_000_001, 0), MaxTxBytes: 1 << 20,
		Txs: [][]byte{t3, bad, t2, b1}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{t2, t3, b1}
	if len(prep.Txs) != len(want) {
		t.Fatalf("proposal of %d transactions, want %d", len(prep.Txs), len(want))
	}
	for i := range want {
		if string(prep.Txs[i]) != string(want[i]) {
			t.Fatalf("proposal transaction %d out of order", i)
		}
	}
	accept := func(txs ...[]byte) abci.ResponseProcessProposal_ProposalStatus {
		res, err := a.ProcessProposal(ctx, &abci.RequestProcessProposal{Height: 1, Time: time.Unix(1_800_000_001, 0), Txs: txs})
		if err != nil {
			t.Fatal(err)
		}
		return res.Status
	}
	if s := accept(prep.Txs...); s != abci.ResponseProcessProposal_ACCEPT {
		t.Fatalf("the honest proposal: %v", s)
	}
	// A proposer that slips in an invalid transaction has its block
	// refused: malformed, badly signed, overspending, replayed.
	badSig := slices.Clone(t2)
	badSig[len(badSig)-1] ^= 1
	for name, txs := range map[string][][]byte{
		"malformed":     {t2, []byte("junk")},
		"bad signature": {badSig},
		"overspending":  {t2, bad},
		"replay":        {t2, t2},
		"out of order":  {t3, t2},
	} {
		if s := accept(txs...); s != abci.ResponseProcessProposal_REJECT {
			t.Errorf("%s: %v, want REJECT", name, s)
		}
	}
	// Judging proposals changed nothing.
	if info, _ := a.Info(ctx, &abci.RequestInfo{}); info.LastBlockHeight != 0 {
		t.Fatalf("height %d", info.LastBlockHeight)
	}
	res := commitBlock(t, a, 1, prep.Txs...)
	for i, r := range res.TxResults {
		if r.Code != 0 {
			t.Fatalf("tx %d: %s", i, r.Log)
		}
	}
	// FinalizeBlock of a decided block with a rejected transaction gives
	// it its code and reason, as every validator does.
	res = commitBlock(t, a, 2, transfer(t, bobKey, 3, 1_000_000, aliceKey))
	if res.TxResults[0].Code != uint32(ledger.CodeInsufficientFunds) || res.TxResults[0].Log == "" {
		t.Fatalf("overspending in a decided block: %+v", res.TxResults[0])
	}
}

func TestCommitPersistsAndInfoResumes(t *testing.T) {
	dir := t.TempDir()
	a := newTestApp(t, dir)
	genesisRoot := initApp(t, a)
	// InitChain again (a restart before block 1) changes nothing.
	if again := initApp(t, a); string(again) != string(genesisRoot) {
		t.Fatal("InitChain twice gave another state root")
	}
	res1 := commitBlock(t, a, 1, transfer(t, aliceKey, 1, 10, bobKey))
	res2 := commitBlock(t, a, 2, transfer(t, bobKey, 1, 3, aliceKey))
	if string(res1.AppHash) == string(res2.AppHash) {
		t.Fatal("the app hash did not change")
	}
	// A block finalized but not committed (killed before Commit) is not
	// in the file: the engine replays it.
	if _, err := a.FinalizeBlock(ctx, &abci.RequestFinalizeBlock{Height: 3, Time: time.Unix(1_800_000_003, 0),
		Txs: [][]byte{transfer(t, aliceKey, 2, 1, bobKey)}, Hash: blockHash(3)}); err != nil {
		t.Fatal(err)
	}
	a.Close()

	b := newTestApp(t, dir)
	defer b.Close()
	info, err := b.Info(ctx, &abci.RequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if info.LastBlockHeight != 2 || string(info.LastBlockAppHash) != string(res2.AppHash) {
		t.Fatalf("after restart: height %d app hash %X, want 2 and %X", info.LastBlockHeight, info.LastBlockAppHash, res2.AppHash)
	}
	bob := ledger.KeyOf(bobKey)
	q, _ := b.Query(ctx, &abci.RequestQuery{Path: "account", Data: bob[:]})
	var acct ledger.Account
	if err := json.Unmarshal(q.Value, &acct); err != nil {
		t.Fatal(err)
	}
	if acct.Balance != 1000+10-3 || acct.Nonce != 1 {
		t.Fatalf("bob after restart: %+v", acct)
	}
	// Replaying block 3 gives the same result as before.
	res3 := commitBlock(t, b, 3, transfer(t, aliceKey, 2, 1, bobKey))
	if res3.TxResults[0].Code != 0 {
		t.Fatal(res3.TxResults[0].Log)
	}
	// Queries: the genesis, and refusals with reasons.
	q, _ = b.Query(ctx, &abci.RequestQuery{Path: QueryGenesis})
	if g, err := ledger.DecodeGenesis(q.Value); err != nil || g.ChainID != "cairn-test" {
		t.Fatalf("genesis query: %v", err)
	}
	for _, req := range []*abci.RequestQuery{{Path: "nope"}, {Path: "account", Data: []byte{1}}, {Path: "totals", Height: 1}} {
		if q, _ := b.Query(ctx, req); q.Code == 0 || q.Log == "" {
			t.Errorf("query %q at %d answered without a refusal", req.Path, req.Height)
		}
	}
}

func TestNonceOrder(t *testing.T) {
	a1, a2, a3 := transfer(t, aliceKey, 1, 1, bobKey), transfer(t, aliceKey, 2, 1, bobKey), transfer(t, aliceKey, 3, 1, bobKey)
	b1 := transfer(t, bobKey, 1, 1, aliceKey)
	junk := []byte("junk")
	got := nonceOrder([][]byte{a3, b1, junk, a1, a2})
	want := [][]byte{a1, b1, junk, a2, a3}
	for i := range want {
		if string(got[i]) != string(want[i]) {
			t.Fatalf("place %d holds the wrong transaction", i)
		}
	}
}

func FuzzGenesisOf(f *testing.F) {
	f.Add(appState(f, testGenesis()))
	f.Add([]byte(`{"cairn_ledger_genesis":""}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := GenesisOf(b)
		if err == nil && g.Validate() != nil {
			t.Fatal("accepted an invalid genesis")
		}
	})
}

func FuzzCheckTx(f *testing.F) {
	f.Add(transfer(f, aliceKey, 1, 10, bobKey))
	f.Add([]byte{})
	a, err := OpenApp(filepath.Join(f.TempDir(), "app.db"))
	if err != nil {
		f.Fatal(err)
	}
	g := testGenesis()
	if _, err := a.InitChain(ctx, &abci.RequestInitChain{ChainId: g.ChainID, AppStateBytes: appState(f, g)}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tx []byte) {
		res, err := a.CheckTx(ctx, &abci.RequestCheckTx{Tx: tx})
		if err != nil || (res.Code != 0) == (res.Log == "") {
			t.Fatalf("code %d log %q err %v", res.Code, res.Log, err)
		}
	})
}
