package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
)

// BlockVersion is the version byte that starts every encoded block.
const BlockVersion = 1

// Header is a block's header. The block hash covers all of it; the
// proposer signs the block hash.
type Header struct {
	ChainID     string
	Height      uint64 // 1 for the first block
	PrevHash    Hash   // hash of the previous block's header; the genesis hash for block 1
	Time        int64  // Unix nanoseconds, supplied by the producer; never decreases
	TxRoot      Hash   // TxRoot of the transactions
	ResultsRoot Hash   // ResultsRoot of the transactions' results
	StateRoot   Hash   // the state root after applying the block
	Proposer    PubKey // an authority
}

// Block is a header, its transactions (raw encodings) and the proposer's
// signature.
type Block struct {
	Header Header
	Txs    [][]byte
	Sig    Signature
}

func (h *Header) encode(e *encoder) {
	e.u8(BlockVersion)
	e.str(h.ChainID)
	e.u64(h.Height)
	e.fixed(h.PrevHash[:])
	e.i64(h.Time)
	e.fixed(h.TxRoot[:])
	e.fixed(h.ResultsRoot[:])
	e.fixed(h.StateRoot[:])
	e.fixed(h.Proposer[:])
}

const (
	blockDomain    = "cairn/ledger/block/v1\x00"
	blockSigDomain = "cairn/ledger/block-sig/v1\x00"
	resultsDomain  = "cairn/ledger/results/v1\x00"
)

// Hash is the block hash: SHA-256 of a domain tag and the encoded header.
func (h *Header) Hash() Hash {
	e := encoder{b: []byte(blockDomain)}
	h.encode(&e)
	return sha256.Sum256(e.b)
}

// Hash is the hash of the block's header.
func (b *Block) Hash() Hash { return b.Header.Hash() }

func blockSigningBytes(h Hash) []byte { return append([]byte(blockSigDomain), h[:]...) }

// Sign sets the signature of the proposer's key over the block hash.
func (b *Block) Sign(key ed25519.PrivateKey) {
	h := b.Hash()
	copy(b.Sig[:], ed25519.Sign(key, blockSigningBytes(h)))
}

// VerifySig reports whether Sig is the proposer's signature over the block
// hash.
func (b *Block) VerifySig() bool {
	h := b.Hash()
	return ed25519.Verify(b.Header.Proposer[:], blockSigningBytes(h), b.Sig[:])
}

// Encode returns the canonical encoding: header, transaction count, each
// transaction length-prefixed, signature.
func (b *Block) Encode() []byte {
	e := encoder{}
	b.Header.encode(&e)
	e.u32(uint32(len(b.Txs)))
	for _, tx := range b.Txs {
		e.bytes(tx)
	}
	e.fixed(b.Sig[:])
	return e.b
}

// DecodeBlock decodes a block's framing: header fields, at most
// MaxBlockTxs transactions of at most MaxTxBytes each, the signature, and
// nothing after it. The transactions stay raw (a malformed one is a
// failed result when the block is applied, and is covered by TxRoot).
// Encode of the result gives back exactly b. Errors start with
// "ledger: malformed block".
func DecodeBlock(b []byte) (*Block, error) {
	if len(b) > MaxBlockBytes {
		return nil, fmt.Errorf("ledger: malformed block: %d bytes, limit %d", len(b), MaxBlockBytes)
	}
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != BlockVersion {
		d.fail("version %d, want %d", v, BlockVersion)
	}
	blk := &Block{}
	h := &blk.Header
	h.ChainID = d.str("chain ID", MaxChainIDBytes, identifier)
	h.Height = d.u64()
	d.fixed(h.PrevHash[:])
	h.Time = d.i64()
	d.fixed(h.TxRoot[:])
	d.fixed(h.ResultsRoot[:])
	d.fixed(h.StateRoot[:])
	d.fixed(h.Proposer[:])
	n := d.count("transactions", MaxBlockTxs, 4)
	if n > 0 {
		blk.Txs = make([][]byte, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		blk.Txs[i] = bytes.Clone(d.bytes("transaction", MaxTxBytes))
	}
	d.fixed(blk.Sig[:])
	if err := d.finish("block"); err != nil {
		return nil, err
	}
	return blk, nil
}

// TxRoot is the Merkle root (RFC 6962: leaves H(0x00‖tx), nodes
// H(0x01‖left‖right), split at the largest power of two below n) of the
// raw transactions; the root of none is SHA-256 of nothing.
func TxRoot(txs [][]byte) Hash {
	if len(txs) == 0 {
		return sha256.Sum256(nil)
	}
	if len(txs) == 1 {
		return sha256.Sum256(append([]byte{0}, txs[0]...))
	}
	k := 1
	for k*2 < len(txs) {
		k *= 2
	}
	l, r := TxRoot(txs[:k]), TxRoot(txs[k:])
	buf := make([]byte, 0, 65)
	buf = append(append(append(buf, 1), l[:]...), r[:]...)
	return sha256.Sum256(buf)
}

// Code classifies a transaction result; CodeOK is success, every other
// code a rejection that changed no state.
type Code uint8

// The result codes.
const (
	CodeOK                Code = iota
	CodeMalformed              // the bytes are not a canonical transaction
	CodeBadSignature           // the signature is not the sender's for this chain and kind
	CodeBadNonce               // the nonce does not exceed the sender's last (a replay)
	CodeInsufficientFunds      // overspending balance or stake
	CodeUnauthorized           // a result, settlement or receipts not signed by an authority; a fingerprint commitment from an account holding nothing
	CodeRoundNotOpen           // a commit or result for a round that is not the open one
	CodeDuplicateCommit        // a second commit by the same worker in a round; a second fingerprint commitment for a model; a record accepted twice
	CodeStateMismatch          // a commit's start state is not the worker's last end state
	CodeNotStaked              // a commit from an account whose stake is below the minimum
	CodeNoCommit               // a result accepts or rejects a contribution that was not committed
	CodeNotSettleable          // a settlement for a round that is open, settled, or out of order
	CodeInvalid                // any other rule
	codeEnd
)

var codeNames = [...]string{"ok", "malformed", "bad-signature", "bad-nonce", "insufficient-funds", "unauthorized",
	"round-not-open", "duplicate-commit", "state-mismatch", "not-staked", "no-commit", "not-settleable", "invalid"}

func (c Code) String() string {
	if c >= codeEnd {
		return fmt.Sprintf("code(%d)", uint8(c))
	}
	return codeNames[c]
}

// TxResult is the outcome of one transaction in a block.
type TxResult struct {
	Code   Code
	Reason string // empty for CodeOK; printable ASCII, at most 200 bytes
}

// EncodeResults is the canonical encoding of a block's results.
func EncodeResults(rs []TxResult) []byte {
	e := encoder{}
	e.u32(uint32(len(rs)))
	for _, r := range rs {
		e.u8(uint8(r.Code))
		e.str(r.Reason)
	}
	return e.b
}

// DecodeResults decodes EncodeResults' output (at most MaxBlockTxs
// results, known codes, reasons empty exactly for CodeOK); Encode of the
// result gives back exactly b.
func DecodeResults(b []byte) ([]TxResult, error) {
	d := decoder{b: b}
	n := d.count("results", MaxBlockTxs, 5)
	var rs []TxResult
	if n > 0 {
		rs = make([]TxResult, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		rs[i].Code = Code(d.u8())
		rs[i].Reason = d.str("reason", MaxReasonBytes, printable)
		if d.err == nil && (rs[i].Code >= codeEnd || (rs[i].Code == CodeOK) != (rs[i].Reason == "")) {
			d.fail("result %d: code %d with reason %q", i, rs[i].Code, rs[i].Reason)
		}
	}
	if err := d.finish("results"); err != nil {
		return nil, err
	}
	return rs, nil
}

// ResultsRoot is the SHA-256 of a domain tag and EncodeResults(rs).
func ResultsRoot(rs []TxResult) Hash {
	return sha256.Sum256(append([]byte(resultsDomain), EncodeResults(rs)...))
}
