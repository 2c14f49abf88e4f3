package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"
)

// The state is a map from keys to canonical encodings, hashed as a
// two-level Merkle tree: keys fall into 256 buckets (FNV-1a of the key),
// each bucket hashes its pairs in key order, and the state root hashes the
// 256 bucket hashes. A block rehashes only the buckets it touched, so the
// cost per block is the touched buckets' size, not the whole state's.

const numBuckets = 256

const (
	bucketDomain = "cairn/ledger/state-bucket/v1\x00"
	stateDomain  = "cairn/ledger/state/v1\x00"
)

func bucketOf(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % numBuckets)
}

type kvReader interface {
	get(key string) ([]byte, bool)
}

// kvBase is the committed state.
type kvBase struct {
	buckets [numBuckets]map[string][]byte
	hashes  [numBuckets]Hash
	root    Hash
}

func newBase() *kvBase {
	b := &kvBase{}
	for i := range b.buckets {
		b.buckets[i] = map[string][]byte{}
		b.hashes[i] = hashBucket(i, b.buckets[i], nil)
	}
	b.root = b.rootOf(nil)
	return b
}

func (b *kvBase) get(k string) ([]byte, bool) {
	v, ok := b.buckets[bucketOf(k)][k]
	return v, ok
}

func (b *kvBase) len() int {
	n := 0
	for _, m := range b.buckets {
		n += len(m)
	}
	return n
}

// each calls f for every pair in key order.
func (b *kvBase) each(f func(k string, v []byte)) {
	keys := make([]string, 0, b.len())
	for _, m := range b.buckets {
		for k := range m {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := b.get(k)
		f(k, v)
	}
}

// hashBucket hashes bucket i's pairs with writes (all in bucket i)
// applied.
func hashBucket(i int, m map[string][]byte, writes map[string][]byte) Hash {
	keys := make([]string, 0, len(m)+len(writes))
	for k := range m {
		keys = append(keys, k)
	}
	for k := range writes {
		if _, ok := m[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	h := sha256.New()
	h.Write([]byte(bucketDomain))
	h.Write([]byte{byte(i)})
	var n [4]byte
	for _, k := range keys {
		v, ok := writes[k]
		if !ok {
			v = m[k]
		}
		binary.BigEndian.PutUint32(n[:], uint32(len(k)))
		h.Write(n[:])
		h.Write([]byte(k))
		binary.BigEndian.PutUint32(n[:], uint32(len(v)))
		h.Write(n[:])
		h.Write(v)
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// rootOf is the root over the bucket hashes with the replacements in
// changed.
func (b *kvBase) rootOf(changed map[int]Hash) Hash {
	h := sha256.New()
	h.Write([]byte(stateDomain))
	for i := range b.hashes {
		bh, ok := changed[i]
		if !ok {
			bh = b.hashes[i]
		}
		h.Write(bh[:])
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// prepare computes the bucket hashes and root the state would have with
// writes applied, without applying them.
func (b *kvBase) prepare(writes map[string][]byte) (map[int]Hash, Hash) {
	byBucket := map[int]map[string][]byte{}
	for k, v := range writes {
		i := bucketOf(k)
		if byBucket[i] == nil {
			byBucket[i] = map[string][]byte{}
		}
		byBucket[i][k] = v
	}
	changed := make(map[int]Hash, len(byBucket))
	for i, w := range byBucket {
		changed[i] = hashBucket(i, b.buckets[i], w)
	}
	return changed, b.rootOf(changed)
}

// apply installs writes with the hashes prepare computed for them.
func (b *kvBase) apply(writes map[string][]byte, changed map[int]Hash, root Hash) {
	for k, v := range writes {
		b.buckets[bucketOf(k)][k] = v
	}
	for i, h := range changed {
		b.hashes[i] = h
	}
	b.root = root
}

// overlay buffers writes on top of a reader: a transaction's writes on top
// of its block's, a block's on top of the committed state.
type overlay struct {
	parent kvReader
	writes map[string][]byte
}

func newOverlay(parent kvReader) *overlay {
	return &overlay{parent: parent, writes: map[string][]byte{}}
}

func (o *overlay) get(k string) ([]byte, bool) {
	if v, ok := o.writes[k]; ok {
		return v, true
	}
	return o.parent.get(k)
}

func (o *overlay) put(k string, v []byte) { o.writes[k] = v }

// mergeInto moves o's writes into dst.
func (o *overlay) mergeInto(dst *overlay) {
	for k, v := range o.writes {
		dst.writes[k] = v
	}
}
