package compress

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/cairnlabs/cairn/vecmath"
)

// Parameters of the top-k codec family; see the package documentation.
const (
	// DefaultTopK, DefaultTopKChunk and DefaultTopKBits are the parameters
	// of "topk": 64 values of every 4096 (1.56% density, Templar's
	// production setting) with 2-bit values.
	DefaultTopK      = 64
	DefaultTopKChunk = 4096
	DefaultTopKBits  = 2

	// MaxTopKChunk is the largest top-k chunk size: indices within a
	// chunk then fit in 16 bits, and the encoder's per-chunk scratch stays
	// under 1 MiB.
	MaxTopKChunk = 1 << 16
)

const (
	codecTopK  = 3
	headerTopK = 17

	// lloydIters is the number of Lloyd refinements of the 2-bit
	// magnitude threshold after the initial split at the mean.
	lloydIters = 4
)

// topkName is the canonical name of the top-k codec with these parameters.
func topkName(k, chunk, nbits int) Codec { return sparseName("topk", k, chunk, nbits) }

// sparseName is the canonical name "FAMILY:K/CHUNK:BITS" of a sparse codec.
func sparseName(family string, k, chunk, nbits int) Codec {
	return Codec(family + ":" + strconv.Itoa(k) + "/" + strconv.Itoa(chunk) + ":" + strconv.Itoa(nbits))
}

// checkTopK checks top-k parameters; its error has no prefix.
func checkTopK(k, chunk, nbits int64) error {
	if chunk < 1 || chunk > MaxTopKChunk {
		return fmt.Errorf("chunk size %d out of range [1, %d]", chunk, MaxTopKChunk)
	}
	if k < 1 || k > chunk {
		return fmt.Errorf("k %d out of range [1, chunk size %d]", k, chunk)
	}
	if nbits != 1 && nbits != 2 {
		return fmt.Errorf("bits %d, want 1 or 2", nbits)
	}
	return nil
}

// isTopKName reports whether s names the top-k family (valid or not).
func isTopKName(s string) bool { return isFamilyName(s, "topk") }

// isFamilyName reports whether s names the sparse family with this prefix
// ("topk" or "mask"), valid or not.
func isFamilyName(s, family string) bool {
	return s == family || strings.HasPrefix(s, family+":")
}

// parseDigits parses a non-empty string of at most 9 decimal digits.
func parseDigits(s string) (int, bool) {
	if len(s) == 0 || len(s) > 9 {
		return 0, false
	}
	v := 0
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = 10*v + int(s[i]-'0')
	}
	return v, true
}

// parseTopK parses a name for which isTopKName holds.
func parseTopK(s string) (k, chunk, nbits int, err error) {
	return parseSparse(s, "topk", DefaultTopK)
}

// parseSparse parses a name of a sparse family (for which isFamilyName
// holds): the bare family name has defK values of every DefaultTopKChunk.
func parseSparse(s, family string, defK int) (k, chunk, nbits int, err error) {
	rest := strings.TrimPrefix(s, family)
	if rest == "" {
		return defK, DefaultTopKChunk, DefaultTopKBits, nil
	}
	rest = strings.TrimPrefix(rest, ":")
	kc, bs, hasBits := strings.Cut(rest, ":")
	ks, cs, slash := strings.Cut(kc, "/")
	k, okK := parseDigits(ks)
	chunk, okC := parseDigits(cs)
	nbits, okB := DefaultTopKBits, true
	if hasBits {
		nbits, okB = parseDigits(bs)
	}
	if !slash || !okK || !okC || !okB {
		return 0, 0, 0, fmt.Errorf("compress: codec %q: want %s, %s:K/CHUNK or %s:K/CHUNK:BITS with decimal K, CHUNK, BITS", s, family, family, family)
	}
	if err := checkTopK(int64(k), int64(chunk), int64(nbits)); err != nil {
		return 0, 0, 0, fmt.Errorf("compress: codec %q: %v", s, err)
	}
	return k, chunk, nbits, nil
}

// TopKCodec returns the canonical name of the top-k codec that keeps k
// values of every chunk consecutive ones with nbits-bit values, or an
// error if the parameters are out of range.
func TopKCodec(k, chunk, nbits int) (Codec, error) {
	if err := checkTopK(int64(k), int64(chunk), int64(nbits)); err != nil {
		return "", fmt.Errorf("compress: topk: %v", err)
	}
	return topkName(k, chunk, nbits), nil
}

// Sparse reports whether c names a valid sparse codec, top-k or random
// mask (in any spelling ParseCodec accepts), and, if so, its parameters:
// k values kept per chunk of chunk consecutive values, each sent with
// nbits bits.
func (c Codec) Sparse() (k, chunk, nbits int, ok bool) {
	var err error
	switch {
	case isTopKName(string(c)):
		k, chunk, nbits, err = parseTopK(string(c))
	case isMaskName(string(c)):
		k, chunk, nbits, err = parseMask(string(c))
	default:
		return 0, 0, 0, false
	}
	if err != nil {
		return 0, 0, 0, false
	}
	return k, chunk, nbits, true
}

// SetBeta sets the decay of the error-feedback residual: each Encode of a
// top-k codec encodes y = float32(beta*residual) + x. The default, 1, is
// plain error feedback (nothing is ever dropped); SparseLoCo uses 0.95,
// which forgets a residual entry that is never sent geometrically. beta
// must be in [0, 1]; FP32 and Int8 encoders accept only 1. On error the
// encoder is unchanged.
func (e *Encoder) SetBeta(beta float32) error {
	if !(beta >= 0 && beta <= 1) {
		return fmt.Errorf("compress: beta %v out of range [0, 1]", beta)
	}
	if e.k == 0 && beta != 1 {
		return fmt.Errorf("compress: beta %v: codec %s has no residual decay (only 1 is allowed)", beta, e.codec)
	}
	e.beta = beta
	return nil
}

// Beta returns the error-feedback decay set by SetBeta (1 by default).
func (e *Encoder) Beta() float32 { return e.beta }

// riceParam is the Rice parameter of a chunk of l values of which k are
// sent: floor(log2(l/k)), so that 2^b is at most the mean gap l/k.
func riceParam(l, k int) uint {
	return uint(bits.Len(uint(l/k)) - 1)
}

// riceBits returns the least and the most bits the Rice codes of k sorted
// distinct positions in a chunk of l values take; see MaxEncodedSize.
func riceBits(l, k int64) (lo, hi int64) {
	b := riceParam(int(l), int(k))
	lo = k * int64(1+b)
	return lo, lo + (l-k)>>b
}

// topkLayout is the section offsets of a top-k payload and the bounds on
// its size, which follow from n, k, chunk and bits alone.
type topkLayout struct {
	m       int64 // chunks
	total   int64 // values sent, the sum over chunks of min(k, chunk length)
	nlev    int   // levels per chunk: 1 for 1 bit, 2 for 2 bits
	codeOff int64 // start of the code section
	idxOff  int64 // start of the index section
	minSize int64 // payload length when every Rice code has an empty unary run
	maxSize int64 // the largest payload length (MaxEncodedSize)
}

func layoutTopK(n int64, k, chunk, nbits int) topkLayout {
	c, kk := int64(chunk), int64(k)
	full, rem := n/c, n%c
	l := topkLayout{m: full, total: full * kk, nlev: nbits}
	lo, hi := riceBits(c, kk)
	lo, hi = full*lo, full*hi
	if rem > 0 {
		l.m++
		kr := min(kk, rem)
		l.total += kr
		rlo, rhi := riceBits(rem, kr)
		lo, hi = lo+rlo, hi+rhi
	}
	l.codeOff = headerTopK + 4*int64(l.nlev)*l.m
	l.idxOff = l.codeOff + (l.total*int64(nbits)+7)/8
	l.minSize = l.idxOff + (lo+7)/8
	l.maxSize = l.idxOff + (hi+7)/8
	return l
}

// bitWriter writes values LSB-first into buf.
type bitWriter struct {
	buf  []byte
	pos  int
	acc  uint64
	nacc uint
}

// write writes the low n bits of v (whose other bits are zero); n <= 56.
func (w *bitWriter) write(v uint64, n uint) {
	w.acc |= v << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.buf[w.pos] = byte(w.acc)
		w.pos++
		w.acc >>= 8
		w.nacc -= 8
	}
}

// writeRice writes the Rice code of v with parameter b <= 16: v>>b one
// bits, a zero bit, then the low b bits of v.
func (w *bitWriter) writeRice(v uint64, b uint) {
	q := v >> b
	for ; q >= 32; q -= 32 {
		w.write(1<<32-1, 32)
	}
	// q ones, the terminating zero, the low bits: at most 32+16 bits.
	w.write((v&(1<<b-1))<<(q+1)|(1<<q-1), uint(q)+1+b)
}

// flush writes the last partial byte, padded with zero bits.
func (w *bitWriter) flush() {
	if w.nacc > 0 {
		w.buf[w.pos] = byte(w.acc)
		w.pos++
		w.acc, w.nacc = 0, 0
	}
}

// bitReader reads values LSB-first from buf, detecting its end. The bits
// of acc above the nacc bits not yet read are zero.
type bitReader struct {
	buf  []byte
	pos  int // next byte of buf to load into acc
	acc  uint64
	nacc uint
}

// refill loads whole bytes into acc while they fit, leaving at least 56
// bits in it unless buf ends first.
func (r *bitReader) refill() {
	if r.pos+8 <= len(r.buf) {
		// Load 8 bytes, keep the whole ones that fit, clear the rest.
		r.acc |= binary.LittleEndian.Uint64(r.buf[r.pos:]) << r.nacc
		adv := (63 - r.nacc) >> 3
		r.pos += int(adv)
		r.nacc += 8 * adv // at most 63
		r.acc &= 1<<r.nacc - 1
		return
	}
	for r.nacc <= 56 && r.pos < len(r.buf) {
		r.acc |= uint64(r.buf[r.pos]) << r.nacc
		r.pos++
		r.nacc += 8
	}
}

// read returns the next n <= 56 bits; ok is false if buf has fewer left.
func (r *bitReader) read(n uint) (v uint64, ok bool) {
	if r.nacc < n {
		r.refill()
		if r.nacc < n {
			return 0, false
		}
	}
	v = r.acc & (1<<n - 1)
	r.acc >>= n
	r.nacc -= n
	return v, true
}

// Outcomes of bitReader.unary.
const (
	unaryOK = iota
	unaryShort
	unaryLong
)

// unary reads a run of one bits and the zero bit that ends it, and returns
// the run's length q. It gives up with unaryLong as soon as the run is
// longer than limit (without reading further), and with unaryShort if buf
// ends first.
func (r *bitReader) unary(limit uint64) (q uint64, outcome int) {
	for {
		if r.nacc == 0 {
			r.refill()
			if r.nacc == 0 {
				return q, unaryShort
			}
		}
		// The bits above nacc are zero, so the run ends at or below nacc.
		t := min(uint(bits.TrailingZeros64(^r.acc)), r.nacc)
		q += uint64(t)
		if q > limit {
			return q, unaryLong
		}
		if t < r.nacc {
			r.acc >>= t + 1
			r.nacc -= t + 1
			return q, unaryOK
		}
		r.acc, r.nacc = 0, 0
	}
}

// rest reports what is left after the last read: trailing is true if a
// whole byte of buf is unread, padOK whether the unread bits of the last
// byte read are zero.
func (r *bitReader) rest() (trailing, padOK bool) {
	return r.nacc >= 8 || r.pos < len(r.buf), r.acc == 0
}

// selectTopK appends to sel[:0] the indices, in increasing order, of the
// k largest a[j] (the magnitude bits of a chunk's values), ties going to
// the lower index, and returns it; cand is scratch of len(a) values.
// Magnitude bits order like the magnitudes; the k-th largest is found by
// a radix select on bytes from the most significant one, which after the
// first byte only looks at the values in the bucket that holds it, and
// stops as soon as a whole bucket is taken.
func selectTopK(a []uint32, k int, sel []int32, cand []uint32) []int32 {
	var prefix, mask uint32
	need := k // how many values equal to prefix (under mask) to take
	src := a  // the values equal to prefix under mask
	for shift := 24; shift >= 0; shift -= 8 {
		var hist [256]int32
		for _, v := range src {
			hist[(v>>shift)&0xff]++
		}
		b := 255
		for ; b > 0 && int(hist[b]) < need; b-- {
			need -= int(hist[b])
		}
		prefix |= uint32(b) << shift
		mask |= 0xff << shift
		if int(hist[b]) == need || shift == 0 {
			break // take the whole bucket, or need of its equal values
		}
		// Keep bucket b, without branches (in place once src is cand: the
		// write index never passes the read index).
		m := 0
		for _, v := range src {
			cand[m] = v
			var in int
			if v&mask == prefix {
				in = 1
			}
			m += in
		}
		src = cand[:m]
	}
	sel = sel[:0]
	for j, v := range a {
		if mv := v & mask; mv > prefix || mv == prefix && need > 0 {
			if mv == prefix {
				need--
			}
			sel = append(sel, int32(j))
		}
	}
	return sel
}

// magnitude returns the float32 whose bits are a (sign bit clear) as a
// float64.
func magnitude(a uint32) float64 { return float64(math.Float32frombits(a)) }

// binMeans returns the means of the chosen magnitudes at most t and above
// t; an empty bin takes the other bin's mean.
func binMeans(a []uint32, sel []int32, t float64) (lo, hi float64) {
	var sl, sh float64
	var nl, nh int
	for _, j := range sel {
		if v := magnitude(a[j]); v > t {
			sh += v
			nh++
		} else {
			sl += v
			nl++
		}
	}
	lo, hi = sl/float64(max(nl, 1)), sh/float64(max(nh, 1))
	if nl == 0 {
		lo = hi
	}
	if nh == 0 {
		hi = lo
	}
	return lo, hi
}

// topkLevels returns a chunk's levels for its chosen magnitudes and the
// threshold t above which a magnitude takes the high level (for 1 bit,
// lo = hi is the mean magnitude and t is +Inf).
func topkLevels(a []uint32, sel []int32, nbits int) (lo, hi float32, t float64) {
	var sum float64
	for _, j := range sel {
		sum += magnitude(a[j])
	}
	t = sum / float64(len(sel))
	if nbits == 1 {
		return float32(t), float32(t), math.Inf(1)
	}
	for range lloydIters {
		l, h := binMeans(a, sel, t)
		t = (l + h) / 2
	}
	l, h := binMeans(a, sel, t)
	lo, hi = float32(l), float32(h)
	return lo, max(lo, hi), t
}

// checkFeedback checks that y = float32(beta*residual) + x is finite
// everywhere, without touching the residual, so that an error leaves the
// encoder unchanged.
func (e *Encoder) checkFeedback(x []float32) error {
	r, beta := e.residual, e.beta
	for i, v := range x {
		if y := float32(beta*r[i]) + v; !finite(y) {
			if !finite(v) {
				return notFinite(i, v)
			}
			return fmt.Errorf("compress: encode: x[%d] + beta*residual[%d] = %v + %v*%v is not finite", i, i, v, beta, r[i])
		}
	}
	return nil
}

// loadChunk fills the encoder's chunk scratch with y = float32(beta*rc) + xc
// and the magnitude bits of y, and returns both.
func (e *Encoder) loadChunk(xc, rc []float32) (y []float32, a []uint32) {
	y, a = e.ybuf[:len(xc)], e.abuf[:len(xc)]
	for j, v := range xc {
		yj := float32(e.beta*rc[j]) + v
		y[j] = yj
		a[j] = math.Float32bits(yj) &^ (1 << 31)
	}
	return y, a
}

// quantizeChosen writes the levels of a chunk's chosen entries sel (of y,
// whose magnitude bits are a) to lv and their codes to cw, in the order of
// sel, and subtracts each one's decoded value from y, leaving y the
// chunk's new residual.
func quantizeChosen(y []float32, a []uint32, sel []int32, nbits int, lv []byte, cw *bitWriter) {
	llo, lhi, t := topkLevels(a, sel, nbits)
	binary.LittleEndian.PutUint32(lv, math.Float32bits(llo))
	if nbits == 2 {
		binary.LittleEndian.PutUint32(lv[4:], math.Float32bits(lhi))
	}
	for _, j := range sel {
		var code uint64
		dec := llo
		if nbits == 2 && magnitude(a[j]) > t {
			code, dec = 1, lhi
		}
		if a[j] != math.Float32bits(y[j]) { // sign bit set
			code |= 1 << (nbits - 1)
			dec = -dec
		}
		cw.write(code, uint(nbits))
		y[j] -= dec
	}
}

func (e *Encoder) encodeTopK(x []float32) ([]byte, error) {
	if err := e.checkFeedback(x); err != nil {
		return nil, err
	}
	r := e.residual
	n, k, chunk, nbits := len(x), e.k, e.chunk, e.bits
	lay := layoutTopK(int64(n), k, chunk, nbits)
	// The payload is built in e.pbuf, which has room for the largest one,
	// then copied out at its actual size.
	p := e.pbuf
	putSparseHeader(p, codecTopK, n, k, chunk, nbits)
	levels := p[headerTopK:lay.codeOff]
	cw := bitWriter{buf: p[lay.codeOff:lay.idxOff]}
	iw := bitWriter{buf: p[lay.idxOff:]}

	// Per chunk, select, quantise, write, update the residual.
	for c := range int(lay.m) {
		lo := c * chunk
		hi := min(lo+chunk, n)
		y, a := e.loadChunk(x[lo:hi], r[lo:hi])
		kc := min(k, hi-lo)
		e.sel = selectTopK(a, kc, e.sel, e.cand)
		b := riceParam(hi-lo, kc)
		prev := int32(-1)
		for _, j := range e.sel {
			iw.writeRice(uint64(j-prev-1), b)
			prev = j
		}
		quantizeChosen(y, a, e.sel, nbits, levels[4*lay.nlev*c:], &cw)
		// Entries not sent keep all of y.
		copy(r[lo:hi], y)
	}
	iw.flush()
	cw.flush()
	size := lay.idxOff + int64(iw.pos)
	if int64(cw.pos) != lay.idxOff-lay.codeOff || size < lay.minSize || size > lay.maxSize {
		panic("compress: encode: top-k layout mismatch")
	}
	out := make([]byte, size)
	copy(out, p)
	return out, nil
}

// topkIter walks the entries of a top-k payload body in increasing index
// order, validating as it goes.
type topkIter struct {
	n, k, chunk, nbits int
	m                  int
	levels             []byte
	ir, cr             bitReader
	c                  int  // next chunk to start
	base, clen         int  // current chunk's first index and length
	kc                 int  // the current chunk's number of indices
	b                  uint // its Rice parameter
	i                  int  // entries of the current chunk read so far
	prev               int  // previous index within the chunk, -1 at its start
	lvl                [2]float32
}

// validLevel reports whether v is a level the decoder accepts: finite,
// >= 0 and with the sign bit clear.
func validLevel(v float32) bool {
	return math.Float32bits(v)>>31 == 0 && v <= math.MaxFloat32 // false for NaN
}

// next returns the next entry's index in the whole vector and its value;
// ok is false after the last entry.
func (it *topkIter) next() (i int, v float32, ok bool, err error) {
	for it.i == it.kc {
		if it.c == it.m {
			return 0, 0, false, nil
		}
		c := it.c
		it.c++
		it.base = c * it.chunk
		it.clen = min(it.chunk, it.n-it.base)
		it.kc = min(it.k, it.clen)
		it.b = riceParam(it.clen, it.kc)
		it.i = 0
		it.prev = -1
		if it.lvl, err = readLevels(it.levels, c, it.nbits, "topk"); err != nil {
			return 0, 0, false, err
		}
	}
	// This index may be at most clen-(kc-i), leaving room for the kc-i-1
	// after it: its gap value at most room.
	room := uint64(it.clen - it.kc + it.i - it.prev - 1)
	var gap uint64
	r := &it.ir
	if r.nacc < 48 {
		r.refill()
	}
	if t := uint(bits.TrailingZeros64(^r.acc)); t+1+it.b <= r.nacc && uint64(t) <= room>>it.b {
		// The whole code is in acc (t <= nacc, as the bits of acc above
		// nacc are zero), and its run is short enough.
		gap = uint64(t)<<it.b | r.acc>>(t+1)&(1<<it.b-1)
		r.acc >>= t + 1 + it.b
		r.nacc -= t + 1 + it.b
	} else {
		q, outcome := r.unary(room >> it.b)
		switch outcome {
		case unaryShort:
			return 0, 0, false, it.truncated()
		case unaryLong:
			return 0, 0, false, fmt.Errorf("compress: topk chunk %d: index code %d of %d has a unary run longer than %d, more than the chunk's %d values leave room for",
				it.c-1, it.i, it.kc, room>>it.b, it.clen)
		}
		low, okLow := r.read(it.b)
		if !okLow {
			return 0, 0, false, it.truncated()
		}
		gap = q<<it.b | low
	}
	j := it.prev + 1 + int(gap) // gap < room + 2^b <= 2^17: no overflow
	if gap > room {
		if j >= it.clen {
			return 0, 0, false, fmt.Errorf("compress: topk chunk %d: index %d outside the chunk's %d values", it.c-1, j, it.clen)
		}
		return 0, 0, false, fmt.Errorf("compress: topk chunk %d: index %d (code %d of %d) leaves %d positions for the %d indices after it",
			it.c-1, j, it.i, it.kc, it.clen-1-j, it.kc-it.i-1)
	}
	code, okCode := it.cr.read(uint(it.nbits))
	if !okCode { // the layout gives the code section exactly T codes
		return 0, 0, false, fmt.Errorf("compress: topk code section is truncated")
	}
	v = it.lvl[code&1]
	if code>>(it.nbits-1) != 0 {
		v = -v
	}
	it.prev = j
	it.i++
	return it.base + j, v, true, nil
}

// truncated is the error for an index section that ends inside a code.
func (it *topkIter) truncated() error {
	return fmt.Errorf("compress: topk index section ends inside code %d of chunk %d: truncated", it.i, it.c-1)
}

func (d *decoder) topk(body []byte, h header, out []float32, weight float32, add bool) error {
	n := len(out)
	k, chunk, nbits := int(h.k), int(h.chunk), int(h.bits)
	lay := layoutTopK(int64(n), k, chunk, nbits)
	least, most := uint64(lay.minSize-headerTopK), uint64(lay.maxSize-headerTopK)
	if uint64(len(body)) < least {
		return fmt.Errorf("compress: topk body is %d bytes, want at least %d: truncated", len(body), least)
	}
	if uint64(len(body)) > most {
		return fmt.Errorf("compress: topk body is %d bytes, want at most %d: trailing data", len(body), most)
	}
	codeOff, idxOff := lay.codeOff-headerTopK, lay.idxOff-headerTopK
	it := &d.topkIt
	*it = topkIter{
		n: n, k: k, chunk: chunk, nbits: nbits, m: int(lay.m),
		levels: body[:codeOff],
		cr:     bitReader{buf: body[codeOff:idxOff]},
		ir:     bitReader{buf: body[idxOff:]},
	}
	if err := d.fill(it, out, weight, add); err != nil {
		return err
	}
	if trailing, padOK := it.ir.rest(); trailing {
		return fmt.Errorf("compress: topk index section goes on after its last code: trailing data")
	} else if !padOK {
		return fmt.Errorf("compress: topk index section has non-zero padding bits")
	}
	if _, padOK := it.cr.rest(); !padOK {
		return fmt.Errorf("compress: topk code section has non-zero padding bits")
	}
	return nil
}

// putSparseHeader writes the header of a top-k or mask payload up to its
// bits field.
func putSparseHeader(p []byte, codec byte, n, k, chunk, nbits int) {
	putHeader(p, codec, n)
	binary.LittleEndian.PutUint32(p[8:], uint32(k))
	binary.LittleEndian.PutUint32(p[12:], uint32(chunk))
	p[16] = byte(nbits)
}

// readLevels reads and checks chunk c's levels from the level section of
// a sparse payload of the family named ("topk" or "mask"); with 1 bit
// both returned levels are the chunk's one level.
func readLevels(levels []byte, c, nbits int, family string) (lvl [2]float32, err error) {
	lv := levels[4*nbits*c:]
	for l := range nbits {
		lvl[l] = math.Float32frombits(binary.LittleEndian.Uint32(lv[4*l:]))
		if !validLevel(lvl[l]) {
			return lvl, fmt.Errorf("compress: %s chunk %d has invalid level %v", family, c, lvl[l])
		}
	}
	if nbits == 1 {
		lvl[1] = lvl[0]
	} else if lvl[0] > lvl[1] {
		return lvl, fmt.Errorf("compress: %s chunk %d has low level %v above high level %v", family, c, lvl[0], lvl[1])
	}
	return lvl, nil
}

// entryIter walks the entries of a sparse payload in increasing index
// order; next's ok is false after the last one.
type entryIter interface {
	next() (i int, v float32, ok bool, err error)
}

// fill decodes the entries of it into out (zero elsewhere) or, with add,
// adds weight times them to out.
func (d *decoder) fill(it entryIter, out []float32, weight float32, add bool) error {
	if !add {
		clear(out)
		for {
			i, v, ok, err := it.next()
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			out[i] = v
		}
	}
	// Decode into ChunkSize blocks of scratch (zero where nothing was
	// sent) and add each with Axpy, so that the result is bitwise that of
	// Decode followed by Axpy, -0 and all.
	n := len(out)
	i, v, ok, err := it.next()
	for lo := 0; lo < n; lo += ChunkSize {
		hi := min(lo+ChunkSize, n)
		s := d.scratch[:hi-lo]
		clear(s)
		for ok && i < hi {
			s[i-lo] = v
			i, v, ok, err = it.next()
		}
		if err != nil {
			return err
		}
		vecmath.Axpy(weight, s, out[lo:hi])
	}
	return nil
}
