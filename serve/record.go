package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cairnlabs/cairn/ledger"
)

// Ledger is what recording receipts needs of the run's chain.
type Ledger interface {
	// Nonce is the server's account's last used nonce on the chain.
	Nonce(ctx context.Context, k ledger.PubKey) (uint64, error)
	// Submit sends a signed transaction and returns once a committed
	// block holds it (a *ledger.TxError if the block rejected it).
	Submit(ctx context.Context, raw []byte) error
}

// recordState is what the server has recorded on the ledger, kept in a
// small file beside the receipt log: receipts[:Recorded] are on the
// chain; Pending, when set, is a batch signed with nonce PendingNonce
// covering receipts[:PendingUpTo], sent and perhaps included.
type recordState struct {
	Recorded     int    `json:"recorded"`
	Pending      bool   `json:"pending"`
	PendingNonce uint64 `json:"pending_nonce"`
	PendingUpTo  int    `json:"pending_up_to"`
	PendingTx    []byte `json:"pending_tx"`
}

func readRecordState(path string) (recordState, error) {
	var st recordState
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if len(b) > 8<<20 {
		return st, fmt.Errorf("serve: %s: %d bytes, too large", path, len(b))
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("serve: %s: %v", path, err)
	}
	if st.Recorded < 0 || st.Pending && st.PendingUpTo < st.Recorded {
		return st, fmt.Errorf("serve: %s: inconsistent counts", path)
	}
	return st, nil
}

// Recorded is how many of the server's receipts, in log order, the
// record state at statePath says are on the chain (0 when none were
// recorded yet).
func Recorded(statePath string) (int, error) {
	st, err := readRecordState(statePath)
	return st.Recorded, err
}

func writeRecordState(path string, st recordState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// Record puts the receipts not yet on the ledger there, in one
// ReceiptsTx per MaxReceiptEntries requesters, signed by the server's key
// (an authority of the chain) and waited for until a block holds it. The
// progress is kept in statePath, written before each batch is sent, so a
// server that stops at any point neither loses a batch nor records one
// twice: a batch sent before a crash is looked for by its nonce. Once a
// batch is in a block, the requesters' ledger balances carry its fees and
// the server stops counting them against those balances. It returns the
// receipts recorded by this call.
func (s *Server) Record(ctx context.Context, l Ledger, chainID, statePath string) (int, error) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	st, err := readRecordState(statePath)
	if err != nil {
		return 0, err
	}
	rs, err := s.Receipts()
	if err != nil {
		return 0, err
	}
	if st.PendingUpTo > len(rs) || st.Recorded > len(rs) {
		return 0, fmt.Errorf("serve: %s counts more receipts than the log holds", statePath)
	}
	self := ledger.KeyOf(s.o.Key)
	done := 0
	for {
		if st.Pending {
			n, err := l.Nonce(ctx, self)
			if err != nil {
				return done, err
			}
			if n < st.PendingNonce { // not included: send it (again)
				if err := l.Submit(ctx, st.PendingTx); err != nil {
					return done, err
				}
			}
			s.onRecorded(rs[st.Recorded:st.PendingUpTo])
			done += st.PendingUpTo - st.Recorded
			st = recordState{Recorded: st.PendingUpTo}
			if err := writeRecordState(statePath, st); err != nil {
				return done, err
			}
		}
		if st.Recorded == len(rs) {
			return done, nil
		}
		upTo, body := s.batch(rs, st.Recorded)
		if len(body.Entries) == 0 { // free requests: nothing to charge
			st = recordState{Recorded: upTo}
			if err := writeRecordState(statePath, st); err != nil {
				return done, err
			}
			continue
		}
		n, err := l.Nonce(ctx, self)
		if err != nil {
			return done, err
		}
		raw, err := ledger.SignTx(chainID, s.o.Key, n+1, body)
		if err != nil {
			return done, err
		}
		st = recordState{Recorded: st.Recorded, Pending: true, PendingNonce: n + 1, PendingUpTo: upTo, PendingTx: raw}
		if err := writeRecordState(statePath, st); err != nil {
			return done, err
		}
	}
}

// batch aggregates receipts from rs[from:] by requester into one
// ReceiptsTx of at most MaxReceiptEntries requesters; it returns where
// the batch ends.
func (s *Server) batch(rs []Receipt, from int) (int, *ledger.ReceiptsTx) {
	by := map[ledger.PubKey]*ledger.ReceiptEntry{}
	i := from
	for ; i < len(rs); i++ {
		r := rs[i]
		e := by[r.Requester]
		if e == nil {
			if len(by) == ledger.MaxReceiptEntries {
				break
			}
			e = &ledger.ReceiptEntry{Requester: r.Requester}
			by[r.Requester] = e
		}
		e.Requests++
		e.Tokens += uint64(r.PromptTokens + r.CompletionTokens)
		e.Fee += r.Fee
	}
	body := &ledger.ReceiptsTx{Model: s.o.ModelHash}
	for _, e := range by {
		if e.Fee > 0 {
			body.Entries = append(body.Entries, *e)
		}
	}
	sort.Slice(body.Entries, func(a, b int) bool {
		return bytes.Compare(body.Entries[a].Requester[:], body.Entries[b].Requester[:]) < 0
	})
	return i, body
}

// onRecorded stops counting recorded receipts' fees against the
// requesters' balances (the ledger balances now carry them).
func (s *Server) onRecorded(rs []Receipt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		s.spent[r.Requester] -= min(r.Fee, s.spent[r.Requester])
	}
}
