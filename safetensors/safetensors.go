// Package safetensors reads and writes the safetensors checkpoint format
// used by PyTorch and the Hugging Face ecosystem.
//
// A safetensors file is an 8-byte little-endian header length N, then N
// bytes of JSON header, then the data region. The header maps each tensor
// name to its dtype, shape and data_offsets (a [begin, end) byte range
// relative to the start of the data region), and may carry a
// "__metadata__" entry mapping strings to strings. Tensor data is stored
// little-endian in row-major order.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header, in bytes, that Parse, ReadFile
// and Encode accept (the same limit as the reference implementation).
const MaxHeaderSize = 100_000_000

const metadataKey = "__metadata__"

// DType names the element type of a tensor, spelled as in the header
// (for example "F32").
type DType string

// Element types of the safetensors format. Sub-byte types (such as F4)
// are not supported.
const (
	BOOL    DType = "BOOL"
	U8      DType = "U8"
	I8      DType = "I8"
	F8_E5M2 DType = "F8_E5M2"
	F8_E4M3 DType = "F8_E4M3"
	I16     DType = "I16"
	U16     DType = "U16"
	F16     DType = "F16"
	BF16    DType = "BF16"
	I32     DType = "I32"
	U32     DType = "U32"
	F32     DType = "F32"
	I64     DType = "I64"
	U64     DType = "U64"
	F64     DType = "F64"
)

// Size returns the number of bytes per element of d, or 0 if d is not a
// known dtype.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8_E5M2, F8_E4M3:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case I64, U64, F64:
		return 8
	}
	return 0
}

// Tensor is a dense tensor: its element type, its shape (empty for a
// scalar) and its little-endian, row-major data. Tensors returned by Parse
// may alias the parsed buffer.
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
}

// NewF32 returns an F32 tensor with a copy of shape and the little-endian
// encoding of data. It does not check that len(data) matches shape;
// Encode and WriteFile report a mismatch.
func NewF32(shape []int, data []float32) Tensor {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return Tensor{DType: F32, Shape: slices.Clone(shape), Data: b}
}

// NewI32 returns an I32 tensor with a copy of shape and the little-endian
// encoding of data. It does not check that len(data) matches shape;
// Encode and WriteFile report a mismatch.
func NewI32(shape []int, data []int32) Tensor {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return Tensor{DType: I32, Shape: slices.Clone(shape), Data: b}
}

// NumElements returns the product of t.Shape (1 for a scalar), or -1 if a
// dimension is negative or the product overflows int.
func (t Tensor) NumElements() int {
	n, ok := numElements(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// numElements returns the product of shape and whether it is valid: all
// dimensions non-negative and the product representable as an int.
func numElements(shape []int) (int, bool) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
	}
	if slices.Contains(shape, 0) {
		return 0, true
	}
	for _, d := range shape {
		if n > math.MaxInt/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// check reports whether t has a known dtype, a valid shape and exactly
// the number of data bytes its shape and dtype call for.
func (t Tensor) check() error {
	size := t.DType.Size()
	if size == 0 {
		return fmt.Errorf("unknown dtype %q", t.DType)
	}
	n, ok := numElements(t.Shape)
	if !ok || n > math.MaxInt/size {
		return fmt.Errorf("invalid shape %v", t.Shape)
	}
	if len(t.Data) != n*size {
		return fmt.Errorf("data is %d bytes, want %d for shape %v of %s", len(t.Data), n*size, t.Shape, t.DType)
	}
	return nil
}

// Float32s decodes the data of an F32 tensor. It returns an error if the
// dtype is not F32 or len(t.Data) does not match the shape.
func (t Tensor) Float32s() ([]float32, error) {
	if t.DType != F32 {
		return nil, fmt.Errorf("safetensors: Float32s: dtype is %s, not F32", t.DType)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("safetensors: Float32s: %v", err)
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// AsFloat32s decodes the data of an F32, BF16 or F16 tensor as float32
// (the half-precision types exactly, as every half value is a float32).
// It returns an error for another dtype or data that does not match the
// shape.
func (t Tensor) AsFloat32s() ([]float32, error) {
	switch t.DType {
	case F32:
		return t.Float32s()
	case BF16, F16:
	default:
		return nil, fmt.Errorf("safetensors: dtype %s is not a float type (F32, BF16, F16)", t.DType)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("safetensors: AsFloat32s: %v", err)
	}
	out := make([]float32, len(t.Data)/2)
	for i := range out {
		h := binary.LittleEndian.Uint16(t.Data[2*i:])
		if t.DType == BF16 {
			out[i] = math.Float32frombits(uint32(h) << 16)
		} else {
			out[i] = halfToFloat(h)
		}
	}
	return out, nil
}

// halfToFloat converts an IEEE 754 binary16 value.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf, NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: frac·2^-24
		v := float32(frac) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// Int32s decodes the data of an I32 or I64 tensor as int32. It returns an
// error if the dtype is neither, if len(t.Data) does not match the shape,
// or if an I64 value does not fit in int32.
func (t Tensor) Int32s() ([]int32, error) {
	if t.DType != I32 && t.DType != I64 {
		return nil, fmt.Errorf("safetensors: Int32s: dtype is %s, not I32 or I64", t.DType)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("safetensors: Int32s: %v", err)
	}
	if t.DType == I32 {
		out := make([]int32, len(t.Data)/4)
		for i := range out {
			out[i] = int32(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
		return out, nil
	}
	out := make([]int32, len(t.Data)/8)
	for i := range out {
		v := int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
		if v < math.MinInt32 || v > math.MaxInt32 {
			return nil, fmt.Errorf("safetensors: Int32s: element %d of I64 tensor is %d, which overflows int32", i, v)
		}
		out[i] = int32(v)
	}
	return out, nil
}

// File is the content of a safetensors file.
type File struct {
	// Tensors maps tensor names to tensors. It is never nil after Parse.
	Tensors map[string]Tensor
	// Metadata is the header's "__metadata__" map, nil if it has none.
	Metadata map[string]string
}

// Names returns the tensor names of f in sorted order.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for name := range f.Tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// headerLen validates the 8-byte header length at the start of prefix
// against total, the length of the whole file, and returns it.
func headerLen(prefix []byte, total int64) (int, error) {
	if total < 8 || len(prefix) < 8 {
		return 0, fmt.Errorf("safetensors: file is %d bytes, shorter than the 8-byte header length", total)
	}
	n := binary.LittleEndian.Uint64(prefix)
	if n > MaxHeaderSize {
		return 0, fmt.Errorf("safetensors: header length %d exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	if n > uint64(total-8) {
		return 0, fmt.Errorf("safetensors: header length %d runs past the end of the file (%d bytes after the length prefix)", n, total-8)
	}
	return int(n), nil
}

// entry is a tensor's header entry, validated but not yet materialized.
type entry struct {
	name       string
	dtype      DType
	shape      []int
	begin, end int
}

// Parse parses a whole safetensors file held in b. The returned tensors'
// Data alias b (each with its capacity capped at its length).
//
// Parse never panics and checks the whole header before building the
// result. It returns an error if b is shorter than 8 bytes; if the header
// length exceeds MaxHeaderSize or the end of b; if the header is not a
// UTF-8 JSON object or repeats a key; if a tensor entry lacks dtype, shape or
// data_offsets, has an unknown dtype, a negative dimension, an element
// count that overflows, or data_offsets that are not [begin, end] with
// begin <= end inside the data region and end-begin equal to the
// tensor's byte size; if two non-empty tensors' byte ranges overlap; or
// if __metadata__ is not an object of strings. Gaps between tensors and
// unused bytes at the end of the data region are accepted.
func Parse(b []byte) (*File, error) {
	n, err := headerLen(b, int64(len(b)))
	if err != nil {
		return nil, err
	}
	header, data := b[8:8+n], b[8+n:]

	if !utf8.Valid(header) {
		return nil, errors.New("safetensors: header is not valid UTF-8")
	}
	raw, err := splitObject(header)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	sort.Strings(names)

	var meta map[string]string
	entries := make([]entry, 0, len(names))
	for _, name := range names {
		if name == metadataKey {
			if firstByte(raw[name]) != '{' || json.Unmarshal(raw[name], &meta) != nil {
				return nil, errors.New("safetensors: __metadata__ is not an object mapping strings to strings")
			}
			continue
		}
		e, err := parseEntry(name, raw[name], len(data))
		if err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %v", name, err)
		}
		entries = append(entries, e)
	}

	// Overlap check: sort non-empty ranges by start and compare neighbours.
	var spans []entry
	for _, e := range entries {
		if e.begin < e.end {
			spans = append(spans, e)
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].begin < spans[j].begin })
	for i := 1; i < len(spans); i++ {
		p, e := spans[i-1], spans[i]
		if e.begin < p.end {
			return nil, fmt.Errorf("safetensors: tensor %q: data_offsets [%d %d] overlap those of tensor %q [%d %d]",
				e.name, e.begin, e.end, p.name, p.begin, p.end)
		}
	}

	f := &File{Tensors: make(map[string]Tensor, len(entries)), Metadata: meta}
	for _, e := range entries {
		f.Tensors[e.name] = Tensor{DType: e.dtype, Shape: e.shape, Data: data[e.begin:e.end:e.end]}
	}
	return f, nil
}

// splitObject splits a JSON object into its members, rejecting invalid
// JSON, non-objects, duplicate keys and trailing data.
func splitObject(header []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("safetensors: header is not valid JSON: %v", err)
	}
	if tok != json.Delim('{') {
		return nil, errors.New("safetensors: header is not a JSON object")
	}
	members := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("safetensors: header is not valid JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok { // unreachable: Token reports non-string keys as errors
			return nil, errors.New("safetensors: header is not valid JSON: object key is not a string")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("safetensors: header is not valid JSON: %v", err)
		}
		if _, dup := members[key]; dup {
			return nil, fmt.Errorf("safetensors: header has duplicate key %q", key)
		}
		members[key] = v
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, fmt.Errorf("safetensors: header is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("safetensors: header is not valid JSON: data after the top-level object")
	}
	return members, nil
}

// firstByte returns the first non-space byte of a JSON value, or 0.
func firstByte(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// parseEntry validates one tensor entry against a data region of dataLen
// bytes. Errors do not name the tensor; the caller adds it.
func parseEntry(name string, raw []byte, dataLen int) (entry, error) {
	var fields map[string]json.RawMessage
	if firstByte(raw) != '{' || json.Unmarshal(raw, &fields) != nil {
		return entry{}, errors.New("entry is not a JSON object")
	}
	var (
		dtype   string
		shape   []int64
		offsets []int64
	)
	for _, f := range []struct {
		key  string
		kind byte
		dst  any
	}{{"dtype", '"', &dtype}, {"shape", '[', &shape}, {"data_offsets", '[', &offsets}} {
		v, ok := fields[f.key]
		if !ok {
			return entry{}, fmt.Errorf("missing %s", f.key)
		}
		if firstByte(v) != f.kind || json.Unmarshal(v, f.dst) != nil {
			what := "an array of integers"
			if f.kind == '"' {
				what = "a string"
			}
			return entry{}, fmt.Errorf("%s is not %s", f.key, what)
		}
	}

	dt := DType(dtype)
	size := dt.Size()
	if size == 0 {
		return entry{}, fmt.Errorf("unknown dtype %q", dtype)
	}
	dims := make([]int, len(shape))
	for i, d := range shape {
		if d < 0 {
			return entry{}, fmt.Errorf("shape %v has a negative dimension", shape)
		}
		if d > math.MaxInt {
			return entry{}, fmt.Errorf("shape %v is too large", shape)
		}
		dims[i] = int(d)
	}
	count, ok := numElements(dims)
	if !ok || count > math.MaxInt/size {
		return entry{}, fmt.Errorf("shape %v is too large", shape)
	}
	nbytes := count * size

	if len(offsets) != 2 {
		return entry{}, fmt.Errorf("data_offsets %v must have two elements [begin end]", offsets)
	}
	begin, end := offsets[0], offsets[1]
	if begin < 0 || begin > end {
		return entry{}, fmt.Errorf("data_offsets %v are invalid: need 0 <= begin <= end", offsets)
	}
	if end > int64(dataLen) {
		return entry{}, fmt.Errorf("data_offsets %v extend past the end of the %d-byte data region", offsets, dataLen)
	}
	if end-begin != int64(nbytes) {
		return entry{}, fmt.Errorf("data_offsets %v do not match shape %v of %s (%d bytes)", offsets, shape, dt, nbytes)
	}
	return entry{name: name, dtype: dt, shape: dims, begin: int(begin), end: int(end)}, nil
}

// headerEntry is the JSON form of a tensor entry; fields are in sorted
// key order so that the whole header has sorted keys.
type headerEntry struct {
	DataOffsets [2]int `json:"data_offsets"`
	DType       DType  `json:"dtype"`
	Shape       []int  `json:"shape"`
}

// Encode returns the safetensors encoding of tensors and metadata (which
// may be nil). The output is deterministic: tensor data is laid out in
// sorted name order, the header is compact JSON with sorted keys, and it is
// padded with spaces to a multiple of 8 bytes. A nil or empty metadata map
// writes no "__metadata__" entry.
//
// Encode returns an error if a tensor is named "__metadata__", if a tensor
// name or metadata key or value is not valid UTF-8, if a tensor has an
// unknown dtype, an invalid shape or a len(Data) that does not match its
// shape and dtype, or if the header would exceed MaxHeaderSize.
func Encode(tensors map[string]Tensor, metadata map[string]string) ([]byte, error) {
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)

	header := make(map[string]any, len(tensors)+1)
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("safetensors: metadata entry %q: not valid UTF-8", k)
		}
	}
	if len(metadata) > 0 {
		header[metadataKey] = metadata
	}
	off := 0
	for _, name := range names {
		t := tensors[name]
		if name == metadataKey {
			return nil, fmt.Errorf("safetensors: tensor name %q is reserved", name)
		}
		if !utf8.ValidString(name) {
			return nil, fmt.Errorf("safetensors: tensor %q: name is not valid UTF-8", name)
		}
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %v", name, err)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{} // a scalar must encode as [], not null
		}
		header[name] = headerEntry{DataOffsets: [2]int{off, off + len(t.Data)}, DType: t.DType, Shape: shape}
		off += len(t.Data)
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(header); err != nil {
		return nil, fmt.Errorf("safetensors: encoding header: %v", err)
	}
	js := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	hlen := (len(js) + 7) &^ 7
	if hlen > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: header is %d bytes, over the limit of %d", hlen, MaxHeaderSize)
	}

	out := make([]byte, 8+hlen, 8+hlen+off)
	binary.LittleEndian.PutUint64(out, uint64(hlen))
	n := copy(out[8:], js)
	for i := 8 + n; i < len(out); i++ {
		out[i] = ' '
	}
	for _, name := range names {
		out = append(out, tensors[name].Data...)
	}
	return out, nil
}
