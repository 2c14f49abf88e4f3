package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// build assembles a file from a raw header string and data region, with
// no padding, as other writers may produce.
func build(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func tensorsEqual(t *testing.T, got, want map[string]Tensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d tensors, want %d", len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Fatalf("tensor %q missing", name)
		}
		if g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("tensor %q = %v %v %x, want %v %v %x", name, g.DType, g.Shape, g.Data, w.DType, w.Shape, w.Data)
		}
	}
}

func metaEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func sampleTensors() map[string]Tensor {
	return map[string]Tensor{
		"w":      NewF32([]int{2, 3}, []float32{1, 2, 3, 4, 5, -6.5}),
		"ids":    NewI32([]int{4}, []int32{0, -1, math.MaxInt32, math.MinInt32}),
		"scalar": NewF32([]int{}, []float32{3.25}),
		"empty":  NewF32([]int{0, 5}, nil),
		"bytes":  {DType: U8, Shape: []int{3}, Data: []byte{7, 8, 9}},
		"f64":    {DType: F64, Shape: []int{1, 1}, Data: binary.LittleEndian.AppendUint64(nil, math.Float64bits(math.Pi))},
		"i64":    {DType: I64, Shape: []int{2}, Data: binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 1<<40), 5)},
		"bf16":   {DType: BF16, Shape: []int{1, 2}, Data: []byte{1, 2, 3, 4}},
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		tensors map[string]Tensor
		meta    map[string]string
	}{
		{"empty file", map[string]Tensor{}, nil},
		{"metadata only", map[string]Tensor{}, map[string]string{"format": "pt"}},
		{"scalar", map[string]Tensor{"s": NewI32(nil, []int32{42})}, nil},
		{"zero-size", map[string]Tensor{"z": {DType: I64, Shape: []int{3, 0}}, "z2": {DType: U8, Shape: []int{0}}}, nil},
		{"mixed", sampleTensors(), map[string]string{"format": "pt", "note": "<&> \"quoted\" ünï"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.tensors, tt.meta)
			if err != nil {
				t.Fatal(err)
			}
			if n := binary.LittleEndian.Uint64(b); n%8 != 0 {
				t.Errorf("header length %d not a multiple of 8", n)
			}
			f, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			tensorsEqual(t, f.Tensors, tt.tensors)
			if !metaEqual(f.Metadata, tt.meta) {
				t.Errorf("metadata = %v, want %v", f.Metadata, tt.meta)
			}
		})
	}
}

func TestEncodeDeterministic(t *testing.T) {
	meta := map[string]string{"b": "2", "a": "1", "c": "3"}
	first, err := Encode(sampleTensors(), meta)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := Encode(sampleTensors(), meta)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatal("Encode output differs between calls")
		}
	}
	// Exact layout of a small file.
	got, err := Encode(map[string]Tensor{
		"b": NewI32([]int{1}, []int32{2}),
		"a": NewI32([]int{}, []int32{1}),
	}, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	js := `{"__metadata__":{"k":"v"},` +
		`"a":{"data_offsets":[0,4],"dtype":"I32","shape":[]},` +
		`"b":{"data_offsets":[4,8],"dtype":"I32","shape":[1]}}`
	js += strings.Repeat(" ", (8-len(js)%8)%8)
	want := build(js, []byte{1, 0, 0, 0, 2, 0, 0, 0})
	if !bytes.Equal(got, want) {
		t.Errorf("Encode =\n%q\nwant\n%q", got, want)
	}
}

// TestParseForeign parses headers as written by the Python safetensors
// library: unpadded or padded, keys in any order, extra whitespace.
func TestParseForeign(t *testing.T) {
	data := []byte{0, 0, 128, 63, 0, 0, 0, 64, 5, 0, 0, 0, 0, 0, 0, 0}
	for _, header := range []string{
		`{"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}`,
		`{"y":{"shape":[1],"dtype":"I64","data_offsets":[8,16]},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}   `,
		"\n{ \"x\" : {\"dtype\":\"F32\", \"shape\":[ 2 ], \"data_offsets\":[0, 8], \"extra\":1},\n\"y\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}, \"__metadata__\": {\"format\": \"pt\"}}\n",
	} {
		f, err := Parse(build(header, data))
		if err != nil {
			t.Fatalf("Parse(%q): %v", header, err)
		}
		x, err := f.Tensors["x"].Float32s()
		if err != nil || !slices.Equal(x, []float32{1, 2}) {
			t.Errorf("x = %v, %v", x, err)
		}
		y, err := f.Tensors["y"].Int32s()
		if err != nil || !slices.Equal(y, []int32{5}) {
			t.Errorf("y = %v, %v", y, err)
		}
		if f.Metadata["format"] != "pt" {
			t.Errorf("metadata = %v", f.Metadata)
		}
		if names := f.Names(); !slices.Equal(names, []string{"x", "y"}) {
			t.Errorf("Names() = %v", names)
		}
	}
}

func TestParseErrors(t *testing.T) {
	f32 := func(name, shape, offsets string) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":` + offsets + `}`
	}
	data := make([]byte, 24)
	tests := []struct {
		name  string
		input []byte
		want  string
	}{
		{"empty input", nil, "file is 0 bytes, shorter than the 8-byte header length"},
		{"truncated length", []byte{1, 0, 0}, "shorter than the 8-byte header length"},
		{"header past end", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...), "header length 100 runs past the end of the file"},
		{"header too large", binary.LittleEndian.AppendUint64(nil, 1<<40), "exceeds the limit"},
		{"huge header length", binary.LittleEndian.AppendUint64(nil, math.MaxUint64), "exceeds the limit"},
		{"empty header", build("", nil), "not valid JSON"},
		{"bad JSON", build(`{"a":`, nil), "not valid JSON"},
		{"trailing JSON", build(`{}{}`, nil), "not valid JSON"},
		{"invalid UTF-8", build("{\"a\xff\":{}}", nil), "not valid UTF-8"},
		{"not an object", build(`[1,2]`, nil), "not a JSON object"},
		{"duplicate key", build(`{`+f32("a", "[0]", "[0,0]")+`,`+f32("a", "[0]", "[0,0]")+`}`, nil), `duplicate key "a"`},
		{"entry not object", build(`{"a":[1]}`, nil), `tensor "a": entry is not a JSON object`},
		{"entry null", build(`{"a":null}`, nil), `tensor "a": entry is not a JSON object`},
		{"missing dtype", build(`{"a":{"shape":[],"data_offsets":[0,4]}}`, data), `tensor "a": missing dtype`},
		{"missing shape", build(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, data), `tensor "a": missing shape`},
		{"null shape", build(`{"a":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}`, data), `shape is not an array`},
		{"missing offsets", build(`{"a":{"dtype":"F32","shape":[]}}`, data), `tensor "a": missing data_offsets`},
		{"unknown dtype", build(`{"a":{"dtype":"F17","shape":[],"data_offsets":[0,4]}}`, data), `tensor "a": unknown dtype "F17"`},
		{"dtype not string", build(`{"a":{"dtype":4,"shape":[],"data_offsets":[0,4]}}`, data), `dtype is not a string`},
		{"negative shape", build(`{`+f32("a", "[-1,2]", "[0,0]")+`}`, data), `tensor "a": shape [-1 2] has a negative dimension`},
		{"fractional shape", build(`{`+f32("a", "[1.5]", "[0,4]")+`}`, data), `shape is not an array of integers`},
		{"shape overflow", build(`{`+f32("a", "[4294967296,4294967296]", "[0,0]")+`}`, data), `is too large`},
		{"shape overflow by size", build(`{`+f32("a", "[4611686018427387904]", "[0,0]")+`}`, data), `is too large`},
		{"offsets mismatch", build(`{`+f32("lm_head.weight", "[3,2]", "[0,12]")+`}`, data),
			`safetensors: tensor "lm_head.weight": data_offsets [0 12] do not match shape [3 2] of F32 (24 bytes)`},
		{"offsets past end", build(`{`+f32("a", "[8]", "[0,32]")+`}`, data), `data_offsets [0 32] extend past the end of the 24-byte data region`},
		{"offsets reversed", build(`{`+f32("a", "[1]", "[8,4]")+`}`, data), `need 0 <= begin <= end`},
		{"offsets negative", build(`{`+f32("a", "[1]", "[-4,0]")+`}`, data), `need 0 <= begin <= end`},
		{"offsets wrong length", build(`{`+f32("a", "[1]", "[0,4,8]")+`}`, data), `must have two elements`},
		{"overlap", build(`{`+f32("a", "[4]", "[0,16]")+`,`+f32("b", "[2]", "[8,16]")+`}`, data), `tensor "b": data_offsets [8 16] overlap those of tensor "a" [0 16]`},
		{"metadata not strings", build(`{"__metadata__":{"a":1}}`, nil), `__metadata__ is not an object mapping strings to strings`},
		{"metadata not object", build(`{"__metadata__":"x"}`, nil), `__metadata__ is not an object`},
		{"metadata null", build(`{"__metadata__":null}`, nil), `__metadata__ is not an object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(tt.input)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", f)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans several lines", err)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name   string
		header string
		data   []byte
	}{
		{"zero-size tensors anywhere", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"c":{"dtype":"U8","shape":[0,3],"data_offsets":[8,8]}}`, make([]byte, 8)},
		{"zero dim with huge dims", `{"a":{"dtype":"F64","shape":[9223372036854775807,0,9223372036854775807],"data_offsets":[0,0]}}`, nil},
		{"gap and trailing bytes", `{"a":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`, make([]byte, 5)},
		{"empty metadata", `{"__metadata__":{}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(build(tt.header, tt.data)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseAliasesInput(t *testing.T) {
	b, err := Encode(map[string]Tensor{"a": {DType: U8, Shape: []int{2}, Data: []byte{1, 2}}, "b": {DType: U8, Shape: []int{1}, Data: []byte{3}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	a := f.Tensors["a"].Data
	if cap(a) != len(a) {
		t.Errorf("cap(Data) = %d, want %d so appends cannot clobber neighbours", cap(a), len(a))
	}
	a[0] = 9
	if b[len(b)-3] != 9 {
		t.Error("tensor data does not alias the input")
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		tensors map[string]Tensor
		meta    map[string]string
		want    string
	}{
		{"short data", map[string]Tensor{"w": NewF32([]int{2, 2}, []float32{1, 2, 3})}, nil, `tensor "w": data is 12 bytes, want 16 for shape [2 2] of F32`},
		{"scalar without data", map[string]Tensor{"s": {DType: I32}}, nil, `data is 0 bytes, want 4`},
		{"unknown dtype", map[string]Tensor{"w": {DType: "Q4", Shape: []int{1}, Data: []byte{1}}}, nil, `unknown dtype "Q4"`},
		{"negative shape", map[string]Tensor{"w": {DType: U8, Shape: []int{-1}}}, nil, `invalid shape [-1]`},
		{"reserved name", map[string]Tensor{"__metadata__": NewI32(nil, []int32{1})}, nil, `reserved`},
		{"invalid utf8 name", map[string]Tensor{"\xff": NewI32(nil, []int32{1})}, nil, `not valid UTF-8`},
		{"invalid utf8 metadata", nil, map[string]string{"k": "\xff"}, `not valid UTF-8`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(tt.tensors, tt.meta)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Encode error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestTensorHelpers(t *testing.T) {
	i64 := func(vs ...int64) Tensor {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		return Tensor{DType: I64, Shape: []int{len(vs)}, Data: b}
	}
	if got, err := i64(1, -2, math.MaxInt32).Int32s(); err != nil || !slices.Equal(got, []int32{1, -2, math.MaxInt32}) {
		t.Errorf("Int32s(I64) = %v, %v", got, err)
	}
	if _, err := i64(1, math.MaxInt32+1).Int32s(); err == nil || !strings.Contains(err.Error(), "overflows int32") {
		t.Errorf("Int32s overflow error = %v", err)
	}
	if _, err := i64(math.MinInt32 - 1).Int32s(); err == nil {
		t.Error("Int32s accepted a value below MinInt32")
	}
	if _, err := NewF32([]int{1}, []float32{1}).Int32s(); err == nil || !strings.Contains(err.Error(), "dtype is F32") {
		t.Errorf("Int32s(F32) error = %v", err)
	}
	if _, err := NewI32([]int{1}, []int32{1}).Float32s(); err == nil || !strings.Contains(err.Error(), "not F32") {
		t.Errorf("Float32s(I32) error = %v", err)
	}
	if _, err := NewF32([]int{3}, []float32{1}).Float32s(); err == nil {
		t.Error("Float32s accepted data shorter than the shape")
	}
	nan := NewF32(nil, []float32{float32(math.NaN())})
	if got, err := nan.Float32s(); err != nil || len(got) != 1 || !math.IsNaN(float64(got[0])) {
		t.Errorf("Float32s(NaN) = %v, %v", got, err)
	}

	shape := []int{2}
	x := NewF32(shape, []float32{1, 2})
	shape[0] = 5
	if x.Shape[0] != 2 {
		t.Error("NewF32 does not copy shape")
	}

	for _, tt := range []struct {
		shape []int
		want  int
	}{
		{nil, 1}, {[]int{}, 1}, {[]int{3, 4}, 12}, {[]int{3, 0, 4}, 0},
		{[]int{-1}, -1}, {[]int{math.MaxInt, 2}, -1}, {[]int{math.MaxInt, 0}, 0},
	} {
		if got := (Tensor{Shape: tt.shape}).NumElements(); got != tt.want {
			t.Errorf("NumElements(%v) = %d, want %d", tt.shape, got, tt.want)
		}
	}

	for d, want := range map[DType]int{F32: 4, F64: 8, I32: 4, I64: 8, U8: 1, BF16: 2, BOOL: 1, "F4": 0, "": 0} {
		if got := d.Size(); got != want {
			t.Errorf("%q.Size() = %d, want %d", d, got, want)
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(path, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}

	tensors := sampleTensors()
	meta := map[string]string{"format": "pt"}
	if err := WriteFile(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tensorsEqual(t, f.Tensors, tensors)
	if !metaEqual(f.Metadata, meta) {
		t.Errorf("metadata = %v", f.Metadata)
	}
	want, _ := Encode(tensors, meta)
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Error("file content differs from Encode output")
	}

	// A failed write (bad tensor) leaves the previous file untouched.
	err = WriteFile(path, map[string]Tensor{"bad": {DType: F32, Shape: []int{2}}}, nil)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("WriteFile error = %v, want it to name %s", err, path)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Error("failed WriteFile modified the existing file")
	}

	// Writing into a missing directory fails and names the path.
	missing := filepath.Join(dir, "nope", "x.safetensors")
	if err := WriteFile(missing, tensors, nil); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("WriteFile into missing dir error = %v", err)
	}

	// Renaming over a directory fails; the temp file must be removed.
	asDir := filepath.Join(dir, "isdir")
	if err := os.Mkdir(asDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(asDir, tensors, nil); err == nil || !strings.Contains(err.Error(), asDir) {
		t.Errorf("WriteFile over a directory error = %v", err)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"isdir", "model.safetensors"}) {
		t.Errorf("directory holds %v, want only isdir and model.safetensors (no temp files)", names)
	}
}

func TestWriteFileRelative(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := WriteFile("m.safetensors", map[string]Tensor{"a": NewI32(nil, []int32{7})}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile("m.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.Tensors["a"].Int32s(); err != nil || !slices.Equal(v, []int32{7}) {
		t.Errorf("a = %v, %v", v, err)
	}
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "missing.safetensors")
	_, err := ReadFile(missing)
	if err == nil || !strings.HasPrefix(err.Error(), "read "+missing+": ") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(missing) error = %v", err)
	}
	if strings.Count(err.Error(), missing) != 1 {
		t.Errorf("error %q repeats the path", err)
	}

	short := write("short", []byte{1, 2, 3, 4, 5})
	_, err = ReadFile(short)
	if want := "read " + short + ": safetensors: file is 5 bytes, shorter than the 8-byte header length"; err == nil || err.Error() != want {
		t.Errorf("ReadFile(short) error = %v, want %s", err, want)
	}

	past := write("past", binary.LittleEndian.AppendUint64(nil, 1<<20))
	if _, err = ReadFile(past); err == nil || !strings.Contains(err.Error(), "runs past the end of the file") {
		t.Errorf("ReadFile(past) error = %v", err)
	}

	bad := write("bad", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 4)))
	if _, err = ReadFile(bad); err == nil || !strings.HasPrefix(err.Error(), "read "+bad+": safetensors: tensor \"a\"") {
		t.Errorf("ReadFile(bad) error = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, ts := range []map[string]Tensor{
		{},
		sampleTensors(),
		{"s": NewI32(nil, []int32{1})},
		{"z": {DType: U8, Shape: []int{0}}},
	} {
		b, err := Encode(ts, map[string]string{"format": "pt"})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(build(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}`, make([]byte, 8)))
	f.Add(build(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, make([]byte, 16)))
	f.Add(build(`{"__metadata__":{"a":1}}`, nil))
	f.Add([]byte{})
	f.Add([]byte("garbage!"))
	f.Add(binary.LittleEndian.AppendUint64(nil, math.MaxUint64))
	f.Add(build(`{"a":`, nil))

	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		enc, err := Encode(file.Tensors, file.Metadata)
		if err != nil {
			t.Fatalf("Encode of parsed file failed: %v", err)
		}
		again, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse of re-encoded file failed: %v", err)
		}
		tensorsEqual(t, again.Tensors, file.Tensors)
		if !metaEqual(again.Metadata, file.Metadata) {
			t.Fatalf("metadata changed: %v -> %v", file.Metadata, again.Metadata)
		}
		enc2, err := Encode(again.Tensors, again.Metadata)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %v", err)
		}
	})
}

// Half-precision tensors widen to float32 exactly.
func TestAsFloat32s(t *testing.T) {
	for _, tc := range []struct {
		dt   DType
		bits uint16
		want float32
	}{
		{BF16, 0x3f80, 1}, {BF16, 0xc040, -3}, {BF16, 0x0000, 0},
		{F16, 0x3c00, 1}, {F16, 0xc000, -2}, {F16, 0x3555, 0.333251953125}, {F16, 0x0001, 1.0 / (1 << 24)},
		{F16, 0x7bff, 65504}, {F16, 0x8000, 0},
	} {
		got, err := Tensor{DType: tc.dt, Shape: []int{1}, Data: []byte{byte(tc.bits), byte(tc.bits >> 8)}}.AsFloat32s()
		if err != nil || got[0] != tc.want {
			t.Errorf("%s %#04x: %v (%v), want %v", tc.dt, tc.bits, got, err, tc.want)
		}
	}
	inf, _ := Tensor{DType: F16, Shape: []int{1}, Data: []byte{0x00, 0x7c}}.AsFloat32s()
	if !math.IsInf(float64(inf[0]), 1) {
		t.Errorf("F16 +inf decoded as %v", inf[0])
	}
	if _, err := (Tensor{DType: I32, Shape: []int{1}, Data: make([]byte, 4)}).AsFloat32s(); err == nil {
		t.Error("an I32 tensor decoded as floats")
	}
	if _, err := (Tensor{DType: BF16, Shape: []int{2}, Data: make([]byte, 2)}).AsFloat32s(); err == nil {
		t.Error("a BF16 tensor with half its data decoded")
	}
}
