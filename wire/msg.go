package wire

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// MsgMagic is the first byte of every control message.
	MsgMagic byte = 0xC7
	// BlobMagic is the first byte of every blob.
	BlobMagic byte = 0xC8
	// KindError is the message kind of a refusal written by WriteError.
	// Its body is UTF-8 text. ReadJSON turns it into a *RemoteError.
	KindError uint8 = 0xFF
	// MaxErrorText is the longest error text, in bytes, that WriteError
	// sends and that readers accept in a KindError message regardless of a
	// smaller body limit.
	MaxErrorText = 1024
)

const (
	msgHeaderSize = 1 + 1 + 4
	// Bodies up to this size are copied behind the header and sent in a
	// single Write, so a small message becomes a single stream frame.
	smallMsg = 32 << 10
)

// WriteMsg writes one control message: MsgMagic, kind, the body length as
// uint32 big-endian, then body. It returns an error if body is longer than
// math.MaxUint32 bytes (nothing is written) or if w fails (wrapping w's
// error; part of the frame may have been written).
func WriteMsg(w io.Writer, kind uint8, body []byte) error {
	if uint64(len(body)) > math.MaxUint32 {
		return fmt.Errorf("wire: message body of %d bytes exceeds the format limit of %d", len(body), uint64(math.MaxUint32))
	}
	var err error
	if len(body) <= smallMsg {
		buf := make([]byte, msgHeaderSize+len(body))
		putMsgHeader(buf, kind, len(body))
		copy(buf[msgHeaderSize:], body)
		_, err = w.Write(buf)
	} else {
		var hdr [msgHeaderSize]byte
		putMsgHeader(hdr[:], kind, len(body))
		if _, err = w.Write(hdr[:]); err == nil {
			_, err = w.Write(body)
		}
	}
	if err != nil {
		return fmt.Errorf("wire: writing message: %w", err)
	}
	return nil
}

func putMsgHeader(b []byte, kind uint8, n int) {
	b[0] = MsgMagic
	b[1] = kind
	binary.BigEndian.PutUint32(b[2:6], uint32(n))
}

// ReadMsg reads one control message written by WriteMsg and returns its
// kind and body. Messages of kind KindError are returned like any other
// (ReadJSON is the variant that converts them to *RemoteError).
//
// Errors:
//   - io.EOF itself if r ends cleanly before the first byte;
//   - a bad magic byte (checked after reading only that byte);
//   - a body length above maxBody (checked before allocating; a negative
//     maxBody admits only empty bodies);
//   - truncation anywhere inside the frame: an error wrapping
//     io.ErrUnexpectedEOF that says which part was cut short;
//   - any other error from r, wrapped.
func ReadMsg(r io.Reader, maxBody int) (kind uint8, body []byte, err error) {
	return readMsg(r, func(uint8) int { return maxBody })
}

// readMsg is ReadMsg with a body limit that may depend on the kind.
func readMsg(r io.Reader, limit func(kind uint8) int) (uint8, []byte, error) {
	var hdr [msgHeaderSize]byte
	if err := readFirst(r, hdr[:1], "message"); err != nil {
		return 0, nil, err
	}
	if hdr[0] != MsgMagic {
		return 0, nil, badMagic(hdr[0], MsgMagic, "control message")
	}
	if err := readFull(r, hdr[1:], "message header"); err != nil {
		return 0, nil, err
	}
	return readMsgBody(r, hdr[1], binary.BigEndian.Uint32(hdr[2:]), limit(hdr[1]))
}

func readMsgBody(r io.Reader, kind uint8, n uint32, maxBody int) (uint8, []byte, error) {
	if maxBody < 0 {
		maxBody = 0
	}
	if uint64(n) > uint64(maxBody) {
		return 0, nil, &FormatError{fmt.Sprintf("wire: message body of %d bytes exceeds the limit of %d", n, maxBody)}
	}
	body := make([]byte, n)
	if err := readFull(r, body, "message body"); err != nil {
		return 0, nil, err
	}
	return kind, body, nil
}

// WriteJSON encodes v with encoding/json and writes it as a control message
// of the given kind. It returns an error if kind is KindError (use
// WriteError), if v cannot be marshaled, or if WriteMsg fails.
func WriteJSON(w io.Writer, kind uint8, v any) error {
	if kind == KindError {
		return fmt.Errorf("wire: kind 0x%02x is reserved for errors; use WriteError", kind)
	}
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("wire: encoding message kind 0x%02x: %w", kind, err)
	}
	return WriteMsg(w, kind, body)
}

// ReadJSON reads one control message and decodes its JSON body into v.
// Unknown object fields are ignored (forward compatibility).
//
// Errors, besides those of ReadMsg (including io.EOF on a clean end of
// stream):
//   - a message of kind KindError yields a *RemoteError carrying the
//     peer's text; such a body may be up to MaxErrorText bytes even if
//     maxBody is smaller;
//   - a kind other than wantKind (the message is consumed, so the stream
//     stays in sync);
//   - a body that is not valid JSON for v, or that has data after the JSON
//     value.
func ReadJSON(r io.Reader, wantKind uint8, maxBody int, v any) error {
	kind, body, err := readMsg(r, func(k uint8) int {
		if k == KindError {
			return max(maxBody, MaxErrorText)
		}
		return maxBody
	})
	if err != nil {
		return err
	}
	if kind == KindError {
		return newRemoteError(body)
	}
	if kind != wantKind {
		return fmt.Errorf("wire: got message kind 0x%02x, want 0x%02x", kind, wantKind)
	}
	// json.Unmarshal ignores unknown fields and rejects anything but
	// white space after the top-level value.
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("wire: decoding message kind 0x%02x: %w", kind, err)
	}
	return nil
}

// WriteError writes msg as a KindError control message, a one-line refusal
// that ReadJSON (and ReadBlob, ReadBlobInto) on the other side return as a
// *RemoteError. Invalid UTF-8 is replaced by U+FFFD and the text is cut
// to at most MaxErrorText bytes at a character boundary. It returns an
// error only if w fails.
func WriteError(w io.Writer, msg string) error {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) > MaxErrorText {
		cut := MaxErrorText
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	return WriteMsg(w, KindError, []byte(msg))
}

// RemoteError is a refusal sent by the peer with WriteError.
type RemoteError struct {
	// Msg is the peer's text, made safe to log on one line: invalid UTF-8
	// is replaced by U+FFFD and control characters (newlines included) by
	// spaces.
	Msg string
}

// Error returns "wire: remote error: " followed by Msg.
func (e *RemoteError) Error() string { return "wire: remote error: " + e.Msg }

func newRemoteError(body []byte) *RemoteError {
	msg := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, string(body))
	return &RemoteError{Msg: msg}
}

// readFirst reads the first byte(s) of a frame. A clean end of stream is
// returned as io.EOF itself.
func readFirst(r io.Reader, b []byte, what string) error {
	_, err := io.ReadFull(r, b)
	switch err {
	case nil:
		return nil
	case io.EOF:
		return io.EOF
	default:
		return fmt.Errorf("wire: reading %s: %w", what, err)
	}
}

// readFull fills b from r. Any end of stream, even before the first byte,
// is inside a frame and is reported as wrapping io.ErrUnexpectedEOF.
func readFull(r io.Reader, b []byte, what string) error {
	n, err := io.ReadFull(r, b)
	if err != nil {
		return readErr(what, n, len(b), err)
	}
	return nil
}

// readErr describes the failure err of io.ReadFull after n of want bytes
// of the frame part what.
func readErr(what string, n, want int, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("wire: %s truncated after %d of %d bytes: %w", what, n, want, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("wire: reading %s: %w", what, err)
}

func badMagic(got, want byte, what string) error {
	return &FormatError{fmt.Sprintf("wire: bad magic byte 0x%02x, want 0x%02x (%s)", got, want, what)}
}

// FormatError is a frame that breaks the format (a bad magic byte, a
// message body over its limit): the sender's fault, not the network's.
type FormatError struct{ Msg string }

func (e *FormatError) Error() string { return e.Msg }
