package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// region is where one stored key or value lies in the ledger file.
type region struct {
	bucket string
	key    []byte
	isKey  bool
	off    int64
	n      int
	inline int64 // for the key of an inline bucket in the root page: its page's offset; else -1
}

// storedRegions locates every key and value of every bucket in the file.
// bbolt hands out slices of its memory map, so their addresses give their
// offsets; an inline bucket (a small one, kept inside its parent's page)
// may be copied out of the map first, so those are found by reading the
// root bucket's leaf page (bbolt's page layout: a 16-byte header, then
// 16-byte elements flags|pos|ksize|vsize, the key at the element's
// address + pos and the value after it; an inline bucket's value is a
// 16-byte bucket header with root page 0, then its page).
func storedRegions(t *testing.T, path string) []region {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	info := db.Info()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []region
	err = db.View(func(tx *bolt.Tx) error {
		root := uint64(tx.Cursor().Bucket().Root())
		for _, r := range leafRegions(t, file, int64(root)*int64(info.PageSize), "") {
			if !r.isKey || r.inline < 0 {
				continue
			}
			out = append(out, leafRegions(t, file, r.inline, string(r.key))...)
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if b.Root() == 0 {
				return nil // inline: found above
			}
			return b.ForEach(func(k, v []byte) error {
				for _, s := range []struct {
					b     []byte
					isKey bool
				}{{k, true}, {v, false}} {
					off := int64(uintptr(unsafe.Pointer(&s.b[0])) - info.Data)
					if off < 0 || off+int64(len(s.b)) > int64(len(file)) {
						return fmt.Errorf("%s %x lies outside the file", name, k)
					}
					out = append(out, region{bucket: string(name), key: bytes.Clone(k), isKey: s.isKey, off: off, n: len(s.b), inline: -1})
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// leafRegions lists the keys and values of the leaf page at off in file;
// for an inline bucket's key, inline is the offset of its page.
func leafRegions(t *testing.T, file []byte, off int64, bucket string) []region {
	le := binary.LittleEndian
	p := file[off:]
	if flags := le.Uint16(p[8:]); flags&0x02 == 0 {
		t.Fatalf("page at %d has flags %#x, not a leaf", off, flags)
	}
	var out []region
	for i := 0; i < int(le.Uint16(p[10:])); i++ {
		e := 16 + 16*i
		flags, pos, ksize, vsize := le.Uint32(p[e:]), int(le.Uint32(p[e+4:])), int(le.Uint32(p[e+8:])), int(le.Uint32(p[e+12:]))
		k := off + int64(e+pos)
		v := k + int64(ksize)
		inline := int64(-1)
		if flags&0x01 != 0 && le.Uint64(file[v:]) == 0 {
			inline = v + 16
		}
		key := bytes.Clone(file[k : k+int64(ksize)])
		out = append(out, region{bucket: bucket, key: key, isKey: true, off: k, n: ksize, inline: inline},
			region{bucket: bucket, key: key, off: v, n: vsize, inline: -1})
	}
	return out
}

// TestVerifyCatchesEveryByte changes every byte of every stored block
// (transactions included), result, state key and value, genesis and tip
// in the ledger file, one at a time, and runs Verify on the file: each
// change is caught, and a change inside block h's record names block h.
func TestVerifyCatchesEveryByte(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	tip := buildLedger(t, path)
	if _, err := Verify(path); err != nil {
		t.Fatal(err)
	}
	regions := storedRegions(t, path)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	masks := []byte{0x01, 0x80, 0xff, 0x10} // a low bit, a high bit, every bit, a middle bit
	perBucket := map[string]int{}
	flips := 0
	for _, r := range regions {
		want := uint64(0)
		switch {
		case r.isKey:
		case r.bucket == "blocks" || r.bucket == "results":
			want = binary.BigEndian.Uint64(r.key)
		case r.bucket == "state":
			want = tip.Height
		}
		for i := 0; i < r.n; i++ {
			var b [1]byte
			off := r.off + int64(i)
			if _, err := f.ReadAt(b[:], off); err != nil {
				t.Fatal(err)
			}
			flipped := [1]byte{b[0] ^ masks[flips%len(masks)]}
			if _, err := f.WriteAt(flipped[:], off); err != nil {
				t.Fatal(err)
			}
			_, verr := Verify(path)
			if _, err := f.WriteAt(b[:], off); err != nil {
				t.Fatal(err)
			}
			flips++
			var ve *VerifyError
			what := fmt.Sprintf("%s %x byte %d of %d (key %v)", r.bucket, r.key, i, r.n, r.isKey)
			if !errors.As(verr, &ve) {
				t.Fatalf("%s: changed and not caught (%v)", what, verr)
			}
			if want != 0 && ve.Height != want {
				t.Fatalf("%s: reported at block %d, want %d: %v", what, ve.Height, want, ve)
			}
		}
		perBucket[r.bucket] += r.n
	}
	if _, err := Verify(path); err != nil {
		t.Fatalf("the restored file: %v", err)
	}
	for _, b := range []string{"meta", "blocks", "results", "state"} {
		if perBucket[b] == 0 {
			t.Fatalf("no bytes changed in %s", b)
		}
	}
	t.Logf("%d single-byte changes, all caught: %v", flips, perBucket)
}
