package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
)

// The fingerprint commands and the ledger: embed and commit register the
// commitment (model hash, SHA-256 of the sealed set file) through a
// validator of the run's CometBFT chain; verify reads it back, from a
// validator or a ledger file.

// modelHash is the hash the ledger names a model by: diloco.HashWeights
// of round 0 over its weights, as serve names the model its receipts are
// for.
func modelHash(m *gpt.Model) ledger.Hash { return ledger.Hash(diloco.HashWeights(0, m.Params)) }

// setHash is the hash a commitment names a sealed fingerprint file by.
func setHash(sealed []byte) ledger.Hash { return sha256.Sum256(sealed) }

// committer submits fingerprint commitments from the identity of a data
// directory through a validator's RPC.
type committer struct {
	c   *chain.Client
	at  string // --ledger as given
	key ed25519.PrivateKey
	g   *ledger.Genesis // read by ready
}

// newCommitter checks --ledger (a validator's RPC address) and --data-dir
// (a node identity that exists) without reaching the chain; both empty is
// no committer. Errors are bad input.
func newCommitter(at, dir string) (*committer, error) {
	if at == "" && dir == "" {
		return nil, nil
	}
	if at == "" || dir == "" {
		return nil, badInput("--ledger HOST:PORT and --data-dir DIR go together: the validator that records the commitment and the identity that signs it")
	}
	rpc, err := ledgerFlag(at)
	if err != nil {
		return nil, err
	}
	if rpc == "" {
		return nil, badInput("--ledger %q: want a validator's RPC address host:port (commitments go on the run's CometBFT chain)", at)
	}
	if _, err := os.Stat(filepath.Join(dir, p2p.KeyFile)); err != nil {
		return nil, badInput("--data-dir %s: no node identity (%s): give the data directory of the node whose account commits", dir, p2p.KeyFile)
	}
	id, err := p2p.LoadIdentity(dir)
	if err != nil {
		return nil, badInput("--data-dir: %v", err)
	}
	key, err := p2p.LedgerKey(id)
	if err != nil {
		return nil, badInput("--data-dir: %v", err)
	}
	c, err := chain.Dial(rpc)
	if err != nil {
		return nil, badInput("--ledger: %v", err)
	}
	return &committer{c: c, at: at, key: key}, nil
}

func (cm *committer) owner() ledger.PubKey { return ledger.KeyOf(cm.key) }

// ready reads the chain's genesis and checks that the identity's account
// may commit (it holds a balance or stake): a stranger is bad input, found
// before any long work. A validator that does not answer is an error.
func (cm *committer) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := cm.c.Genesis(ctx)
	if err != nil {
		return fmt.Errorf("--ledger %s: %v", cm.at, err)
	}
	cm.g = g
	a, err := cm.c.Account(ctx, cm.owner())
	if err != nil {
		return fmt.Errorf("--ledger %s: %v", cm.at, err)
	}
	if a.Balance == 0 && a.Stake == 0 && a.Unbonded() == 0 {
		return badInput("account %s holds nothing on chain %s: only a funded or staked account may commit a fingerprint set", peerIDOf(cm.owner()), g.ChainID)
	}
	return nil
}

// commit registers the commitment of set to model and waits for its
// block. The same commitment already on the ledger (same set, same owner:
// a retry after a lost answer) is reported and is not an error; another
// commitment for the model refuses it (exit 1).
func (cm *committer) commit(model, set ledger.Hash, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if rec, ok, err := cm.c.Fingerprint(ctx, model); err != nil {
		return err
	} else if ok {
		if rec.Set == set && rec.Owner == cm.owner() {
			fmt.Fprintf(stdout, "already committed on chain %s: fingerprint set %s for model %s at block %d (tx %s) by %s\n",
				cm.g.ChainID, set, model, rec.Height, rec.TxHash, peerIDOf(rec.Owner))
			return nil
		}
		return refusedCommitment(model, rec)
	}
	a, err := cm.c.Account(ctx, cm.owner())
	if err != nil {
		return err
	}
	raw, err := ledger.SignTx(cm.g.ChainID, cm.key, a.Nonce+1, &ledger.FingerprintTx{Model: model, Set: set})
	if err != nil {
		return err
	}
	height, err := cm.c.Submit(ctx, raw)
	var te *ledger.TxError
	if errors.As(err, &te) {
		if rec, ok, qerr := cm.c.Fingerprint(ctx, model); qerr == nil && ok && te.Code == ledger.CodeDuplicateCommit {
			return refusedCommitment(model, rec)
		}
		return failedCheck{fmt.Sprintf("chain %s refused the commitment (%v): %s", cm.g.ChainID, te.Code, te.Reason)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "committed on chain %s: fingerprint set %s for model %s at block %d (tx %s) by %s\n",
		cm.g.ChainID, set, model, height, ledger.Hash(sha256.Sum256(raw)), peerIDOf(cm.owner()))
	return nil
}

func refusedCommitment(model ledger.Hash, rec ledger.FingerprintRecord) error {
	return failedCheck{fmt.Sprintf("refused: model %s already has a fingerprint commitment: set %s by %s at block %d (tx %s)",
		model, rec.Set, peerIDOf(rec.Owner), rec.Height, rec.TxHash)}
}

// fingerprintLookup reads model's commitment from --ledger: a validator's
// RPC address or a ledger file (DIR/ledger.db of a stopped node). It
// returns the ledger's name for messages.
func fingerprintLookup(at string, model ledger.Hash) (rec ledger.FingerprintRecord, found bool, name string, err error) {
	if st, serr := os.Stat(at); serr == nil && !st.IsDir() {
		s, err := openLedger(at)
		if err != nil {
			return rec, false, "", err
		}
		defer s.Close()
		l := s.Ledger()
		rec, found, err = l.Fingerprint(model)
		return rec, found, fmt.Sprintf("ledger %s (chain %s)", at, l.Genesis().ChainID), err
	}
	rpc, err := ledgerFlag(at)
	if err != nil || rpc == "" {
		return rec, false, "", badInput("--ledger %q: neither a ledger file nor a validator's RPC address", at)
	}
	c, err := chain.Dial(rpc)
	if err != nil {
		return rec, false, "", badInput("--ledger: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := c.Genesis(ctx)
	if err != nil {
		return rec, false, "", fmt.Errorf("--ledger %s: %v", at, err)
	}
	rec, found, err = c.Fingerprint(ctx, model)
	return rec, found, "chain " + g.ChainID, err
}

// commitmentLine says how a sealed file stands against model's commitment.
func commitmentLine(name string, model, set ledger.Hash, rec ledger.FingerprintRecord, found bool) string {
	switch {
	case !found:
		return fmt.Sprintf("on %s: NO fingerprint commitment for model %s", name, model)
	case rec.Set != set:
		return fmt.Sprintf("on %s: MISMATCH: model %s's commitment (block %d, by %s) is set %s, but this file hashes to %s",
			name, model, rec.Height, peerIDOf(rec.Owner), rec.Set, set)
	}
	return fmt.Sprintf("on %s: this set is the one committed for model %s at block %d (tx %s) by %s",
		name, model, rec.Height, rec.TxHash, peerIDOf(rec.Owner))
}
