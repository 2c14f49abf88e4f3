// Package ledger is Cairn's contribution ledger: a deterministic state
// machine over signed transactions that records who contributed what to
// each DiLoCo round, pays them, and slashes those whose work fails
// verification. It does no I/O, reads no clock and draws no randomness:
// block times, keys and transactions are arguments. It imports only the
// standard library, so a consensus engine can host it unchanged (the
// chain package's CometBFT adapter) and the store package persists it.
//
// # Shape
//
// The API follows ABCI: CheckTx checks a transaction against the pending
// (mempool) state; FinalizeBlock executes a block's transactions on a
// working copy and returns a result per transaction (a code and a reason;
// a rejected transaction changes no state) and the new state root; Commit
// makes it the committed state (Discard drops it); Query and the typed
// getters read the committed state. ApplyBlock is FinalizeBlock for a
// signed Block of this package's chain: it also checks the chaining, the
// proposer's signature and the header's roots. Producer is the embedded
// single-node chain's block producer: a mempool and MakeBlock(now).
// Neither Ledger nor Producer is safe for concurrent use.
//
// # Accounts, keys and signatures
//
// An account is a raw ed25519 public key: the node's libp2p identity
// (libp2p ed25519 keys are standard ed25519; Raw() of the private key is
// the 64-byte ed25519.PrivateKey). A transaction is signed over
// "cairn/ledger/tx/v1\x00", the chain ID, the kind, and the unsigned
// encoding, so a signature is valid on one chain for one kind only. Nonces
// strictly increase per account (gaps allowed): a transaction whose nonce
// does not exceed the sender's last is a replay. There are no fees.
//
// # Genesis
//
// Genesis fixes the chain ID, the authorities (keys that may sign round
// results, settlements and blocks: the organiser or aggregator), the
// initial balances and stakes, the minimum stake to commit (0 makes an open
// run: any account commits, and a stake is only what a failed verdict can
// take), the unbonding period in rounds, the emission per round, the slash
// fraction in basis points, and the settlement lag.
//
// # Transactions
//
//   - RegisterTx bonds balance as stake; the stake afterwards must reach
//     the minimum. TransferTx moves balance. UnbondTx moves stake to an
//     unbonding entry released at open round + UnbondingRounds; it stays
//     slashable until WithdrawTx releases matured entries to the balance.
//   - CommitTx (commit/reveal): while round r is open, a worker with at
//     least the minimum stake commits once to its contribution: the hash
//     of its compressed Δ, the tokens it claims (1..2^40), the hashes of
//     its local state (inner AdamW moments and error-feedback residual) at
//     the round's start and end, and the kernel path it trained on. The
//     start state must equal the end state of its previous commit unless
//     the commit declares a fresh start (a worker that lost its state; a
//     first commit is always a fresh start). The reveal is the Δ itself,
//     sent to the aggregator, which checks it against the committed hash:
//     a worker cannot be paid for what it did not commit before the round
//     closed, and the ledger refuses a result that accepts one delta hash
//     twice, so a copy cannot be paid alongside its original.
//   - ResultTx, signed by an authority, closes the open round r: the hash
//     of θ(r+1), the accepted contributions (each must match its commit's
//     delta hash and tokens) and the rejected ones with the screening
//     reason. It opens r+1. Closing round r requires round r-SettlementLag
//     to be settled, so unsettled rounds never pile up.
//   - SettleTx, signed by an authority, settles the oldest closed,
//     unsettled round with one verdict per accepted contribution: passed,
//     failed (with a reason and the verifier's evidence bytes, which stay
//     in the block; the state keeps their SHA-256) or unchecked; and, where
//     the verifier checked them, verdicts on rejected contributions (failed
//     or unchecked: a rejected contribution is never paid, but a failed
//     one is slashed like any other).
//   - Member rounds (Genesis.CommitWindow > 0; members.go): a run without
//     an authority over its rounds, where every node aggregates. Round
//     r's commits are taken for CommitWindow of block time from the first
//     one, or until every worker whose contribution r-1 accepted has; then each worker that committed votes with a ResultTx covering
//     every commit of r, and when more than half of them voted for the
//     same result byte for byte, r closes with it and is settled at once
//     (every accepted contribution paid, unchecked). A member of the round
//     just closed may still vote; the round's votes say who disagreed.
//     Authorities then sign only blocks; SettleTx is refused, except with
//     member checks (Genesis.MemberChecks; checks.go), where it is a
//     member's verdicts and a majority of them settles the round.
//   - FingerprintTx, from any account holding a balance or stake, commits
//     its sender as a model's owner to a secret fingerprint set: the
//     model's weights hash and the SHA-256 of the sealed set file. The
//     first commitment for a model wins; a later one is refused. The
//     "fingerprint" query answers who committed which set at which block.
//
// # Rewards and slashing
//
// Settlement mints the round's emission and splits it among the
// contributions that did not fail, pro rata to their tokens, in integer
// units (SplitEmission): each gets the floor of its share and the units
// left over go one each to the largest remainders, ties to the lower
// worker key. Nothing is created or lost: the shares add up to exactly
// the emission; a round where nothing is paid mints nothing. A failed
// verdict slashes floor(bps/10000) of the worker's stake plus unbonding
// entries, taken from the stake first and then from the oldest entries,
// and burns it. Rewards are paid to the balance. A worker slashed below
// the minimum stake can no longer commit until it bonds more. The supply
// (all balances, stakes and unbonding entries) always equals genesis
// supply + minted - burned; CheckInvariants recounts it.
//
// # Encoding
//
// Everything is encoded canonically: a version byte (transactions,
// blocks, genesis), fixed-width big-endian integers, raw fixed-size keys,
// hashes and signatures, uint32-length-prefixed strings and byte strings,
// booleans as 0 or 1, lists sorted by key without repeats. Decoders check
// sizes before allocating (MaxTxBytes, MaxBlockBytes, per-field limits),
// reject trailing bytes and every non-canonical form, so for every input b
// a decoder accepts, encoding the result gives back b.
//
// Transaction (version 1):
//
//	version u8 | kind u8 | sender [32] | nonce u64 | body | signature [64]
//
// Block (version 1): version u8 | chain ID str | height u64 | previous
// block hash [32] | time i64 (Unix ns) | tx root [32] | results root [32]
// | state root [32] | proposer [32] | tx count u32 | txs (u32 length +
// bytes each) | proposer signature [64] over the block hash. The block
// hash is SHA-256 of a domain tag and the header; block 1 chains to the
// genesis hash. The tx root is an RFC 6962 Merkle root.
//
// # State and state root
//
// The state is a map of keys to canonical records (see state.go: meta,
// accounts, commits, round results, verdicts, and a history index from
// account to the transactions that touched it). Its root is a two-level
// Merkle tree: 256 buckets by FNV-1a of the key, each hashed over its
// pairs in key order, and the root over the 256 bucket hashes; a block
// rehashes only the buckets it touched. The whole state is kept in
// memory, which suits the thousands of accounts and rounds of a run;
// list queries scan it.
package ledger
