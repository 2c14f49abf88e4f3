package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/wire"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ledgerPeer is a libp2p node on loopback with its ledger key.
type ledgerPeer struct {
	tr  *p2p.Transport
	key ed25519.PrivateKey
}

func (p ledgerPeer) acct() ledger.PubKey { return ledger.KeyOf(p.key) }

func newLedgerPeer(t *testing.T) ledgerPeer {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := p2p.LedgerKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := p2p.NewTransport(priv, []string{"/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return ledgerPeer{tr, key}
}

// testLedgerParams are small numbers for tests.
var testLedgerParams = LedgerParams{MinStake: 100, UnbondingRounds: 2, EmissionPerRound: 1000, SlashBasisPoints: 5000, SettlementLag: 1}

// ledgerNet is an aggregator hosting a chain and workers connected to it,
// each funded with 1000 units of balance and none staked.
type ledgerNet struct {
	agg     ledgerPeer
	host    *LedgerHost
	dir     string
	g       *ledger.Genesis
	clock   *testClock
	workers []ledgerPeer
}

func newLedgerNet(t *testing.T, workers int, opts LedgerHostOptions) *ledgerNet {
	t.Helper()
	n := &ledgerNet{agg: newLedgerPeer(t), dir: t.TempDir(), clock: &testClock{t: time.Unix(1_767_225_600, 0)}}
	var accts []ledger.GenesisAccount
	for i := 0; i < workers; i++ {
		w := newLedgerPeer(t)
		n.workers = append(n.workers, w)
		accts = append(accts, ledger.GenesisAccount{Key: w.acct(), Balance: 1000})
	}
	g, err := RunGenesis("test run", n.agg.acct(), accts, testLedgerParams)
	if err != nil {
		t.Fatal(err)
	}
	n.g = g
	opts.DataDir, opts.Genesis, opts.Key, opts.Now = n.dir, g, n.agg.key, n.clock.Now
	if n.host, err = OpenLedgerHost(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.host.Close() })
	n.host.Serve(n.agg.tr)
	for _, w := range n.workers {
		if _, err := w.tr.Connect(context.Background(), n.agg.tr.Addrs()[0]); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func (n *ledgerNet) client(t *testing.T, i int) *LedgerClient {
	t.Helper()
	c, err := NewLedgerClient(context.Background(), n.workers[i].tr, n.agg.tr.ID(), n.workers[i].key, n.g.ChainID)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// produce makes a block one second after the last.
func (n *ledgerNet) produce(t *testing.T) *ledger.Block {
	t.Helper()
	n.clock.Add(time.Second)
	b, err := n.host.Produce(n.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantAccount(t *testing.T, c *LedgerClient, k ledger.PubKey, balance, stake, nonce uint64) {
	t.Helper()
	a, err := c.Account(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	if a.Balance != balance || a.Stake != stake || a.Nonce != nonce {
		t.Fatalf("account %s: balance %d stake %d nonce %d, want %d %d %d", p2p.PeerIDOf(k), a.Balance, a.Stake, a.Nonce, balance, stake, nonce)
	}
}

func wantTxError(t *testing.T, err error, code ledger.Code, reason string) {
	t.Helper()
	var te *ledger.TxError
	if !errors.As(err, &te) || te.Code != code || !strings.Contains(te.Reason, reason) {
		t.Fatalf("got %v, want a %v rejection saying %q", err, code, reason)
	}
}

func wantRefusal(t *testing.T, err error, reason string) {
	t.Helper()
	var lr *LedgerRefusal
	if !errors.As(err, &lr) || !strings.Contains(lr.Reason, reason) {
		t.Fatalf("got %v, want a refusal saying %q", err, reason)
	}
}

// TestLedgerRegisterTransferBalance: over real libp2p connections a
// worker stakes, transfers, and reads its balance back; what it reads is
// the host's committed state, which changes only with a block.
func TestLedgerRegisterTransferBalance(t *testing.T) {
	n := newLedgerNet(t, 2, LedgerHostOptions{})
	ctx := context.Background()
	a, b := n.client(t, 0), n.client(t, 1)
	if a.Info().ChainID != LedgerChainID("test run") || a.Info().MinStake != 100 || a.Info().Authorities[0] != n.agg.acct() {
		t.Fatalf("chain info %+v", a.Info())
	}
	if err := a.Register(ctx, 150); err != nil {
		t.Fatal(err)
	}
	if err := a.Transfer(ctx, b.Self(), 300); err != nil {
		t.Fatal(err)
	}
	wantAccount(t, a, a.Self(), 1000, 0, 0) // queued, not yet in a block
	if blk := n.produce(t); blk == nil || len(blk.Txs) != 2 {
		t.Fatalf("block %+v, want the 2 transactions", blk)
	}
	wantAccount(t, a, a.Self(), 550, 150, 2)
	wantAccount(t, b, b.Self(), 1300, 0, 0)
	// A stake below the minimum and an overdraft are rejected with the
	// ledger's code and reason; they use no nonce.
	wantTxError(t, b.Register(ctx, 99), ledger.CodeNotStaked, "below the minimum")
	wantTxError(t, b.Transfer(ctx, a.Self(), 5000), ledger.CodeInsufficientFunds, "")
	if b.Nonce() != 0 {
		t.Fatalf("rejected transactions moved the nonce to %d", b.Nonce())
	}
	if err := b.Register(ctx, 100); err != nil {
		t.Fatal(err)
	}
	n.produce(t)
	wantAccount(t, b, b.Self(), 1200, 100, 1)
	h, err := b.History(ctx, b.Self())
	if err != nil || len(h) != 2 || h[0].Kind != ledger.KindTransfer || h[1].Kind != ledger.KindRegister {
		t.Fatalf("history %+v %v", h, err)
	}
}

// TestLedgerQueryTotals: totals over the network equal the host's, and
// bad queries are refused with their reason.
func TestLedgerQueryTotals(t *testing.T) {
	n := newLedgerNet(t, 1, LedgerHostOptions{})
	ctx := context.Background()
	c := n.client(t, 0)
	if err := c.Register(ctx, 100); err != nil {
		t.Fatal(err)
	}
	n.produce(t)
	tot, err := c.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := n.host.Chain().Query("totals", nil)
	got, _ := c.Query(ctx, "totals", nil)
	if !bytes.Equal(got, want) || tot.Supply != 1000 || tot.GenesisSupply != 1000 || tot.Tip.Height != 1 || tot.OpenRound != 0 {
		t.Fatalf("totals %+v\n%s\nwant %s", tot, got, want)
	}
	if r, err := c.Round(ctx, 0); err != nil || r.Status != "open" {
		t.Fatalf("round 0: %+v %v", r, err)
	}
	for _, tc := range []struct {
		path string
		data []byte
		want string
	}{
		{"accounts", nil, "not served to peers"},
		{"balances", nil, `query "balances"`},
		{"account", []byte{1, 2, 3}, `query "account"`},
		{"round", nil, `query "round"`},
		{strings.Repeat("x", 5000), nil, "exceeds"},
	} {
		_, err := c.Query(ctx, tc.path, tc.data)
		wantRefusal(t, err, tc.want)
	}
}

// TestLedgerRefusesOthersTransactions: a transaction signed by another key
// than the stream's verified identity is refused with the reason, and
// changes nothing; nobody relays others' transactions.
func TestLedgerRefusesOthersTransactions(t *testing.T) {
	n := newLedgerNet(t, 2, LedgerHostOptions{})
	ctx := context.Background()
	b := n.client(t, 1)
	raw, err := ledger.SignTx(n.g.ChainID, n.workers[0].key, 1, &ledger.TransferTx{To: b.Self(), Amount: 500})
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, b.Submit(ctx, raw), "a peer submits only its own transactions")
	if n.host.Chain().Pending() != 0 {
		t.Fatal("the relayed transaction was queued")
	}
	// A peer whose identity is not ed25519 has no account to send from.
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	str, err := p2p.NewTransport(secp, []string{"/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer str.Close()
	if _, err := str.Connect(ctx, n.agg.tr.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	s, err := str.Open(ctx, n.agg.tr.ID(), ProtoLedgerTx)
	if err != nil {
		t.Fatal(err)
	}
	s.SetDeadline(time.Now().Add(10 * time.Second))
	s.Write(frameOf(kindLedgerTx, raw))
	var v ledgerTxReply
	var re *wire.RemoteError
	if err := wire.ReadJSON(s, kindLedgerTxReply, maxLedgerRequest, &v); !errors.As(err, &re) || !strings.Contains(re.Msg, "ledger accounts are ed25519") {
		t.Fatalf("secp256k1 peer: %v (%+v)", err, v)
	}
	s.Close()
	// The same bytes from their signer are fine.
	if err := n.client(t, 0).Submit(ctx, raw); err != nil {
		t.Fatal(err)
	}
	n.produce(t)
	wantAccount(t, b, b.Self(), 1500, 0, 0)
}

// TestLedgerRefusesMalformedAndOversize: bytes that are not a transaction
// are rejected as malformed; a frame declaring more than MaxLedgerTxBytes
// is refused from its header alone, before the host allocates or reads
// the body (the test never sends one); a tx of a wrong kind of message is
// refused.
func TestLedgerRefusesMalformedAndOversize(t *testing.T) {
	n := newLedgerNet(t, 1, LedgerHostOptions{})
	ctx := context.Background()
	c := n.client(t, 0)
	good, _ := ledger.SignTx(n.g.ChainID, n.workers[0].key, 1, &ledger.RegisterTx{Amount: 100})
	wrongChain, _ := ledger.SignTx("other-chain", n.workers[0].key, 1, &ledger.RegisterTx{Amount: 100})
	result, _ := ledger.SignTx(n.g.ChainID, n.workers[0].key, 1, &ledger.ResultTx{Round: 0})
	for _, tc := range []struct {
		name string
		raw  []byte
		code ledger.Code
		want string
	}{
		{"garbage", []byte("hello, ledger"), ledger.CodeMalformed, "malformed"},
		{"empty", nil, ledger.CodeMalformed, "malformed"},
		{"truncated", good[:len(good)-1], ledger.CodeMalformed, "malformed"},
		{"trailing byte", append(append([]byte(nil), good...), 0), ledger.CodeMalformed, "malformed"},
		{"other chain's signature", wrongChain, ledger.CodeBadSignature, ""},
		{"a worker's round result", result, ledger.CodeUnauthorized, ""},
	} {
		if err := c.Submit(ctx, tc.raw); err == nil {
			t.Errorf("%s: accepted", tc.name)
		} else {
			var te *ledger.TxError
			if !errors.As(err, &te) || te.Code != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
			}
		}
	}
	// Raw frames, written by hand.
	header := func(kind uint8, size uint32) []byte {
		b := []byte{wire.MsgMagic, kind, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[2:], size)
		return b
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"just over the limit", header(kindLedgerTx, MaxLedgerTxBytes+1), "exceeds"},
		{"4 GB", header(kindLedgerTx, 1<<32-1), "exceeds"},
		{"not a message", []byte("GET / HTTP/1.1\r\n"), "magic"},
		{"a query on the tx protocol", frameOf(kindLedgerQuery, []byte(`{"path":"totals"}`)), "want a transaction"},
	} {
		s, err := n.workers[0].tr.Open(ctx, n.agg.tr.ID(), ProtoLedgerTx)
		if err != nil {
			t.Fatal(err)
		}
		s.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := s.Write(tc.frame); err != nil {
			t.Fatal(err)
		}
		// The stream stays open for writing: the host must answer from
		// what it has.
		var v ledgerTxReply
		err = wire.ReadJSON(s, kindLedgerTxReply, maxLedgerRequest, &v)
		var re *wire.RemoteError
		if !errors.As(err, &re) || !strings.Contains(re.Msg, tc.want) {
			t.Errorf("%s: %v (%+v), want a refusal saying %q", tc.name, err, v, tc.want)
		}
		s.Close()
	}
	if n.host.Chain().Pending() != 0 {
		t.Fatal("something was queued")
	}
	if _, err := NewLedgerClient(ctx, n.workers[0].tr, n.agg.tr.ID(), n.workers[0].key, "cairn-other"); err == nil ||
		!strings.Contains(err.Error(), `not "cairn-other"`) {
		t.Fatalf("client for another chain: %v", err)
	}
	big := make([]byte, MaxLedgerTxBytes+1)
	if err := c.Submit(ctx, big); err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Fatalf("client sent an oversize transaction: %v", err)
	}
}

func frameOf(kind uint8, body []byte) []byte {
	var b bytes.Buffer
	wire.WriteMsg(&b, kind, body)
	return b.Bytes()
}

// TestLedgerReplayRefused: the same signed transaction twice is a replay,
// before and after the block that holds the first; so is an older nonce.
func TestLedgerReplayRefused(t *testing.T) {
	n := newLedgerNet(t, 2, LedgerHostOptions{})
	ctx := context.Background()
	a, b := n.client(t, 0), n.client(t, 1)
	raw, _ := ledger.SignTx(n.g.ChainID, n.workers[0].key, 1, &ledger.TransferTx{To: b.Self(), Amount: 10})
	if err := a.Submit(ctx, raw); err != nil {
		t.Fatal(err)
	}
	wantTxError(t, a.Submit(ctx, raw), ledger.CodeBadNonce, "")
	n.produce(t)
	wantTxError(t, a.Submit(ctx, raw), ledger.CodeBadNonce, "")
	n.produce(t)
	wantAccount(t, b, b.Self(), 1010, 0, 0)
}

// TestLedgerClientNonceCatchesUp: a client whose tracker fell behind the
// chain (the same key used by another process, or a restart) catches up
// on its first replay and its transaction goes through; a new client
// starts from the chain's nonce.
func TestLedgerClientNonceCatchesUp(t *testing.T) {
	n := newLedgerNet(t, 1, LedgerHostOptions{})
	ctx := context.Background()
	first, second := n.client(t, 0), n.client(t, 0)
	for i := 0; i < 3; i++ {
		if err := first.Transfer(ctx, n.agg.acct(), 1); err != nil {
			t.Fatal(err)
		}
	}
	n.produce(t)
	if err := second.Transfer(ctx, n.agg.acct(), 1); err != nil {
		t.Fatalf("stale tracker: %v", err)
	}
	if second.Nonce() != 4 {
		t.Fatalf("second client at nonce %d, want 4", second.Nonce())
	}
	n.produce(t)
	if third := n.client(t, 0); third.Nonce() != 4 {
		t.Fatalf("new client starts at nonce %d, want the chain's 4", third.Nonce())
	}
	wantAccount(t, first, first.Self(), 996, 0, 4)
}

// TestLedgerFloodRefused: past its burst a peer's transactions and
// queries are refused as rate limited, before the host reads them, while
// another peer is served; the budget comes back with time.
func TestLedgerFloodRefused(t *testing.T) {
	n := newLedgerNet(t, 2, LedgerHostOptions{TxRate: 2, TxBurst: 3, QueryRate: 5, QueryBurst: 4})
	ctx := context.Background()
	a, b := n.client(t, 0), n.client(t, 1) // 2 queries each: chain and account
	var ok, limited int
	for i := 0; i < 10; i++ {
		err := a.Transfer(ctx, b.Self(), 1)
		var lr *LedgerRefusal
		switch {
		case err == nil:
			ok++
		case errors.As(err, &lr) && strings.Contains(lr.Reason, "rate limited: more than 2 transactions per second"):
			limited++
		default:
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	if ok != 3 || limited != 7 || a.Nonce() != 3 {
		t.Fatalf("%d queued and %d rate limited, nonce %d; want 3, 7 and 3", ok, limited, a.Nonce())
	}
	if _, err := a.Totals(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Totals(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := a.Totals(ctx)
	wantRefusal(t, err, "rate limited: more than 5 queries per second")
	// b is not affected by a's flood.
	if err := b.Transfer(ctx, a.Self(), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Totals(ctx); err != nil {
		t.Fatal(err)
	}
	n.clock.Add(time.Second) // 2 more transactions, 5 more queries
	for i := 0; i < 2; i++ {
		if err := a.Transfer(ctx, b.Self(), 1); err != nil {
			t.Fatalf("after a second: %v", err)
		}
	}
	wantRefusal(t, a.Transfer(ctx, b.Self(), 1), "rate limited")
	if _, err := a.Totals(ctx); err != nil {
		t.Fatal(err)
	}
	if got := n.host.Chain().Pending(); got != 6 {
		t.Fatalf("%d transactions queued, want 6", got)
	}
}

// TestLedgerMempoolFull: a full mempool is its own answer, which the
// client returns as ledger.ErrMempoolFull, and the nonce stays free.
func TestLedgerMempoolFull(t *testing.T) {
	n := newLedgerNet(t, 1, LedgerHostOptions{MaxPool: 2})
	ctx := context.Background()
	c := n.client(t, 0)
	for i := 0; i < 2; i++ {
		if err := c.Transfer(ctx, n.agg.acct(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Transfer(ctx, n.agg.acct(), 1); !errors.Is(err, ledger.ErrMempoolFull) || c.Nonce() != 2 {
		t.Fatalf("third transaction: %v, nonce %d", err, c.Nonce())
	}
	n.produce(t)
	if err := c.Transfer(ctx, n.agg.acct(), 1); err != nil || c.Nonce() != 3 {
		t.Fatalf("after a block: %v, nonce %d", err, c.Nonce())
	}
}

// TestLedgerRoundPaysWorker: a whole round over the network: the worker
// stakes and commits; the host's result accepts the contribution and its
// settlement pays the emission to the worker's balance. The host's own
// transactions continue their nonces after a restart.
func TestLedgerRoundPaysWorker(t *testing.T) {
	n := newLedgerNet(t, 1, LedgerHostOptions{})
	ctx := context.Background()
	c := n.client(t, 0)
	if err := c.Register(ctx, 100); err != nil {
		t.Fatal(err)
	}
	delta := sha256.Sum256([]byte("delta"))
	end := sha256.Sum256([]byte("end state"))
	if err := c.Commit(ctx, ledger.CommitTx{Round: 0, DeltaHash: delta, Tokens: 4096, EndState: end, Fresh: true, Kernel: "avx2"}); err != nil {
		t.Fatal(err)
	}
	n.produce(t)
	res := &ledger.ResultTx{Round: 0, ModelHash: sha256.Sum256([]byte("theta1")),
		Accepted: []ledger.Contribution{{Worker: c.Self(), DeltaHash: delta, Tokens: 4096}}}
	if _, err := n.host.SubmitResult(res); err != nil {
		t.Fatal(err)
	}
	// A result for a round that is not open is refused at once.
	_, err := n.host.SubmitResult(&ledger.ResultTx{Round: 5})
	wantTxError(t, err, ledger.CodeRoundNotOpen, "")
	n.produce(t)

	// Restart the host: its next transaction continues from nonce 1.
	if err := n.host.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Totals(ctx); err == nil {
		t.Fatal("a closed host answered")
	}
	if _, err := OpenLedgerHost(LedgerHostOptions{DataDir: n.dir, Key: n.workers[0].key}); err == nil || !strings.Contains(err.Error(), "not a genesis authority") {
		t.Fatalf("a worker's key hosts the chain: %v", err)
	}
	host, err := OpenLedgerHost(LedgerHostOptions{DataDir: n.dir, Key: n.agg.key, Now: n.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	host.Serve(n.agg.tr)
	n.host = host
	if _, err := host.SubmitSettle(&ledger.SettleTx{Round: 0, Verdicts: []ledger.Verdict{{Worker: c.Self(), Outcome: ledger.Passed}}}); err != nil {
		t.Fatal(err)
	}
	n.produce(t)
	wantAccount(t, c, c.Self(), 900+1000, 100, 2)
	wantAccount(t, c, n.agg.acct(), 0, 0, 2)
	tot, err := c.Totals(ctx)
	if err != nil || tot.Minted != 1000 || tot.NextSettle != 1 || tot.OpenRound != 1 {
		t.Fatalf("totals %+v %v", tot, err)
	}
}

// TestLedgerTick: Tick makes a block only with transactions queued and
// BlockInterval after the last block.
func TestLedgerTick(t *testing.T) {
	n := newLedgerNet(t, 1, LedgerHostOptions{BlockInterval: time.Second})
	ctx := context.Background()
	c := n.client(t, 0)
	t0 := time.Unix(1_767_225_600, 0)
	tick := func(at time.Time, want bool) {
		t.Helper()
		b, err := n.host.Tick(at)
		if err != nil || (b != nil) != want {
			t.Fatalf("tick at %v: block %v, err %v; want a block: %v", at.Sub(t0), b != nil, err, want)
		}
	}
	tick(t0, false) // nothing queued
	c.Transfer(ctx, n.agg.acct(), 1)
	tick(t0, true) // the first block: the genesis is long past
	c.Transfer(ctx, n.agg.acct(), 1)
	tick(t0.Add(999*time.Millisecond), false)
	tick(t0.Add(time.Second), true)
	tick(t0.Add(5*time.Second), false)
}

// TestRunGenesis: the chain ID comes from the run; accounts are sorted;
// repeats and invalid rules are refused; the default economics deter
// cheating with a margin of 5 at a 10% verification rate.
func TestRunGenesis(t *testing.T) {
	k := func(b byte) ledger.PubKey { return ledger.PubKey{b} }
	g, err := RunGenesis(`{"seed":1}`, k(9), []ledger.GenesisAccount{{Key: k(3), Balance: 5}, {Key: k(1), Stake: 200}}, DefaultLedgerParams())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(`{"seed":1}`))
	if g.ChainID != "cairn-"+hex.EncodeToString(sum[:4]) {
		t.Fatalf("chain ID %q", g.ChainID)
	}
	if g.ChainID == LedgerChainID(`{"seed":2}`) {
		t.Fatal("two runs share a chain ID")
	}
	if g.Accounts[0].Key != k(1) || g.Accounts[1].Key != k(3) || g.Authorities[0] != k(9) || g.EmissionPerRound != 1_000_000 {
		t.Fatalf("genesis %+v", g)
	}
	if d := DefaultLedgerParams().Deterrence(0.1); d < 4.999 || d > 5.001 {
		t.Fatalf("default deterrence at p=10%%: %v, want 5", d)
	}
	if d := (LedgerParams{MinStake: 10, SlashBasisPoints: 10000, EmissionPerRound: 1}).Deterrence(0.1); d != 1 {
		t.Fatalf("p·f·S/R = 0.1·1·10/1, got %v", d)
	}
	bad := DefaultLedgerParams()
	bad.UnbondingRounds = bad.SettlementLag
	for _, tc := range []struct {
		name  string
		run   string
		accts []ledger.GenesisAccount
		p     LedgerParams
		want  string
	}{
		{"empty run", "", nil, DefaultLedgerParams(), "empty run"},
		{"repeat", "r", []ledger.GenesisAccount{{Key: k(1)}, {Key: k(1)}}, DefaultLedgerParams(), "listed twice"},
		{"unbonding", "r", nil, bad, "must exceed the settlement lag"},
		{"zero lag", "r", nil, LedgerParams{UnbondingRounds: 2}, "settlement lag"},
		{"overflow", "r", []ledger.GenesisAccount{{Key: k(1), Balance: 1 << 63}, {Key: k(2), Balance: 1 << 63}}, DefaultLedgerParams(), ""},
	} {
		if _, err := RunGenesis(tc.run, k(9), tc.accts, tc.p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestPeerRate: buckets refill at the rate up to the burst, a clock that
// goes back grants nothing, and the map stays bounded, evicting refilled
// buckets first and then the least recently used.
func TestPeerRate(t *testing.T) {
	t0 := time.Unix(100, 0)
	r := newPeerRate(2, 3, 3)
	take := func(p string, at time.Time, want int) {
		t.Helper()
		got := 0
		for i := 0; i < 10; i++ {
			if r.allow(p, at) {
				got++
			}
		}
		if got != want {
			t.Fatalf("%s at %v: %d allowed, want %d", p, at.Sub(t0), got, want)
		}
	}
	take("a", t0, 3)
	take("a", t0.Add(-time.Hour), 0)
	take("a", t0.Add(500*time.Millisecond), 1)
	take("a", t0.Add(time.Hour), 3)
	take("b", t0.Add(time.Hour), 3)
	take("c", t0.Add(time.Hour), 3)
	// Full: d evicts the least recently used (a, b and c are all empty).
	r.allow("a", t0.Add(time.Hour+time.Second)) // a refills 2 and spends 1
	take("d", t0.Add(time.Hour+time.Second), 3)
	if r.tracked() != 3 {
		t.Fatalf("%d peers tracked, want 3", r.tracked())
	}
	take("a", t0.Add(time.Hour+time.Second), 1) // a kept its bucket
	// After an idle spell every bucket is full: a new peer drops them all.
	take("e", t0.Add(2*time.Hour), 3)
	if r.tracked() != 1 {
		t.Fatalf("%d peers tracked after eviction of refilled buckets, want 1", r.tracked())
	}
	for i := 0; i < 1000; i++ {
		r.allow(string(rune('A'+i)), t0.Add(2*time.Hour))
	}
	if r.tracked() != 3 {
		t.Fatalf("%d peers tracked, want at most 3", r.tracked())
	}
}

// fuzzStream is a NetStream over fixed input that records what is
// written and whether it was reset.
type fuzzStream struct {
	in    *bytes.Reader
	out   bytes.Buffer
	reset bool
}

func (s *fuzzStream) Read(p []byte) (int, error)  { return s.in.Read(p) }
func (s *fuzzStream) Write(p []byte) (int, error) { return s.out.Write(p) }
func (s *fuzzStream) Close() error                { return nil }
func (s *fuzzStream) CloseWrite() error           { return nil }
func (s *fuzzStream) Reset() error                { s.reset = true; return nil }
func (s *fuzzStream) SetDeadline(time.Time) error { return nil }

// FuzzLedgerHandlers feeds arbitrary bytes to the transaction and query
// handlers as a peer's stream: the host never panics, answers every
// request with a reply or a refusal, and queues a transaction only when
// the bytes were one signed by the peer itself.
func FuzzLedgerHandlers(f *testing.F) {
	peerKey := ed25519.NewKeyFromSeed(make([]byte, 32))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	from := p2p.PeerIDOf(ledger.KeyOf(peerKey))
	aggKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	g, err := RunGenesis("fuzz", ledger.KeyOf(aggKey), []ledger.GenesisAccount{{Key: ledger.KeyOf(peerKey), Balance: 1 << 40}}, testLedgerParams)
	if err != nil {
		f.Fatal(err)
	}
	h, err := OpenLedgerHost(LedgerHostOptions{DataDir: f.TempDir(), Genesis: g, Key: aggKey, TxRate: 1e9, TxBurst: 1 << 30, QueryRate: 1e9, QueryBurst: 1 << 30})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	own, _ := ledger.SignTx(g.ChainID, peerKey, 1, &ledger.TransferTx{To: ledger.KeyOf(aggKey), Amount: 1})
	theirs, _ := ledger.SignTx(g.ChainID, other, 1, &ledger.WithdrawTx{})
	f.Add(false, frameOf(kindLedgerTx, own))
	f.Add(false, frameOf(kindLedgerTx, theirs))
	f.Add(false, frameOf(kindLedgerTx, own[:40]))
	f.Add(false, []byte{wire.MsgMagic, kindLedgerTx, 0xff, 0xff, 0xff, 0xff})
	f.Add(true, frameOf(kindLedgerQuery, []byte(`{"path":"totals"}`)))
	f.Add(true, frameOf(kindLedgerQuery, []byte(`{"path":"account","data":"AAAA"}`)))
	f.Add(true, frameOf(kindLedgerQuery, []byte(`{"path":"chain"}`)))
	f.Fuzz(func(t *testing.T, query bool, in []byte) {
		s := &fuzzStream{in: bytes.NewReader(in)}
		before := h.Chain().Pending()
		if query {
			h.serve(s, from, h.qRate, "queries", h.serveQuery)
		} else {
			h.serve(s, from, h.txRate, "transactions", h.serveTx)
		}
		queued := h.Chain().Pending() > before
		if s.reset {
			t.Fatalf("stream reset: every request gets an answer (%d bytes written)", s.out.Len())
		}
		if query {
			var ans json.RawMessage
			if err := wire.ReadJSON(&s.out, kindLedgerAnswer, MaxLedgerAnswerBytes, &ans); err != nil {
				var re *wire.RemoteError
				if !errors.As(err, &re) {
					t.Fatalf("query answered with %v", err)
				}
			}
			if queued {
				t.Fatal("a query queued a transaction")
			}
			return
		}
		var reply ledgerTxReply
		err := wire.ReadJSON(&s.out, kindLedgerTxReply, maxLedgerRequest, &reply)
		var re *wire.RemoteError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("transaction answered with %v", err)
		}
		if queued != (err == nil && reply.Status == txOK) {
			t.Fatalf("queued %v, reply %+v %v", queued, reply, err)
		}
		if queued {
			_, raw, _ := wire.ReadMsg(bytes.NewReader(in), MaxLedgerTxBytes)
			tx, err := ledger.DecodeTx(raw)
			if err != nil || tx.Sender != ledger.KeyOf(peerKey) || !tx.VerifySig(g.ChainID) {
				t.Fatalf("queued a transaction that is not the peer's own: %v", err)
			}
		}
	})
}
