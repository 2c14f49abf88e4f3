package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func encodeMsg(t testing.TB, kind uint8, body []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteMsg(&b, kind, body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestMsgRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		kind uint8
		body []byte
	}{
		{"empty", 1, nil},
		{"small", 2, []byte("hello")},
		{"error kind", KindError, []byte("no")},
		{"at single-write limit", 3, bytes.Repeat([]byte{7}, smallMsg)},
		{"two writes", 4, bytes.Repeat([]byte{9}, smallMsg+1)},
		{"1 MiB", 5, bytes.Repeat([]byte("abc"), 1<<20/3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := encodeMsg(t, tt.kind, tt.body)
			if len(enc) != msgHeaderSize+len(tt.body) {
				t.Fatalf("encoded %d bytes, want %d", len(enc), msgHeaderSize+len(tt.body))
			}
			for _, r := range []struct {
				name string
				r    io.Reader
			}{
				{"plain", bytes.NewReader(enc)},
				{"one byte", iotest.OneByteReader(bytes.NewReader(enc))},
				{"data+EOF", iotest.DataErrReader(bytes.NewReader(enc))},
			} {
				kind, body, err := ReadMsg(r.r, len(tt.body))
				if err != nil {
					t.Fatalf("%s: %v", r.name, err)
				}
				if kind != tt.kind || !bytes.Equal(body, tt.body) {
					t.Fatalf("%s: got kind %d, %d bytes", r.name, kind, len(body))
				}
				if _, _, err := ReadMsg(r.r, 10); err != io.EOF {
					t.Fatalf("%s: after the frame got %v, want io.EOF", r.name, err)
				}
			}
		})
	}
}

func TestMsgSequence(t *testing.T) {
	// Frames follow each other and ReadMsg never reads ahead.
	var b bytes.Buffer
	for i := range 5 {
		if err := WriteMsg(&b, uint8(i), bytes.Repeat([]byte{byte(i)}, i*3)); err != nil {
			t.Fatal(err)
		}
	}
	b.WriteString("tail")
	for i := range 5 {
		kind, body, err := ReadMsg(&b, 100)
		if err != nil || kind != uint8(i) || len(body) != i*3 {
			t.Fatalf("message %d: kind %d, %d bytes, %v", i, kind, len(body), err)
		}
	}
	if b.String() != "tail" {
		t.Fatalf("left %q, want %q", b.String(), "tail")
	}
}

func TestReadMsgRejects(t *testing.T) {
	valid := encodeMsg(t, 7, []byte("0123456789"))
	tests := []struct {
		name    string
		in      []byte
		maxBody int
		want    string
		unexp   bool // wraps io.ErrUnexpectedEOF
	}{
		{"bad magic", append([]byte{0xC8}, valid[1:]...), 100, "wire: bad magic byte 0xc8, want 0xc7", false},
		{"bad magic alone", []byte{0}, 100, "wire: bad magic byte 0x00", false},
		{"oversize", valid, 9, "wire: message body of 10 bytes exceeds the limit of 9", false},
		{"negative limit", valid, -1, "exceeds the limit of 0", false},
		{"huge length", []byte{0xC7, 1, 0xFF, 0xFF, 0xFF, 0xFF}, 1 << 20, "wire: message body of 4294967295 bytes exceeds the limit of 1048576", false},
		{"truncated header", valid[:3], 100, "wire: message header truncated after 2 of 5 bytes: unexpected EOF", true},
		{"truncated body", valid[:12], 100, "wire: message body truncated after 6 of 10 bytes: unexpected EOF", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadMsg(bytes.NewReader(tt.in), tt.maxBody)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != tt.unexp {
				t.Fatalf("errors.Is(%v, io.ErrUnexpectedEOF) = %v", err, !tt.unexp)
			}
		})
	}
}

func TestReadMsgTruncatedEverywhere(t *testing.T) {
	valid := encodeMsg(t, 3, []byte("body!"))
	for i := range len(valid) {
		_, _, err := ReadMsg(bytes.NewReader(valid[:i]), 100)
		switch {
		case i == 0 && err != io.EOF:
			t.Fatalf("empty input: got %v, want io.EOF", err)
		case i > 0 && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Fatalf("cut at %d: got %v, want io.ErrUnexpectedEOF", i, err)
		case i > 0 && !strings.HasPrefix(err.Error(), "wire: "):
			t.Fatalf("cut at %d: error %q lacks the prefix", i, err)
		}
	}
}

func TestReadMsgReaderError(t *testing.T) {
	boom := errors.New("boom")
	for _, in := range []io.Reader{
		iotest.ErrReader(boom),
		io.MultiReader(bytes.NewReader([]byte{0xC7, 1}), iotest.ErrReader(boom)),
		io.MultiReader(bytes.NewReader([]byte{0xC7, 1, 0, 0, 0, 4, 'a'}), iotest.ErrReader(boom)),
	} {
		_, _, err := ReadMsg(in, 100)
		if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "wire: reading ") {
			t.Fatalf("got %v, want a wrapped boom", err)
		}
	}
}

type errWriter struct{ after int }

func (w *errWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("write refused")
	}
	n := min(len(p), w.after)
	w.after -= n
	if n < len(p) {
		return n, errors.New("write refused")
	}
	return n, nil
}

func TestWriteErrors(t *testing.T) {
	for _, after := range []int{0, 3, msgHeaderSize + 10} {
		err := WriteMsg(&errWriter{after}, 1, make([]byte, smallMsg+100))
		if err == nil || !strings.HasPrefix(err.Error(), "wire: writing message: ") {
			t.Fatalf("after %d: got %v", after, err)
		}
	}
	for _, after := range []int{0, 10, 50, 60, 170} {
		err := writeBlob(&errWriter{after}, make([]byte, 100), 30)
		if err == nil || !strings.HasPrefix(err.Error(), "wire: writing blob: ") {
			t.Fatalf("blob after %d: got %v", after, err)
		}
	}
	if err := WriteJSON(io.Discard, 1, func() {}); err == nil || !strings.HasPrefix(err.Error(), "wire: encoding") {
		t.Fatalf("unmarshalable value: got %v", err)
	}
	if err := WriteJSON(io.Discard, KindError, "x"); err == nil {
		t.Fatal("WriteJSON accepted KindError")
	}
}

type request struct {
	Step  int      `json:"step"`
	Names []string `json:"names"`
}

func TestJSONRoundTrip(t *testing.T) {
	var b bytes.Buffer
	in := request{Step: 42, Names: []string{"a", "b"}}
	if err := WriteJSON(&b, 5, in); err != nil {
		t.Fatal(err)
	}
	var out request
	if err := ReadJSON(&b, 5, 1<<10, &out); err != nil {
		t.Fatal(err)
	}
	if out.Step != 42 || len(out.Names) != 2 || out.Names[1] != "b" {
		t.Fatalf("got %+v", out)
	}
}

func TestReadJSON(t *testing.T) {
	msg := func(kind uint8, body string) []byte { return encodeMsg(t, kind, []byte(body)) }
	tests := []struct {
		name    string
		in      []byte
		maxBody int
		want    string // "" = success
		remote  string // expected RemoteError.Msg
	}{
		{"ok", msg(5, `{"step":1}`), 100, "", ""},
		{"unknown fields allowed", msg(5, `{"step":1,"future":{"x":[1,2]}}`), 100, "", ""},
		{"surrounding white space", msg(5, " {\"step\":1}\n"), 100, "", ""},
		{"kind mismatch", msg(6, `{"step":1}`), 100, "wire: got message kind 0x06, want 0x05", ""},
		{"trailing data", msg(5, `{"step":1}x`), 100, "wire: decoding message kind 0x05: invalid character 'x' after top-level value", ""},
		{"second object", msg(5, `{"step":1}{"step":2}`), 100, "after top-level value", ""},
		{"not JSON", msg(5, `step=1`), 100, "wire: decoding message kind 0x05", ""},
		{"empty body", msg(5, ``), 100, "wire: decoding message kind 0x05: unexpected end of JSON input", ""},
		{"wrong type", msg(5, `{"step":"one"}`), 100, "wire: decoding message kind 0x05", ""},
		{"oversize", msg(5, `{"step":1}`), 5, "exceeds the limit of 5", ""},
		{"remote error", msg(KindError, "shard 3 is not ready"), 100, "wire: remote error: shard 3 is not ready", "shard 3 is not ready"},
		{"remote error over maxBody", msg(KindError, "shard 3 is not ready"), 4, "wire: remote error: shard 3 is not ready", "shard 3 is not ready"},
		{"remote error sanitized", msg(KindError, "bad\nline\x00\xff"), 100, "wire: remote error: bad line \uFFFD", "bad line \uFFFD"},
		{"remote error too long", msg(KindError, strings.Repeat("x", MaxErrorText+1)), 100, "exceeds the limit of 1024", ""},
		{"eof", nil, 100, "EOF", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out request
			err := ReadJSON(bytes.NewReader(tt.in), 5, tt.maxBody, &out)
			if tt.want == "" {
				if err != nil || out.Step != 1 {
					t.Fatalf("got %v, %+v", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
			var re *RemoteError
			if errors.As(err, &re) != (tt.remote != "") {
				t.Fatalf("errors.As RemoteError = %v for %v", !(tt.remote != ""), err)
			}
			if re != nil && re.Msg != tt.remote {
				t.Fatalf("RemoteError.Msg = %q, want %q", re.Msg, tt.remote)
			}
		})
	}
}

func TestReadJSONEOF(t *testing.T) {
	if err := ReadJSON(bytes.NewReader(nil), 1, 10, new(request)); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
}

func TestWriteError(t *testing.T) {
	long := strings.Repeat("é", MaxErrorText) // 2 bytes per rune
	tests := []struct {
		name, in, want string
	}{
		{"plain", "busy, retry later", "busy, retry later"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"truncated at rune boundary", "x" + long, "x" + long[:MaxErrorText-2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteError(&b, tt.in); err != nil {
				t.Fatal(err)
			}
			err := ReadJSON(&b, 1, 0, nil)
			var re *RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want *RemoteError", err)
			}
			if re.Msg != tt.want {
				t.Fatalf("Msg = %q (%d bytes), want %q (%d bytes)", re.Msg, len(re.Msg), tt.want, len(tt.want))
			}
		})
	}
}
