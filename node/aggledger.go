package node

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/store"
)

// LedgerRunName names a run for its chain's ID (LedgerChainID): the
// aggregator's peer ID and the run configuration's JSON, one line each.
// Two runs of one configuration under two aggregators get distinct
// chains, so a transaction signed for one is invalid on the other. Only
// the chain's creation uses it: a resumed chain keeps the ID in its
// genesis.
func LedgerRunName(cfg diloco.RunConfig, aggregator string) string {
	b, _ := json.Marshal(cfg) // a validated config always encodes
	return "cairn run\n" + aggregator + "\n" + string(b)
}

// roundCommit is a commit the aggregator recorded (queued on the chain)
// with a contribution to the current round.
type roundCommit struct {
	raw      []byte // the worker's signed CommitTx
	txHash   ledger.Hash
	worker   ledger.PubKey
	delta    ledger.Hash
	tokens   uint64
	payload  []byte        // what was submitted, while the validator may need it
	private  bool          // the commit declares private data
	accepted bool          // the state machine took the contribution
	refused  string        // why it did not, or why it was dropped later
	compute  time.Duration // the training time the worker reported
	loss     float32       // the training loss the worker reported
}

// aggLedger is the aggregator's side of the run's chain: it hosts the
// chain, admits identities by stake, checks the commit that comes with
// every contribution, records round results and settlements (each in a
// block of its own, made at once), and tells the node when a round may
// close (the round SettlementLag before it is settled).
type aggLedger struct {
	host    *LedgerHost
	info    LedgerInfo
	path    string
	settler Settler
	log     *slog.Logger
	met     *metrics.Registry
	private bool // the run takes private contributions

	// open, settled and height are the chain's open round, the next
	// round to settle and its height as of the last block the node made
	// itself (only the node's own transactions move the first two).
	open, settled, height atomic.Uint64

	drive        sync.Mutex // serialises results, settlements and their blocks
	resultQueued uint64     // round+1 of a result queued and not yet in a block
	settleQueued uint64     // round+1 of a settlement queued and not yet in a block

	// The clock loop's (one goroutine).
	lastAsk, lastTickErr time.Time

	// stakes caches the committed accounts admission read at height
	// stakesAt: a poll need not wait for a block being written.
	stakesMu sync.Mutex
	stakes   map[ledger.PubKey]ledger.Account
	stakesAt uint64
}

// maxStakeCache bounds the admission cache; a full cache starts afresh.
const maxStakeCache = 4096

// account is the committed account k, from the cache while no block has
// been made since it was read.
func (l *aggLedger) account(k ledger.PubKey) (ledger.Account, error) {
	h := l.height.Load()
	l.stakesMu.Lock()
	if l.stakes == nil || l.stakesAt != h || len(l.stakes) >= maxStakeCache {
		l.stakes, l.stakesAt = map[ledger.PubKey]ledger.Account{}, h
	}
	a, ok := l.stakes[k]
	l.stakesMu.Unlock()
	if ok {
		return a, nil
	}
	a, err := l.host.be.Account(k)
	if err != nil {
		return a, err
	}
	if l.height.Load() == h { // not read across a block
		l.stakesMu.Lock()
		if l.stakesAt == h {
			l.stakes[k] = a
		}
		l.stakesMu.Unlock()
	}
	return a, nil
}

// openAggLedger opens the chain in o.DataDir, creating it with the run's
// genesis (LedgerRunName of cfg and the aggregator's peer ID self, the
// aggregator's key the authority, o.Accounts funded, o.Ledger's rules or
// DefaultLedgerParams) when there is none.
func openAggLedger(o AggregatorOptions, key ed25519.PrivateKey, self string, cfg diloco.RunConfig) (*aggLedger, error) {
	if o.ChainRPC != "" {
		host, err := OpenLedgerHost(LedgerHostOptions{ChainRPC: o.ChainRPC, Key: key, BlockInterval: o.BlockInterval, Log: o.Log})
		if err != nil {
			return nil, fmt.Errorf("the run's ledger: %w", err)
		}
		l := &aggLedger{host: host, info: host.Info(), path: "the chain at " + o.ChainRPC, settler: o.Settler, log: o.Log, met: o.Metrics, private: cfg.Private != nil}
		if l.settler == nil {
			l.settler = SettleUnchecked{}
		}
		if err := l.refresh(); err != nil {
			host.Close()
			return nil, err
		}
		return l, nil
	}
	if o.DataDir == "" {
		return nil, errors.New("the aggregator needs a data directory for the run's ledger")
	}
	path := filepath.Join(o.DataDir, store.FileName)
	var g *ledger.Genesis
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		p := DefaultLedgerParams()
		if o.Ledger != nil {
			p = *o.Ledger
		}
		if g, err = RunGenesis(LedgerRunName(cfg, self), ledger.KeyOf(key), o.Accounts, p); err != nil {
			return nil, err
		}
	}
	host, err := OpenLedgerHost(LedgerHostOptions{DataDir: o.DataDir, Genesis: g, Key: key, BlockInterval: o.BlockInterval, Log: o.Log})
	if err != nil {
		return nil, fmt.Errorf("the run's ledger: %w", err)
	}
	l := &aggLedger{host: host, info: host.Info(), path: path, settler: o.Settler, log: o.Log, met: o.Metrics, private: cfg.Private != nil}
	if l.settler == nil {
		l.settler = SettleUnchecked{}
	}
	if g == nil && (o.Ledger != nil || len(o.Accounts) > 0) {
		l.log.Warn("resuming the run's ledger: its own rules and accounts apply, not these", "ledger", path)
	}
	if err := l.refresh(); err != nil {
		host.Close()
		return nil, err
	}
	return l, nil
}

// refresh reads the chain's counters after a block.
func (l *aggLedger) refresh() error {
	t, err := l.host.Totals()
	if err != nil {
		return fmt.Errorf("the run's ledger: %v", err)
	}
	l.open.Store(t.OpenRound)
	l.settled.Store(t.NextSettle)
	l.height.Store(t.Tip.Height)
	l.met.Gauge("cairn_ledger_height", "blocks in the run's ledger").Set(float64(t.Tip.Height))
	l.met.Gauge("cairn_ledger_minted", "units paid to contributors so far").Set(float64(t.Minted))
	l.met.Gauge("cairn_ledger_settled_rounds", "rounds settled on the ledger").Set(float64(t.NextSettle))
	return nil
}

// admit is the run's admission by stake: the identity must have an
// ed25519 key (a ledger account) and, unless the run is open (minimum
// stake 0), a committed stake of at least the minimum.
func (l *aggLedger) admit(id string) error {
	k, err := p2p.AccountOf(id)
	if err != nil {
		return fmt.Errorf("%v: taking part needs a ledger account, which needs an ed25519 identity", err)
	}
	minStake := l.info.MinStake
	if minStake == 0 {
		return nil
	}
	a, err := l.account(k)
	if err != nil {
		return err
	}
	if a.Stake >= minStake {
		return nil
	}
	return fmt.Errorf("%s has a stake of %d units, below this run's minimum of %d: it needs %d more bonded "+
		"(a worker bonds it by itself when it joins if its balance allows; this one has a balance of %d), "+
		"so ask the run's organiser to fund it (cairn node aggregate --stake %s=%d) or transfer it the balance",
		id, a.Stake, minStake, minStake-a.Stake, a.Balance, id, minStake)
}

// mayClose reports whether the chain lets DiLoCo round r close: round
// r-SettlementLag must be settled first.
func (l *aggLedger) mayClose(r int) bool {
	lag := l.info.SettlementLag
	return uint64(r) < lag || l.settled.Load() > uint64(r)-lag
}

// checkCommit checks the commit that comes with a contribution, before
// its payload is read: a canonical commit transaction of at most
// MaxLedgerTxBytes, signed for this chain by the identity the stream
// comes from, for the contribution's round and tokens. The payload's
// digest and the chain's rules (nonce, stake, continuity of the local
// state, one commit per round) are checked later.
func (l *aggLedger) checkCommit(from string, req *submitRequest) (*roundCommit, error) {
	if len(req.Commit) == 0 {
		return nil, errors.New("the contribution carries no ledger commit: a worker signs a commit to each contribution (protocol version 3)")
	}
	if len(req.Commit) > MaxLedgerTxBytes {
		return nil, fmt.Errorf("the contribution's commit is %d bytes, more than the limit of %d", len(req.Commit), MaxLedgerTxBytes)
	}
	tx, err := ledger.DecodeTx(req.Commit)
	if err != nil {
		return nil, fmt.Errorf("the contribution's commit: %v", err)
	}
	body, ok := tx.Body.(*ledger.CommitTx)
	if !ok {
		return nil, fmt.Errorf("the transaction sent with the contribution is a %s, not a commit", tx.Body.Kind())
	}
	sender, err := p2p.AccountOf(from)
	if err != nil {
		return nil, err
	}
	if tx.Sender != sender {
		return nil, fmt.Errorf("the commit is signed by %s, but the contribution comes from %s: a worker commits only to its own contribution",
			p2p.PeerIDOf(tx.Sender), from)
	}
	if !tx.VerifySig(l.info.ChainID) {
		return nil, fmt.Errorf("the commit's signature is not valid on this run's chain %s", l.info.ChainID)
	}
	if req.Round < 0 || body.Round != uint64(req.Round) {
		return nil, fmt.Errorf("the commit is for round %d, the contribution for round %d", body.Round, req.Round)
	}
	if req.Tokens < 0 || body.Tokens != uint64(req.Tokens) {
		return nil, fmt.Errorf("the commit claims %d tokens, the contribution %d", body.Tokens, req.Tokens)
	}
	if body.Private && !l.private {
		return nil, errors.New("the commit declares a contribution trained on private data, and this run takes none (its organiser did not enable private contributions)")
	}
	return &roundCommit{raw: req.Commit, txHash: sha256.Sum256(req.Commit), worker: sender, delta: body.DeltaHash, tokens: body.Tokens, private: body.Private}, nil
}

// queueCommit checks a commit against the chain's pending state and
// queues it for the next block; the error says, for a person, why the
// ledger refused it.
func (l *aggLedger) queueCommit(c *roundCommit) error {
	err := l.host.submitPeer(c.raw)
	var te *ledger.TxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		hint := ""
		switch te.Code {
		case ledger.CodeBadNonce:
			hint = " (sign each transaction with a nonce above the account's last)"
		case ledger.CodeStateMismatch:
			hint = " (a commit starts from the end state of the worker's last recorded commit, or is a fresh start from the zero state)"
		case ledger.CodeNotStaked:
			hint = " (bond the run's minimum stake first)"
		}
		return fmt.Errorf("the ledger refused the commit (%s): %s%s", te.Code, te.Reason, hint)
	case errors.Is(err, ledger.ErrMempoolFull):
		return errors.New("the ledger's mempool is full; try again shortly")
	}
	return fmt.Errorf("the ledger: %v", err)
}

// tick is the ledger's part of the clock loop: a block of the workers'
// queued transactions every block interval, and another try at settling
// a round that waits for its Settler.
func (l *aggLedger) tick(now time.Time) {
	if b, err := l.host.Tick(now); err != nil {
		if now.Sub(l.lastTickErr) > 5*time.Second {
			l.lastTickErr = now
			l.log.Error("the ledger cannot make a block; its transactions stay queued", "err", err)
		}
	} else if b != nil {
		l.height.Store(b.Header.Height)
		l.met.Gauge("cairn_ledger_height", "blocks in the run's ledger").Set(float64(b.Header.Height))
	}
	if l.settled.Load() < l.open.Load() && now.Sub(l.lastAsk) >= l.host.interval {
		l.lastAsk = now
		if err := l.settle(time.Now); err != nil {
			l.log.Warn("settlement deferred", "err", err)
		}
	}
}

// close flushes what is queued into a last block and closes the chain.
func (l *aggLedger) close() error {
	l.drive.Lock()
	defer l.drive.Unlock()
	if l.host.be.Pending() > 0 {
		l.host.Produce(time.Now())
	}
	return l.host.Close()
}
