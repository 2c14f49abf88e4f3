package node

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	accepted bool   // the state machine took the contribution
	refused  string // why it did not, or why it was dropped later
}

// savedResult is a closed round's result as the aggregator saves it with
// the round's state (meta "ledger_result"): the ResultTx's body and the
// round's recorded commits, so that after a crash between the save and
// the result's block the aggregator records the result on restart.
type savedResult struct {
	Round     uint64                `json:"round"`
	ModelHash ledger.Hash           `json:"model_hash"`
	Accepted  []ledger.Contribution `json:"accepted"`
	Rejected  []ledger.Rejection    `json:"rejected"`
	Commits   [][]byte              `json:"commits"` // signed commits of the round, in arrival order
}

// maxSavedResult bounds the saved result's JSON: MaxContributions
// commits of MaxLedgerTxBytes in base64, and the lists.
const maxSavedResult = 2*ledger.MaxContributions*MaxLedgerTxBytes + 1<<20

func (s *savedResult) tx() *ledger.ResultTx {
	return &ledger.ResultTx{Round: s.Round, ModelHash: s.ModelHash, Accepted: s.Accepted, Rejected: s.Rejected}
}

// decodeSavedResult reads a saved result (from the aggregator's state
// file: trusted to be ours, but checked for size and shape). The ledger
// judges the rest when the result is submitted.
func decodeSavedResult(b []byte) (*savedResult, error) {
	if len(b) > maxSavedResult {
		return nil, fmt.Errorf("saved ledger result of %d bytes exceeds %d", len(b), maxSavedResult)
	}
	var s savedResult
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("saved ledger result: %v", err)
	}
	if len(s.Commits) > ledger.MaxContributions || len(s.Accepted) > ledger.MaxContributions || len(s.Rejected) > ledger.MaxContributions {
		return nil, fmt.Errorf("saved ledger result holds %d commits, %d accepted and %d rejected contributions, at most %d each",
			len(s.Commits), len(s.Accepted), len(s.Rejected), ledger.MaxContributions)
	}
	for i, c := range s.Commits {
		if len(c) == 0 || len(c) > MaxLedgerTxBytes {
			return nil, fmt.Errorf("saved ledger result: commit %d of %d bytes", i, len(c))
		}
	}
	return &s, nil
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
	a, err := l.host.Chain().Account(k)
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
	l := &aggLedger{host: host, info: host.Info(), path: path, settler: o.Settler, log: o.Log, met: o.Metrics}
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
	return &roundCommit{raw: req.Commit, txHash: sha256.Sum256(req.Commit), worker: sender, delta: body.DeltaHash, tokens: body.Tokens}, nil
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

// resultOf is the ledger's record of a closed round: the contributions
// the round aggregated, each with its recorded commit, and the recorded
// commits it did not aggregate with the reason; both sorted by worker as
// the ledger requires. It also lists the round's commits, in arrival
// order, to submit again after a crash. A contributor without a recorded
// commit cannot happen (a contribution reaches the state machine only
// after its commit); it would be left out and is returned in missing.
func resultOf(res *diloco.RoundResult, commits map[string]*roundCommit, order []string) (s *savedResult, missing []string) {
	s = &savedResult{Round: uint64(res.Round), ModelHash: ledger.Hash(res.Hash), Accepted: []ledger.Contribution{}, Rejected: []ledger.Rejection{}}
	aggregated := map[string]bool{}
	for _, id := range res.Contributors {
		aggregated[id] = true
		c := commits[id]
		if c == nil {
			missing = append(missing, id)
			continue
		}
		s.Accepted = append(s.Accepted, ledger.Contribution{Worker: c.worker, DeltaHash: c.delta, Tokens: c.tokens})
	}
	for _, id := range order {
		c := commits[id]
		s.Commits = append(s.Commits, c.raw)
		if !aggregated[id] {
			why := c.refused
			if why == "" {
				why = "not aggregated"
			}
			s.Rejected = append(s.Rejected, ledger.Rejection{Worker: c.worker, Reason: ledgerReason(why)})
		}
	}
	slices.SortFunc(s.Accepted, func(a, b ledger.Contribution) int { return bytes.Compare(a.Worker[:], b.Worker[:]) })
	slices.SortFunc(s.Rejected, func(a, b ledger.Rejection) int { return bytes.Compare(a.Worker[:], b.Worker[:]) })
	return s, missing
}

// ledgerReason makes s a reason the ledger accepts: printable ASCII, 1 to
// ledger.MaxReasonBytes bytes.
func ledgerReason(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > ledger.MaxReasonBytes {
		b = b[:ledger.MaxReasonBytes]
	}
	if len(b) == 0 {
		return "refused"
	}
	return string(b)
}

// record puts a closed round's result on the chain, in a block made at
// once: the round's commits are queued again first (those already
// queued or in a block are refused, which is fine: after a crash they
// were lost with the mempool), then the result. If the ledger refuses
// the result because a commit it names is not on the chain (dropped from
// the mempool: its worker's stake was slashed meanwhile), the queue is
// flushed into a block and the result keeps only what the chain holds;
// the contributions left out were aggregated but are not paid. Calling
// it again after an error retries; after success it does nothing.
func (l *aggLedger) record(s *savedResult, now func() time.Time) error {
	l.drive.Lock()
	defer l.drive.Unlock()
	if open := l.open.Load(); open > s.Round {
		return nil
	} else if open < s.Round {
		return fmt.Errorf("the ledger has round %d open, behind the result of round %d", open, s.Round)
	}
	if l.resultQueued != s.Round+1 {
		for _, raw := range s.Commits {
			l.host.Chain().Submit(raw) // a refusal: already queued or recorded
		}
		tx := s.tx()
		_, err := l.host.SubmitResult(tx)
		var te *ledger.TxError
		if errors.As(err, &te) && (te.Code == ledger.CodeNoCommit || te.Code == ledger.CodeInvalid) {
			if _, err := l.host.Produce(now()); err != nil {
				return err
			}
			var dropped []string
			if tx, dropped, err = l.onChain(tx); err != nil {
				return err
			}
			l.log.Warn("contributions aggregated without their commit on the ledger: they are not paid", "round", s.Round, "workers", dropped)
			_, err = l.host.SubmitResult(tx)
		}
		if err != nil {
			return fmt.Errorf("the ledger refused the result of round %d: %v", s.Round, err)
		}
		l.resultQueued = s.Round + 1
	}
	if _, err := l.host.Produce(now()); err != nil {
		return err
	}
	if err := l.refresh(); err != nil {
		return err
	}
	l.resultQueued = 0
	if l.open.Load() <= s.Round {
		return fmt.Errorf("the result of round %d was queued but is not in the ledger's block", s.Round)
	}
	l.log.Debug("round result recorded", "round", s.Round, "accepted", len(s.Accepted), "rejected", len(s.Rejected), "height", l.height.Load())
	return nil
}

// onChain keeps of a result the contributions whose commit the chain
// holds (matching delta hash and tokens, each delta once) and returns the
// workers left out.
func (l *aggLedger) onChain(tx *ledger.ResultTx) (*ledger.ResultTx, []string, error) {
	ri, err := l.host.Round(tx.Round)
	if err != nil {
		return nil, nil, err
	}
	have := map[ledger.PubKey]ledger.CommitRecord{}
	for _, c := range ri.Commits {
		have[c.Worker] = c
	}
	out := &ledger.ResultTx{Round: tx.Round, ModelHash: tx.ModelHash}
	var dropped []string
	seen := map[ledger.Hash]bool{}
	for _, c := range tx.Accepted {
		if rec, ok := have[c.Worker]; ok && rec.DeltaHash == c.DeltaHash && rec.Tokens == c.Tokens && !seen[c.DeltaHash] {
			seen[c.DeltaHash] = true
			out.Accepted = append(out.Accepted, c)
		} else {
			dropped = append(dropped, p2p.PeerIDOf(c.Worker))
		}
	}
	for _, r := range tx.Rejected {
		if _, ok := have[r.Worker]; ok {
			out.Rejected = append(out.Rejected, r)
		}
	}
	return out, dropped, nil
}

// settle settles the closed rounds the Settler has verdicts for, oldest
// first, each in a block made at once; it stops at the first round the
// Settler is not ready with. Errors (the Settler's, the ledger refusing
// its verdicts, a failed write) leave the round for a later call.
func (l *aggLedger) settle(now func() time.Time) error {
	l.drive.Lock()
	defer l.drive.Unlock()
	for l.settled.Load() < l.open.Load() {
		r := l.settled.Load()
		if l.settleQueued != r+1 {
			ri, err := l.host.Round(r)
			if err != nil {
				return err
			}
			if ri.Result == nil {
				return fmt.Errorf("the ledger's closed round %d has no result", r)
			}
			b, _, err := l.host.Chain().Block(ri.Result.Height)
			if err != nil {
				return err
			}
			vs, ready, err := l.settler.Settle(*ri.Result, b)
			if err != nil {
				return fmt.Errorf("settling round %d: %v", r, err)
			}
			if !ready {
				return nil
			}
			if _, err := l.host.SubmitSettle(&ledger.SettleTx{Round: r, Verdicts: vs}); err != nil {
				return fmt.Errorf("the ledger refused the settlement of round %d: %v", r, err)
			}
			l.settleQueued = r + 1
		}
		if _, err := l.host.Produce(now()); err != nil {
			return err
		}
		if err := l.refresh(); err != nil {
			return err
		}
		l.settleQueued = 0
		if l.settled.Load() <= r {
			return fmt.Errorf("the settlement of round %d was queued but is not in the ledger's block", r)
		}
		l.log.Debug("round settled", "round", r, "height", l.height.Load())
	}
	return nil
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

// sync brings the chain level with the DiLoCo round the run resumes at:
// a chain whose open round is the run's is in step; one a round behind,
// when the saved state holds that round's result, missed the result's
// block (the aggregator stopped between saving the round and recording
// it), which is recorded now; a new chain for a run that started before
// it records the run's earlier rounds as empty. Anything else is a
// ledger of another run, an error.
func (l *aggLedger) sync(round int, saved *savedResult, now func() time.Time) error {
	r, open := uint64(round), l.open.Load()
	switch {
	case open == r:
		return nil
	case open+1 == r && saved != nil && saved.Round == open:
		l.log.Warn("recording the result of the last round, saved before the aggregator stopped but not yet on the ledger", "round", open)
		if err := l.record(saved, now); err != nil {
			return fmt.Errorf("the run's ledger: %v", err)
		}
		return nil
	case open == 0 && l.height.Load() == 0:
		l.log.Warn("a new ledger for a run already at a later round: its earlier rounds are recorded as empty", "rounds", r)
		return l.fastForward(r, now)
	}
	return fmt.Errorf("the run's ledger (%s) has round %d open, but the run is at round %d: it belongs to another run or lost blocks; move it away to start a new chain",
		l.path, open, r)
}

// fastForward closes and settles rounds 0..r-1 of a new chain with
// nothing accepted.
func (l *aggLedger) fastForward(r uint64, now func() time.Time) error {
	for k := uint64(0); k < r; k++ {
		if _, err := l.host.SubmitResult(&ledger.ResultTx{Round: k}); err != nil {
			return fmt.Errorf("the run's ledger: empty result of round %d: %v", k, err)
		}
		if _, err := l.host.SubmitSettle(&ledger.SettleTx{Round: k}); err != nil {
			return fmt.Errorf("the run's ledger: empty settlement of round %d: %v", k, err)
		}
		if (k+1)%1000 == 0 || k+1 == r {
			if _, err := l.host.Produce(now()); err != nil {
				return err
			}
		}
	}
	return l.refresh()
}

// close flushes what is queued into a last block and closes the chain.
func (l *aggLedger) close() error {
	l.drive.Lock()
	defer l.drive.Unlock()
	if l.host.Chain().Pending() > 0 {
		l.host.Produce(time.Now())
	}
	return l.host.Close()
}
