package ledger_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// badTxChain builds the state every bad-transaction case runs against:
// A, B and E staked, C funded but unstaked, D unknown. Round 0: A, B, E
// commit; A and B accepted, E rejected; round 0 settled. Round 1: A
// commits and is accepted. Round 2 (open): A commits, B commits a fresh
// start copying A's delta hash, B unbonds 10. Round 1 is closed and not
// settled.
func badTxChain(t *testing.T) (c *chain, A, B, C, D, E ed25519.PrivateKey, replay []byte) {
	org := keyFrom("org")
	A, B, C, D, E = keyFrom("A"), keyFrom("B"), keyFrom("C"), keyFrom("D"), keyFrom("E")
	g := genesisFor(org, 0, A, B, C, E)
	for i := range g.Accounts {
		if g.Accounts[i].Key != ledger.KeyOf(C) {
			g.Accounts[i].Stake = 100
		}
	}
	c = newChain(t, g, org)
	a0, b0, e0 := commitBody("A", 0, 100), commitBody("B", 0, 50), commitBody("E", 0, 70)
	replay = c.tx(A, a0)
	c.block(replay, c.tx(B, b0), c.tx(E, e0))
	c.block(c.tx(org, &ledger.ResultTx{Round: 0, ModelHash: hashOf("theta1"), Accepted: sortedContribs(pledge{A, a0}, pledge{B, b0}),
		Rejected: []ledger.Rejection{{Worker: ledger.KeyOf(E), Reason: "late"}}}))
	vs := []ledger.Verdict{{Worker: ledger.KeyOf(A), Outcome: ledger.Passed}, {Worker: ledger.KeyOf(B), Outcome: ledger.Passed}}
	if bytes.Compare(vs[0].Worker[:], vs[1].Worker[:]) > 0 {
		vs[0], vs[1] = vs[1], vs[0]
	}
	a1 := commitBody("A", 1, 100)
	c.block(c.tx(org, &ledger.SettleTx{Round: 0, Verdicts: vs}), c.tx(A, a1))
	c.block(c.tx(org, &ledger.ResultTx{Round: 1, ModelHash: hashOf("theta2"), Accepted: sortedContribs(pledge{A, a1})}))
	a2 := commitBody("A", 2, 100)
	b2 := commitBody("B", 2, 100)
	b2.DeltaHash, b2.Fresh = a2.DeltaHash, true
	c.block(c.tx(A, a2), c.tx(B, b2), c.tx(B, &ledger.UnbondTx{Amount: 10}))
	return
}

func sortedVerdicts(vs ...ledger.Verdict) []ledger.Verdict {
	slices.SortFunc(vs, func(a, b ledger.Verdict) int { return bytes.Compare(a.Worker[:], b.Worker[:]) })
	return vs
}

// TestBadTransactions: every kind of bad transaction is refused with its
// code and reason, by CheckTx and inside a block alike, and changes no
// state: a block holding it has the previous state root.
func TestBadTransactions(t *testing.T) {
	c, A, B, C, D, E, replay := badTxChain(t)
	org := c.org
	k := ledger.KeyOf
	a2 := commitBody("A", 2, 100)
	b2 := commitBody("B", 2, 100)
	b2.DeltaHash, b2.Fresh = a2.DeltaHash, true
	good := c.tx(A, &ledger.TransferTx{To: k(C), Amount: 1})
	c.nonces[k(A)]-- // good is not submitted; its nonce stays free

	mutate := func(raw []byte, f func(b []byte) []byte) []byte { return f(bytes.Clone(raw)) }
	signed := func(chainID string, key ed25519.PrivateKey, nonce uint64, body ledger.Body) []byte {
		raw, err := ledger.SignTx(chainID, key, nonce, body)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	aNonce := c.account(A).Nonce
	cases := []struct {
		name   string
		tx     []byte
		code   ledger.Code
		reason string
	}{
		// Signatures and nonces.
		{"bad signature", mutate(good, func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ledger.CodeBadSignature, "signature is not"},
		{"signed for another chain", signed("other-chain", A, aNonce+1, &ledger.TransferTx{To: k(C), Amount: 1}), ledger.CodeBadSignature, `chain "cairn-test"`},
		{"body changed after signing", mutate(good, func(b []byte) []byte { b[1+1+32+8+32+7] ^= 1; return b }), ledger.CodeBadSignature, "signature is not"},
		{"replayed transaction", replay, ledger.CodeBadNonce, "does not exceed the last nonce"},
		{"reused nonce", signed(c.g.ChainID, A, aNonce, &ledger.TransferTx{To: k(C), Amount: 1}), ledger.CodeBadNonce, "does not exceed"},
		{"nonce zero", signed(c.g.ChainID, D, 0, &ledger.TransferTx{To: k(C), Amount: 1}), ledger.CodeBadNonce, "nonce 0"},

		// Malformed encodings.
		{"empty", nil, ledger.CodeMalformed, "truncated"},
		{"truncated", good[:len(good)-1], ledger.CodeMalformed, "truncated"},
		{"trailing byte", append(bytes.Clone(good), 0), ledger.CodeMalformed, "1 trailing bytes"},
		{"wrong version", mutate(good, func(b []byte) []byte { b[0] = 2; return b }), ledger.CodeMalformed, "version 2"},
		{"unknown kind", mutate(good, func(b []byte) []byte { b[1] = 99; return b }), ledger.CodeMalformed, "unknown kind 99"},
		{"over the size limit", make([]byte, ledger.MaxTxBytes+1), ledger.CodeMalformed, "limit"},
		{"boolean not 0 or 1", mutate(c.tx(A, commitBody("A", 2, 5)), func(b []byte) []byte {
			b[1+1+32+8+8+32+8+32+32] = 2
			return b
		}), ledger.CodeMalformed, "boolean byte 2"},

		// Balances and stake.
		{"overspending a transfer", c.tx(C, &ledger.TransferTx{To: k(A), Amount: 1001}), ledger.CodeInsufficientFunds, "with a balance of 1000"},
		{"unknown sender", c.tx(D, &ledger.TransferTx{To: k(A), Amount: 1}), ledger.CodeInsufficientFunds, "balance of 0"},
		{"zero transfer", c.tx(C, &ledger.TransferTx{To: k(A), Amount: 0}), ledger.CodeInvalid, "zero amount"},
		{"transfer to self", c.tx(C, &ledger.TransferTx{To: k(C), Amount: 5}), ledger.CodeInvalid, "to the sender itself"},
		{"bonding more than the balance", c.tx(C, &ledger.RegisterTx{Amount: 2000}), ledger.CodeInsufficientFunds, "bonding 2000"},
		{"bonding below the minimum", c.tx(C, &ledger.RegisterTx{Amount: 50}), ledger.CodeNotStaked, "below the minimum 100"},
		{"unbonding more than the stake", c.tx(A, &ledger.UnbondTx{Amount: 101}), ledger.CodeInsufficientFunds, "stake of 100"},
		{"withdrawing before the unbonding period", c.tx(B, &ledger.WithdrawTx{}), ledger.CodeInvalid, "before round 5"},
		{"withdrawing with nothing unbonding", c.tx(C, &ledger.WithdrawTx{}), ledger.CodeInvalid, "nothing unbonding"},

		// Commits.
		{"commit in a closed round", c.tx(E, commitBody("E", 1, 10)), ledger.CodeRoundNotOpen, "round 1 is closed (open round 2)"},
		{"commit in an unknown round", c.tx(E, commitBody("E", 9, 10)), ledger.CodeRoundNotOpen, "round 9 is not open (open round 2)"},
		{"duplicate commit", c.tx(A, commitBody("A", 2, 7)), ledger.CodeDuplicateCommit, "already committed in round 2"},
		{"start state mismatch", c.tx(E, commitBody("E", 2, 10)), ledger.CodeStateMismatch, "is not the end state"},
		{"commit without stake", c.tx(C, commitBody("C", 2, 10)), ledger.CodeNotStaked, "stake 0 is below the minimum 100"},
		{"commit claiming no tokens", c.tx(E, func() *ledger.CommitTx { b := commitBody("E", 2, 0); b.Fresh = true; return b }()), ledger.CodeInvalid, "0 tokens"},

		// Round results.
		{"result signed by a non-aggregator", c.tx(B, &ledger.ResultTx{Round: 2, Accepted: sortedContribs(pledge{A, a2})}), ledger.CodeUnauthorized, "may not sign round results"},
		{"result for a closed round", c.tx(org, &ledger.ResultTx{Round: 1}), ledger.CodeRoundNotOpen, "open round is 2"},
		{"result for an unknown round", c.tx(org, &ledger.ResultTx{Round: 3}), ledger.CodeRoundNotOpen, "result for round 3"},
		{"result accepting an uncommitted contribution", c.tx(org, &ledger.ResultTx{Round: 2, Accepted: []ledger.Contribution{{Worker: k(C), DeltaHash: hashOf("x"), Tokens: 1}}}), ledger.CodeNoCommit, "did not commit in round 2"},
		{"result not matching the commit", c.tx(org, &ledger.ResultTx{Round: 2, Accepted: []ledger.Contribution{{Worker: k(A), DeltaHash: a2.DeltaHash, Tokens: 101}}}), ledger.CodeNoCommit, "does not match its commit"},
		{"result rejecting an uncommitted contribution", c.tx(org, &ledger.ResultTx{Round: 2, Rejected: []ledger.Rejection{{Worker: k(E), Reason: "late"}}}), ledger.CodeNoCommit, "rejected but did not commit"},
		{"result paying a copied delta", c.tx(org, &ledger.ResultTx{Round: 2, Accepted: sortedContribs(pledge{A, a2}, pledge{B, b2})}), ledger.CodeInvalid, "accepted twice (a copy)"},
		{"result before the previous round is settled", c.tx(org, &ledger.ResultTx{Round: 2, Accepted: sortedContribs(pledge{A, a2})}), ledger.CodeInvalid, "round 1 must be settled before round 2 closes"},

		// Settlements.
		{"settlement signed by a non-aggregator", c.tx(B, &ledger.SettleTx{Round: 1, Verdicts: []ledger.Verdict{{Worker: k(A), Outcome: ledger.Passed}}}), ledger.CodeUnauthorized, "may not sign settlements"},
		{"settlement of the open round", c.tx(org, &ledger.SettleTx{Round: 2}), ledger.CodeNotSettleable, "round 2 is not closed"},
		{"settlement of a settled round", c.tx(org, &ledger.SettleTx{Round: 0}), ledger.CodeNotSettleable, "round 0 is already settled"},
		{"settlement missing a verdict", c.tx(org, &ledger.SettleTx{Round: 1}), ledger.CodeInvalid, "no verdict for the accepted contribution"},
		{"settlement judging a worker without a contribution", c.tx(org, &ledger.SettleTx{Round: 1, Verdicts: sortedVerdicts(
			ledger.Verdict{Worker: k(A), Outcome: ledger.Passed}, ledger.Verdict{Worker: k(B), Outcome: ledger.Passed})}), ledger.CodeInvalid, "who has no contribution in round 1"},
	}
	root := c.l.StateRoot()
	tip := c.l.Tip()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var te *ledger.TxError
			err := c.l.CheckTx(tc.tx)
			if !errors.As(err, &te) || te.Code != tc.code || !strings.Contains(te.Reason, tc.reason) {
				t.Fatalf("CheckTx: %v, want %v containing %q", err, tc.code, tc.reason)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("reason of more than one line: %q", err)
			}
			res, err := c.l.FinalizeBlock(ledger.BlockInfo{Height: tip.Height + 1, Time: tip.Time, Proposer: k(org)}, [][]byte{tc.tx})
			if err != nil {
				t.Fatal(err)
			}
			c.l.Discard()
			if r := res.Results[0]; r.Code != tc.code || r.Reason != te.Reason {
				t.Fatalf("in a block: %v %q, CheckTx said %v %q", r.Code, r.Reason, te.Code, te.Reason)
			}
			if res.AppHash != root || len(res.Changes) != 0 {
				t.Fatalf("a rejected transaction changed the state (%d pairs written)", len(res.Changes))
			}
		})
	}
	if c.l.StateRoot() != root {
		t.Fatal("committed state changed")
	}

	// The same state accepts the valid versions, so the refusals above
	// were the transactions' fault, not the setup's.
	e2 := commitBody("E", 2, 10)
	e2.Fresh = true
	vs := []ledger.Verdict{{Worker: k(A), Outcome: ledger.Passed}}
	for i, raw := range [][]byte{good, c.tx(E, e2), c.tx(C, &ledger.RegisterTx{Amount: 100}), c.tx(org, &ledger.SettleTx{Round: 1, Verdicts: vs}),
		c.tx(org, &ledger.ResultTx{Round: 2, Accepted: sortedContribs(pledge{A, a2}, pledge{E, e2}), Rejected: []ledger.Rejection{{Worker: k(B), Reason: "copied delta"}}})} {
		if err := c.l.CheckTx(raw); err != nil {
			t.Fatalf("valid transaction %d: %v", i, err)
		}
	}
}
