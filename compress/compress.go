// Package compress encodes the float32 vectors that DiLoCo workers and the
// aggregator exchange each round (pseudo-gradients and updates) for the
// wire.
//
// Four codec families exist. FP32 sends the values unchanged. Int8 quantises each
// chunk of ChunkSize values to int8 with a per-chunk absmax scale, keeps the
// quantisation error in an error-feedback residual that is added to the
// next round's vector (so that, summed over rounds, nothing is lost), and
// entropy-codes the int8 stream with compress/flate. Top-k
// ("topk:K/CHUNK:BITS", SparseLoCo's recipe) sends only the K values of
// largest magnitude in every chunk of CHUNK, each as 1 or 2 bits plus a
// Rice-coded index, and keeps everything else in an error-feedback
// residual. Random mask ("mask:K/CHUNK:BITS") sends K values of every
// chunk of CHUNK at positions drawn from a seed the payload carries
// (Encoder.SetMaskSeed), quantised like top-k's, with no indices, and
// keeps the rest in the residual like top-k: encoders on one seed send
// the same positions, so a sum of their payloads is no denser than one.
//
// # Int8 quantisation
//
// The vector y = x + residual is split into chunks of ChunkSize elements
// (the last chunk may be shorter). For each chunk, absmax is the largest
// |y[i]| and scale is absmax/127 rounded up to the next float32 (so that
// absmax/scale <= 127; for absmax near math.MaxFloat32 the scale is capped
// so that 127*scale stays finite). Each element is stored as
// q = round-half-away-from-zero(y[i]/scale) clamped to [-127, 127]; a chunk
// whose absmax is 0 has scale 0 and all q = 0. The decoded value is
// float32(q)*scale, which is within scale/2 of y[i] (plus the float32
// rounding of the product), and the encoder keeps
// residual[i] = y[i] - float32(q)*scale for the next round.
//
// The int8 stream is then compressed with compress/flate at level
// flate.HuffmanOnly. Quantised gradients hold no repeated byte strings for
// LZ77 matching to find, so all of the gain comes from the uneven symbol
// frequencies, which Huffman coding alone captures. Measured on 1<<20
// values (see BenchmarkFlateLevel), HuffmanOnly gave the smallest payload
// of the levels tried, in bytes per value: 0.917 on N(0,1) data (BestSpeed
// 0.917, DefaultCompression 0.920); 0.296 on a mixture of 90% N(0,1e-8)
// and 10% N(0,1e-4) values (BestSpeed 0.409, DefaultCompression 0.358:
// their short matches cost more than the literals they replace); 0.626 on
// a mixture of 90% N(0,1e-4) and 10% N(0,1e-2) (BestSpeed 0.626,
// DefaultCompression 0.641). It compresses the int8 stream at about 250M
// values/s, like BestSpeed on Gaussian data and 2.5 times faster on the
// first mixture, and 5 to 30 times faster than DefaultCompression.
// Huffman codes spend at least one bit per value, so an all-zero vector
// still takes n/8 bytes.
//
// # Top-k sparsification
//
// A top-k codec is named "topk:K/CHUNK:BITS" (ParseCodec also accepts
// "topk" for 64/4096:2 and "topk:K/CHUNK" for 2 bits). Its encoder has a
// residual decay beta (Encoder.SetBeta; default 1, plain error feedback;
// SparseLoCo uses 0.95) and encodes y = float32(beta*residual) + x (the
// product is rounded before the addition, never fused). y is split into
// chunks of CHUNK values, the last possibly shorter; from a chunk of L
// values the k = min(K, L) entries of largest |y| are sent, ties going to
// the lower index (found by a radix select on the float32 bit patterns of
// |y|). Their values are quantised with per-chunk levels:
//
//   - BITS = 1: every sent value decodes to sign(y)*level, where level is
//     the mean |y| of the chunk's sent entries.
//   - BITS = 2: a sign bit and a magnitude bit. The sent magnitudes are
//     split at a threshold t into a low bin (|y| <= t) and a high bin,
//     each with its own level, the mean |y| of the entries in it (an empty
//     bin takes the other's level). t starts at the mean magnitude and is
//     refined by 4 Lloyd iterations (t = the midpoint of the two levels,
//     then split again), each of which can only lower the squared error.
//
// Means are summed in float64 in index order and rounded to float32 once,
// so encoding is bitwise reproducible on every platform. Values not sent
// decode to +0, sent ones to level or -level (the sign of y is kept
// exactly), and the encoder keeps residual = y - decoded(y): entries not
// sent keep all of y, sent entries their quantisation error.
//
// The 2-bit codebook {-hi, -lo, +lo, +hi} is a symmetric variant of
// Templar's (4 bins of centred values, each decoded to the mean of the
// values in it): the top-k values of a chunk all have |y| at least the
// k-th largest magnitude, so they cluster at two signs and none lies near
// zero; a sign bit plus two per-bin means fits that shape with 8 bytes of
// levels per chunk, never flips a sign, and on Gaussian data has a third
// of the 1-bit squared error (TestTopKTwoBits).
//
// The indices of a chunk are sent as Rice codes of the gaps between
// them, so the payload size depends on where the sent values lie as well
// as on n and the parameters; MaxEncodedSize bounds it (see the format
// below). With the defaults, 1<<20 Gaussian values take 21638 bytes,
// 0.0206 bytes per value or 1.32 bytes per value sent (7.56 bits per
// index, where an entropy coder of the chosen set could approach
// log2(C(4096, 64))/64 = 7.36; 2 bits of code; 1 bit of levels), 44
// times less than int8 (0.917), and never more than 22513 bytes (0.0215
// per value) whatever the data. With 1 bit it is 0.0177; topk:128/4096:2
// takes 0.0354 (6.56 bits per index), topk:256/4096:2 0.0609 (5.55 bits
// per index; TestTopKSize).
//
// # Random masks
//
// A random-mask codec is named "mask:K/CHUNK:BITS" ("mask" alone is
// 1024/4096:2; "mask:K/CHUNK" has 2 bits). Its encoder keeps a residual
// with decay beta as top-k's does and encodes y = float32(beta*residual) +
// x; from each chunk of L values it sends k = min(K, L) positions drawn
// from the mask seed, whatever y holds, with the levels and codes of
// top-k's quantiser over those values. The positions of chunk c are
// chosen by selection sampling (Knuth's Algorithm S): position j of the
// chunk is taken when the high 64 bits of u*(L-j) are below the number
// still needed, u the next value of a SplitMix64 stream whose state
// starts at seed XOR mix(c + 0x6a09e667f3bcc909) (mix is SplitMix64's
// finaliser) and advances by 0x9e3779b97f4a7c15 before each draw; once
// as many positions remain as are needed, all are taken. Without
// indices a value costs its BITS bits: at 1024/4096:2, 0.0645 bytes per
// value, about what topk:256/4096:2 costs (0.0609) for four times the
// values.
//
// # Payload format
//
// All integers are little-endian.
//
//	offset size  field
//	0      2     magic "CZ"
//	2      1     version, 1
//	3      1     codec: 1 = fp32, 2 = int8, 3 = topk, 4 = mask
//	4      4     n, the number of values (uint32)
//
// fp32 body (payload length 8 + 4n):
//
//	8      4n    the n values as IEEE-754 float32, all finite
//
// int8 header continuation and body:
//
//	8      4     chunk size c (uint32, 1 <= c <= 1<<20; the encoder writes ChunkSize)
//	12     4m    m = ceil(n/c) chunk scales as float32, finite, >= 0, sign bit clear,
//	             and small enough that 127*scale is finite
//	12+4m  ...   a raw DEFLATE stream (RFC 1951, no zlib or gzip wrapper) that
//	             decodes to exactly n bytes, the values q as int8 two's complement
//	             in [-127, 127], and that ends exactly at the end of the payload
//
// Value i belongs to chunk i/c and decodes to float32(q[i])*scale[i/c].
//
// topk header continuation and body:
//
//	8      4     k, values sent per chunk (uint32, 1 <= k <= c)
//	12     4     chunk size c (uint32, 1 <= c <= MaxTopKChunk = 65536)
//	16     1     bits b per value, 1 or 2
//	17     4bm   levels as float32 for each of the m = ceil(n/c) chunks in
//	             order: b = 1 one level, b = 2 the low then the high level,
//	             low <= high; all finite, >= 0, sign bit clear
//	...    C     codes: for each chunk in order, one code per value sent
//	             (T = the sum over chunks of k_c = min(k, L), L the chunk's
//	             length), b bits each; C = ceil(T*b/8). b = 2: bit 0
//	             selects the level (0 low, 1 high), bit 1 is the sign (1
//	             negative); b = 1: the code is the sign
//	...    I     indices: for each chunk in order, the Rice codes of its
//	             k_c positions p_0 < p_1 < ... < p_(k_c-1) < L within the
//	             chunk, in the order of the codes: of p_0, then of each
//	             p_i - p_(i-1) - 1. The chunk's Rice parameter is
//	             r = floor(log2(floor(L/k_c))) (so 2^r <= L/k_c; 0 when
//	             L < 2k_c), and the Rice code of v is v>>r one bits, a zero
//	             bit, then the low r bits of v. The codes of all chunks
//	             follow each other without a gap; after the last one the
//	             section is padded with zero bits to a whole byte, once,
//	             which ends the payload
//
// The payload is 17 + 4bm + C + I bytes, I being the index bits rounded
// up to bytes; a chunk's codes take between k_c*(1+r) and
// k_c*(1+r) + (L-k_c)>>r bits (see MaxEncodedSize). Each index must leave
// room below L for the ones after it (p_i <= L - k_c + i). Both bit
// sections are packed LSB first (a field's bit 0 goes to the lowest free
// bit of the current byte, and fields continue across bytes; a Rice
// code is its one bits and its zero bit, in that order, then its low r
// bits as one field). Position j of chunk i is
// value i*c + j and decodes to its level, negated if the sign bit is set;
// every other value decodes to +0.
//
// mask header continuation and body:
//
//	8      4     k, values sent per chunk (uint32, 1 <= k <= c)
//	12     4     chunk size c (uint32, 1 <= c <= MaxTopKChunk)
//	16     1     bits b per value, 1 or 2
//	17     8     the mask seed (uint64)
//	25     4bm   levels, as for topk
//	...    C     codes, as for topk, in increasing position order; the
//	             section is padded with zero bits to a whole byte and
//	             ends the payload
//
// The payload is exactly 25 + 4bm + ceil(T*b/8) bytes. The positions are
// those the seed draws (see Random masks); every other value decodes to
// +0.
//
// # Determinism
//
// Encoding is deterministic: the same encoder state (residual and beta) and
// input give the same bytes. (compress/flate does not promise identical
// output across Go releases; payloads from any release decode identically.
// Top-k does not use flate.)
//
// # Decoding untrusted payloads
//
// Decode and DecodeAdd treat the payload as untrusted: they never panic,
// never allocate based on sizes read from it (the caller passes the output
// slice, whose length must equal the payload's n), read the flate stream
// through a limit of n+1 bytes so a decompression bomb cannot make them run
// long, and reject anything that is not exactly a payload as the encoder
// would write it in structure (bad magic, version or codec, wrong n, bad
// chunk size, bad scales, truncation, trailing bytes, int8 value -128,
// non-finite fp32 values; for top-k: k, chunk size or bits out of range, a
// length outside the bounds n and the parameters give, invalid or
// misordered levels, a Rice code whose index would leave too little room
// in its chunk (a unary run is abandoned as soon as it is longer than the
// room allows), an index section that ends inside a code or goes on after
// the last one, non-zero padding bits). Errors are one line starting with
// "compress: ". The padding bits after the end of the DEFLATE stream's
// last block are not checked. Any valid payload is accepted, whatever its
// codec: a receiver that expects one codec compares DecodedSize's (which
// is in canonical spelling) with its own.
//
// Decode and DecodeAdd are safe for concurrent use. They keep their
// scratch state (a flate reader and ChunkSize-element buffers) in a
// sync.Pool; in steady state the only allocations are compress/flate's
// Huffman decoding tables, about 0.1 bytes per int8 value. Top-k decoding
// allocates nothing; DecodeAdd still adds the whole decoded vector, zeros
// included, ChunkSize values at a time, so that its result is bitwise the
// Axpy of Decode's (adding weight*0 can turn an out[i] of -0 into +0).
package compress

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/cairnlabs/cairn/vecmath"
)

// Codec names a wire encoding for float32 vectors.
type Codec string

const (
	// FP32 sends the raw little-endian float32 values (4 bytes per value,
	// lossless, no residual).
	FP32 Codec = "fp32"
	// Int8 sends per-chunk absmax int8 quantisation with error feedback,
	// entropy-coded with flate (a little under 1 byte per value on
	// Gaussian data, less when most values are small next to their chunk's
	// largest).
	Int8 Codec = "int8"
	// TopK is the top-k codec with the default parameters, in canonical
	// spelling (ParseCodec("topk") returns it): the 64 values of largest
	// magnitude in every 4096, with 2 bits each and error feedback, 0.021
	// bytes per value on Gaussian data and at most 0.0215 whatever the
	// data. Other parameters are spelled
	// "topk:K/CHUNK" or "topk:K/CHUNK:BITS"; see the package documentation.
	TopK Codec = "topk:64/4096:2"
)

// ChunkSize is the number of consecutive values that share one int8 scale.
// 1024 keeps the scale overhead at 4/1024 = 0.4% of a byte per value
// while staying local enough that a few large values only coarsen the
// quantisation of their own neighbourhood; it is also a multiple of every
// SIMD width.
const ChunkSize = 1024

// MaxChunkSize is the largest chunk size a decoder accepts in an int8
// payload header.
const MaxChunkSize = 1 << 20

const (
	version   = 1
	codecFP32 = 1
	codecInt8 = 2

	headerFP32 = 8
	headerInt8 = 12

	// flateLevel is the compress/flate level for the int8 stream; see the
	// package documentation.
	flateLevel = flate.HuffmanOnly
)

// ParseCodec returns the codec named s: "fp32", "int8", or a top-k codec
// "topk", "topk:K/CHUNK" or "topk:K/CHUNK:BITS" (K, CHUNK and BITS
// decimal, 1 <= K <= CHUNK <= MaxTopKChunk, BITS 1 or 2, default 2; "topk"
// alone is K = 64, CHUNK = 4096). It returns the canonical spelling
// ("topk:K/CHUNK:BITS" for the top-k family, without leading zeros), so
// that two spellings of the same codec compare equal; Encoder.Codec and
// DecodedSize report that spelling too.
func ParseCodec(s string) (Codec, error) {
	switch c := Codec(s); c {
	case FP32, Int8:
		return c, nil
	}
	if isTopKName(s) {
		k, chunk, nbits, err := parseTopK(s)
		if err != nil {
			return "", err
		}
		return topkName(k, chunk, nbits), nil
	}
	if isMaskName(s) {
		k, chunk, nbits, err := parseMask(s)
		if err != nil {
			return "", err
		}
		return maskName(k, chunk, nbits), nil
	}
	return "", fmt.Errorf("compress: unknown codec %q (valid: %s, %s, topk:K/CHUNK:BITS, mask:K/CHUNK:BITS)", s, FP32, Int8)
}

// maxScale is the largest float32 s with float32(127)*s finite: the largest
// int8 chunk scale the encoder writes and the decoder accepts.
var maxScale = func() float32 {
	s := float32(math.MaxFloat32 / 127)
	for !finite(127 * s) {
		s = math.Nextafter32(s, 0)
	}
	for finite(127 * math.Nextafter32(s, math.MaxFloat32)) {
		s = math.Nextafter32(s, math.MaxFloat32)
	}
	return s
}()

// finite reports whether v is neither infinite nor NaN.
func finite(v float32) bool {
	return math.Float32bits(v)&0x7f800000 != 0x7f800000
}

// validScale reports whether s is a scale the decoder accepts.
func validScale(s float32) bool {
	return math.Float32bits(s)>>31 == 0 && s <= maxScale // false for NaN
}

// chunkScale returns the int8 scale for a chunk whose largest magnitude is
// absmax (finite, >= 0): absmax/127 rounded up to a float32, capped at
// maxScale. It is 0 only when absmax is 0.
func chunkScale(absmax float32) float32 {
	s := absmax / 127
	if float64(s)*127 < float64(absmax) { // exact in float64
		s = math.Nextafter32(s, math.MaxFloat32)
	}
	return min(s, maxScale)
}

// quantize returns round-half-away-from-zero(y/scale) clamped to
// [-127, 127], for scale > 0 and finite y.
//
// Adding ±0.5 and truncating is exact here: y/scale is a quotient of two
// float32 values, so it is either exactly a half-integer or at least about
// 2^-26 away from one, far more than the float64 rounding of the quotient
// and of the addition. The code is branch-free because the rounding
// direction of noisy data is unpredictable.
func quantize(y, scale float32) int8 {
	v := float64(y) / float64(scale)
	q := int32(v + math.Copysign(0.5, v)) // |v| <= 127 + tiny, no overflow
	return int8(min(max(q, -127), 127))
}

// dequantize returns float32(q)*scale, rounded to float32 (never fused
// with a following operation).
func dequantize(q int8, scale float32) float32 {
	return float32(float32(q) * scale)
}

// Encoder encodes successive vectors of one fixed length with one codec,
// keeping the Int8 or top-k error-feedback residual between calls. An
// Encoder is not safe for concurrent use.
type Encoder struct {
	codec    Codec
	n        int
	residual []float32 // Int8 and top-k
	scales   []float32 // Int8 only, reused between calls
	out      bytes.Buffer
	qbuf     []byte // Int8 only, one chunk of quantised values
	fw       *flate.Writer
	level    int

	// Top-k and mask only (k == 0 for the other codecs).
	k, chunk, bits int
	masked         bool      // a random-mask codec
	seed           uint64    // its mask seed (SetMaskSeed)
	beta           float32   // residual decay, 1 unless SetBeta
	ybuf           []float32 // one chunk of y, then of the new residual
	abuf           []uint32  // one chunk of |y| bit patterns
	cand           []uint32  // selection scratch, one chunk
	sel            []int32   // one chunk's chosen indices
	pbuf           []byte    // room for the largest payload
}

// NewEncoder returns an encoder for vectors of length n with codec c (any
// spelling ParseCodec accepts). The Int8 and top-k residual starts at
// zero. It panics if c is not a valid codec or if n is negative or does
// not fit in a uint32 (these are programming errors; validate user input
// with ParseCodec).
func NewEncoder(c Codec, n int) *Encoder {
	return newEncoderLevel(c, n, flateLevel)
}

func newEncoderLevel(c Codec, n int, level int) *Encoder {
	pc, err := ParseCodec(string(c))
	if err != nil {
		if isTopKName(string(c)) || isMaskName(string(c)) {
			panic(err.Error())
		}
		panic(fmt.Sprintf("compress: NewEncoder: unknown codec %q", string(c)))
	}
	if n < 0 || uint64(n) > math.MaxUint32 {
		panic(fmt.Sprintf("compress: NewEncoder: length %d out of range [0, %d]", n, uint64(math.MaxUint32)))
	}
	e := &Encoder{codec: pc, n: n, level: level, beta: 1}
	switch k, chunk, nbits, sparse := pc.Sparse(); {
	case pc == Int8:
		e.residual = make([]float32, n)
		e.scales = make([]float32, (n+ChunkSize-1)/ChunkSize)
		e.qbuf = make([]byte, ChunkSize)
	case sparse:
		e.k, e.chunk, e.bits, e.masked = k, chunk, nbits, pc.Masked()
		e.residual = make([]float32, n)
		m := min(chunk, n)
		e.ybuf = make([]float32, m)
		e.abuf = make([]uint32, m)
		e.cand = make([]uint32, m)
		e.sel = make([]int32, 0, min(k, m))
		if !e.masked {
			e.pbuf = make([]byte, layoutTopK(int64(n), k, chunk, nbits).maxSize)
		}
	}
	return e
}

// Codec returns the encoder's codec, in canonical spelling.
func (e *Encoder) Codec() Codec { return e.codec }

// Residual returns the live Int8 or top-k error-feedback residual (length
// n; nil for FP32): the part of the previous inputs not yet sent, which
// the next Encode adds to its input. Callers may read it to persist the
// encoder's state and write it (for example with copy) to restore that
// state or clear it to reset it; it must stay finite, or Encode reports an
// error.
func (e *Encoder) Residual() []float32 { return e.residual }

// Encode encodes x, which must have the encoder's length n and hold only
// finite values, and returns a newly allocated payload owned by the
// caller. For Int8 it encodes y = x + residual, for top-k
// y = float32(beta*residual) + x (see SetBeta), and sets residual to
// y - decoded(y). On error the residual is unchanged.
func (e *Encoder) Encode(x []float32) ([]byte, error) {
	if len(x) != e.n {
		return nil, fmt.Errorf("compress: encode: got %d values, encoder length is %d", len(x), e.n)
	}
	switch {
	case e.codec == FP32:
		return e.encodeFP32(x)
	case e.masked:
		return e.encodeMask(x)
	case e.k > 0:
		return e.encodeTopK(x)
	}
	return e.encodeInt8(x)
}

func notFinite(i int, v float32) error {
	return fmt.Errorf("compress: encode: x[%d] = %v is not finite", i, v)
}

func putHeader(b []byte, codec byte, n int) {
	b[0], b[1], b[2], b[3] = 'C', 'Z', version, codec
	binary.LittleEndian.PutUint32(b[4:8], uint32(n))
}

func (e *Encoder) encodeFP32(x []float32) ([]byte, error) {
	p := make([]byte, headerFP32+4*len(x))
	putHeader(p, codecFP32, len(x))
	body := p[headerFP32:]
	for i, v := range x {
		if !finite(v) {
			return nil, notFinite(i, v)
		}
		binary.LittleEndian.PutUint32(body[4*i:], math.Float32bits(v))
	}
	return p, nil
}

func (e *Encoder) encodeInt8(x []float32) ([]byte, error) {
	r := e.residual
	// Pass 1: validate and compute the scales without touching the
	// residual, so that an error leaves the encoder unchanged.
	for c := range e.scales {
		lo := c * ChunkSize
		hi := min(lo+ChunkSize, len(x))
		xc, rc := x[lo:hi], r[lo:hi]
		// Non-negative float32 values order like their bit patterns, and
		// |y| is finite iff its bits are below those of +Inf.
		var amax uint32
		for j, v := range xc {
			ab := math.Float32bits(v+rc[j]) &^ (1 << 31)
			if ab >= 0x7f800000 {
				if !finite(v) {
					return nil, notFinite(lo+j, v)
				}
				return nil, fmt.Errorf("compress: encode: x[%d] + residual[%d] = %v + %v is not finite", lo+j, lo+j, v, rc[j])
			}
			amax = max(amax, ab)
		}
		e.scales[c] = chunkScale(math.Float32frombits(amax))
	}

	e.out.Reset()
	var hdr [headerInt8]byte
	putHeader(hdr[:], codecInt8, len(x))
	binary.LittleEndian.PutUint32(hdr[8:], ChunkSize)
	e.out.Grow(headerInt8 + 4*len(e.scales) + len(x) + len(x)/32 + 64)
	e.out.Write(hdr[:])
	var sb [4]byte
	for _, s := range e.scales {
		binary.LittleEndian.PutUint32(sb[:], math.Float32bits(s))
		e.out.Write(sb[:])
	}
	if e.fw == nil {
		fw, err := flate.NewWriter(&e.out, e.level)
		if err != nil {
			return nil, fmt.Errorf("compress: encode: %v", err)
		}
		e.fw = fw
	} else {
		e.fw.Reset(&e.out)
	}

	// Pass 2: quantise, update the residual, stream the bytes to flate.
	for c, s := range e.scales {
		lo := c * ChunkSize
		hi := min(lo+ChunkSize, len(x))
		xc, rc, q := x[lo:hi], r[lo:hi], e.qbuf[:hi-lo]
		if s == 0 {
			// All y are zero: q = 0 and y - 0 = 0 is the new residual.
			clear(q)
			clear(rc)
		} else {
			for j, v := range xc {
				y := v + rc[j]
				qi := quantize(y, s)
				q[j] = byte(qi)
				rc[j] = y - dequantize(qi, s)
			}
		}
		if _, err := e.fw.Write(q); err != nil {
			return nil, fmt.Errorf("compress: encode: %v", err)
		}
	}
	if err := e.fw.Close(); err != nil {
		return nil, fmt.Errorf("compress: encode: %v", err)
	}
	return bytes.Clone(e.out.Bytes()), nil
}

// maxStoredBlock is compress/flate's largest stored block (65535 bytes).
const maxStoredBlock = 1<<16 - 1

// MaxEncodedSize is the largest payload an Encoder of codec c writes for n
// values, so that a receiver can refuse a larger one before reading it.
// For FP32 it is exact: 8 + 4n. For Int8 it is the 12-byte header, the
// 4-byte chunk scales and the flate stream of the n int8 values, which
// compress/flate at HuffmanOnly writes as blocks of at most 65535 values,
// each either stored (the values plus 5 bytes of header) or Huffman-coded
// only when that is smaller, followed by an empty final stored block and
// byte alignment (at most 6 bytes); 16 bytes of slack are added. For a
// top-k codec (any spelling ParseCodec accepts) it is the header, the
// levels and the codes, whose sizes follow from n and the parameters, and
// the largest index section (see the payload format): in a chunk of L
// values with k_c indices and Rice parameter r, the codes take k_c*(1+r)
// bits besides their unary runs, and the runs add up to at most
// (L-k_c)>>r bits, because the values coded (p_0, then each gap minus
// one) add up to p_(k_c-1) - (k_c-1) <= L - k_c, and a sum of floor(v/2^r)
// is at most the floor of the sum over 2^r. A chunk that sends its last
// k_c positions reaches that; the bits of all chunks are rounded up to a
// byte once. So the bound is the exact size of a payload whose every
// chunk sends its last positions. It returns 0 for an unknown codec or a
// negative n.
func MaxEncodedSize(c Codec, n int) int64 {
	if n < 0 {
		return 0
	}
	v := int64(n)
	switch c {
	case FP32:
		return headerFP32 + 4*v
	case Int8:
		chunks := (v + ChunkSize - 1) / ChunkSize
		blocks := (v + maxStoredBlock - 1) / maxStoredBlock
		return headerInt8 + 4*chunks + v + 5*blocks + 6 + 16
	}
	if k, chunk, nbits, ok := c.Sparse(); ok {
		if c.Masked() {
			return layoutMask(v, k, chunk, nbits).size
		}
		return layoutTopK(v, k, chunk, nbits).maxSize
	}
	return 0
}

// header is a parsed payload header.
type header struct {
	codec  Codec // "" for top-k: see name
	n      uint32
	chunk  uint32 // int8 and top-k
	k      uint32 // top-k and mask only
	bits   uint8  // top-k and mask only
	mask   bool   // a random-mask codec
	seed   uint64 // mask only
	hdrLen int
}

// name returns the payload's codec in canonical spelling.
func (h header) name() Codec {
	if h.mask {
		return maskName(int(h.k), int(h.chunk), int(h.bits))
	}
	if h.k > 0 {
		return topkName(int(h.k), int(h.chunk), int(h.bits))
	}
	return h.codec
}

func parseHeader(p []byte) (header, error) {
	if len(p) < headerFP32 {
		return header{}, fmt.Errorf("compress: payload is %d bytes, shorter than the %d-byte header", len(p), headerFP32)
	}
	if p[0] != 'C' || p[1] != 'Z' {
		return header{}, fmt.Errorf("compress: bad magic %q, want \"CZ\"", p[:2])
	}
	if p[2] != version {
		return header{}, fmt.Errorf("compress: unsupported version %d, want %d", p[2], version)
	}
	h := header{n: binary.LittleEndian.Uint32(p[4:8])}
	switch p[3] {
	case codecFP32:
		h.codec, h.hdrLen = FP32, headerFP32
	case codecInt8:
		h.codec, h.hdrLen = Int8, headerInt8
		if len(p) < headerInt8 {
			return header{}, fmt.Errorf("compress: int8 payload is %d bytes, shorter than the %d-byte header", len(p), headerInt8)
		}
		h.chunk = binary.LittleEndian.Uint32(p[8:12])
		if h.chunk == 0 || h.chunk > MaxChunkSize {
			return header{}, fmt.Errorf("compress: chunk size %d out of range [1, %d]", h.chunk, MaxChunkSize)
		}
	case codecTopK, codecMask:
		family := "topk"
		h.hdrLen, h.mask = headerTopK, p[3] == codecMask
		if h.mask {
			family, h.hdrLen = "mask", headerMask
		}
		if len(p) < h.hdrLen {
			return header{}, fmt.Errorf("compress: %s payload is %d bytes, shorter than the %d-byte header", family, len(p), h.hdrLen)
		}
		k := binary.LittleEndian.Uint32(p[8:12])
		chunk := binary.LittleEndian.Uint32(p[12:16])
		if err := checkTopK(int64(k), int64(chunk), int64(p[16])); err != nil {
			return header{}, fmt.Errorf("compress: %s codec header: %v", family, err)
		}
		h.k, h.chunk, h.bits = k, chunk, p[16]
		if h.mask {
			h.seed = binary.LittleEndian.Uint64(p[17:25])
		}
	default:
		return header{}, fmt.Errorf("compress: unknown codec byte %d", p[3])
	}
	return h, nil
}

// DecodedSize reads only the payload's header and returns its codec and
// number of values. It does not check the body.
func DecodedSize(payload []byte) (Codec, int, error) {
	h, err := parseHeader(payload)
	if err != nil {
		return "", 0, err
	}
	if uint64(h.n) > math.MaxInt {
		return "", 0, fmt.Errorf("compress: payload holds %d values, more than this platform can index", h.n)
	}
	return h.name(), int(h.n), nil
}

// Decode decodes payload into out, whose length must equal the payload's
// number of values. On error the contents of out are unspecified (they may
// be partly overwritten).
func Decode(payload []byte, out []float32) error {
	return decode(payload, out, 0, false)
}

// DecodeAdd adds weight times the decoded payload to out
// (out[i] += weight*decoded[i], computed with vecmath.Axpy, so the result
// equals Decode into a temporary followed by vecmath.Axpy). out's length
// must equal the payload's number of values and weight must be finite; the
// sums may overflow to ±Inf if out or weight are huge. It uses a scratch
// buffer of ChunkSize values, not one of length n. On error the contents
// of out are unspecified (they may be partly updated).
func DecodeAdd(payload []byte, weight float32, out []float32) error {
	if !finite(weight) {
		return fmt.Errorf("compress: weight %v is not finite", weight)
	}
	return decode(payload, out, weight, true)
}

// decoder holds the reusable state of one decode: the flate reader and the
// scratch buffers. Decoders are pooled.
type decoder struct {
	src     bytes.Reader
	limit   io.LimitedReader
	fr      io.ReadCloser
	qbuf    [ChunkSize]byte
	scratch [ChunkSize]float32
	topkIt  topkIter // the sparse decoders' iterators, kept here so that
	maskIt  maskIter // passing them to fill allocates nothing
}

var decoderPool = sync.Pool{New: func() any { return new(decoder) }}

func decode(payload []byte, out []float32, weight float32, add bool) error {
	h, err := parseHeader(payload)
	if err != nil {
		return err
	}
	if uint64(h.n) != uint64(len(out)) {
		return fmt.Errorf("compress: payload holds %d values, output has length %d", h.n, len(out))
	}
	body := payload[h.hdrLen:]
	d := decoderPool.Get().(*decoder)
	defer decoderPool.Put(d)
	switch {
	case h.codec == FP32:
		return d.fp32(body, out, weight, add)
	case h.mask:
		return d.mask(body, h, out, weight, add)
	case h.k > 0:
		return d.topk(body, h, out, weight, add)
	}
	return d.int8(body, int(h.chunk), out, weight, add)
}

func (d *decoder) fp32(body []byte, out []float32, weight float32, add bool) error {
	n := len(out)
	if uint64(len(body)) < 4*uint64(n) {
		return fmt.Errorf("compress: fp32 body is %d bytes, want %d: truncated", len(body), 4*uint64(n))
	}
	if uint64(len(body)) > 4*uint64(n) {
		return fmt.Errorf("compress: fp32 body is %d bytes, want %d: trailing data", len(body), 4*uint64(n))
	}
	for lo := 0; lo < n; lo += ChunkSize {
		hi := min(lo+ChunkSize, n)
		dst := out[lo:hi]
		if add {
			dst = d.scratch[:hi-lo]
		}
		b := body[4*lo : 4*hi]
		for j := range dst {
			v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
			if !finite(v) {
				return fmt.Errorf("compress: fp32 value %d is not finite (%v)", lo+j, v)
			}
			dst[j] = v
		}
		if add {
			vecmath.Axpy(weight, dst, out[lo:hi])
		}
	}
	return nil
}

func (d *decoder) int8(body []byte, chunk int, out []float32, weight float32, add bool) error {
	n := len(out)
	m := (uint64(n) + uint64(chunk) - 1) / uint64(chunk)
	if uint64(len(body)) < 4*m {
		return fmt.Errorf("compress: int8 body is %d bytes, shorter than its %d chunk scales: truncated", len(body), m)
	}
	scales := body[:4*m]
	for c := range int(m) {
		s := math.Float32frombits(binary.LittleEndian.Uint32(scales[4*c:]))
		if !validScale(s) {
			return fmt.Errorf("compress: chunk %d has invalid scale %v", c, s)
		}
	}
	d.src.Reset(body[4*m:])
	if d.fr == nil {
		d.fr = flate.NewReader(&d.src)
	} else if err := d.fr.(flate.Resetter).Reset(&d.src, nil); err != nil {
		return fmt.Errorf("compress: flate reset: %v", err)
	}
	// Never read more than n+1 bytes from the stream, whatever it claims.
	d.limit = io.LimitedReader{R: d.fr, N: int64(n) + 1}

	for lo := 0; lo < n; lo += ChunkSize {
		hi := min(lo+ChunkSize, n)
		q := d.qbuf[:hi-lo]
		if _, err := io.ReadFull(&d.limit, q); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("compress: flate stream ends before value %d of %d: truncated or too short", lo, n)
			}
			return fmt.Errorf("compress: flate stream before value %d: %v", lo, err)
		}
		dst := out[lo:hi]
		if add {
			dst = d.scratch[:hi-lo]
		}
		// Values lo..hi-1 span chunks lo/chunk .. (hi-1)/chunk.
		for i := lo; i < hi; {
			c := i / chunk
			end := min(hi, (c+1)*chunk)
			s := math.Float32frombits(binary.LittleEndian.Uint32(scales[4*c:]))
			for j := i; j < end; j++ {
				b := int8(q[j-lo])
				if b == -128 {
					return fmt.Errorf("compress: int8 value %d is -128", j)
				}
				dst[j-lo] = dequantize(b, s)
			}
			i = end
		}
		if add {
			vecmath.Axpy(weight, dst, out[lo:hi])
		}
	}
	// The stream must end exactly here: probe for one more byte.
	k, err := io.ReadFull(&d.limit, d.qbuf[:1])
	if k > 0 {
		return fmt.Errorf("compress: flate stream decodes to more than %d values", n)
	}
	if err != io.EOF {
		if err == io.ErrUnexpectedEOF {
			return fmt.Errorf("compress: flate stream is truncated after its %d values", n)
		}
		return fmt.Errorf("compress: flate stream after its %d values: %v", n, err)
	}
	if d.src.Len() > 0 {
		return fmt.Errorf("compress: %d bytes of trailing data after the flate stream", d.src.Len())
	}
	return nil
}
