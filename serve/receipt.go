package serve

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cairnlabs/cairn/ledger"
)

// Receipt is the record of one completed request.
type Receipt struct {
	ID               string        `json:"id"` // the completion's id
	Model            ledger.Hash   `json:"model"`
	Requester        ledger.PubKey `json:"requester"`
	PromptTokens     int           `json:"prompt_tokens"`
	CompletionTokens int           `json:"completion_tokens"`
	Fee              uint64        `json:"fee"`
	Time             int64         `json:"time"` // Unix nanoseconds
	Server           ledger.PubKey `json:"server"`
	Sig              []byte        `json:"sig"` // ed25519 by Server over SigningBytes
}

// SigningBytes is what the server signs: a domain tag and every field but
// the signature, fixed-width.
func (r *Receipt) SigningBytes() []byte {
	b := []byte("cairn/serve/receipt/v1\x00")
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.ID)))
	b = append(b, r.ID...)
	b = append(b, r.Model[:]...)
	b = append(b, r.Requester[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.PromptTokens))
	b = binary.BigEndian.AppendUint64(b, uint64(r.CompletionTokens))
	b = binary.BigEndian.AppendUint64(b, r.Fee)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	return append(b, r.Server[:]...)
}

// Sign signs r with key (its Server becomes key's public key).
func (r *Receipt) Sign(key ed25519.PrivateKey) {
	r.Server = ledger.KeyOf(key)
	r.Sig = ed25519.Sign(key, r.SigningBytes())
}

// Verify reports whether r carries its server's valid signature.
func (r *Receipt) Verify() bool {
	return len(r.Sig) == ed25519.SignatureSize && ed25519.Verify(r.Server[:], r.SigningBytes(), r.Sig)
}

// ReceiptLog stores receipts durably.
type ReceiptLog interface {
	// Append stores r before returning (an error: it is not stored).
	Append(r *Receipt) error
	// All returns every stored receipt, oldest first.
	All() ([]Receipt, error)
}

// MaxReceiptLine bounds one line of a receipt file.
const MaxReceiptLine = 4096

// FileLog is a ReceiptLog in a file of one JSON receipt per line,
// appended and fsynced per receipt. A torn last line (a crash mid-write)
// is ignored when reading and overwritten by the next append.
type FileLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
	size int64 // the end of the last whole line
}

// OpenFileLog opens (creating it) the receipt file at path. It fails if a
// line other than a torn last one does not decode or verify.
func OpenFileLog(path string) (*FileLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("serve: receipts: %v", err)
	}
	l := &FileLog{path: path, f: f}
	if _, err := l.read(); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// read decodes the whole lines and records where they end.
func (l *FileLog) read() ([]Receipt, error) {
	if _, err := l.f.Seek(0, 0); err != nil {
		return nil, err
	}
	var out []Receipt
	sc := bufio.NewScanner(l.f)
	sc.Buffer(make([]byte, 0, MaxReceiptLine), MaxReceiptLine)
	sc.Split(scanWholeLines)
	var off int64
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		off += int64(len(line))
		var r Receipt
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("serve: %s line %d: %v", l.path, n, err)
		}
		if !r.Verify() {
			return nil, fmt.Errorf("serve: %s line %d: bad signature", l.path, n)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("serve: %s: %v", l.path, err)
	}
	l.size = off
	return out, nil
}

// scanWholeLines yields lines with their newline; an unterminated tail is
// dropped (a torn write).
func scanWholeLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF {
		return len(data), nil, nil
	}
	return 0, nil, nil
}

// Append writes r as one line at the end of the whole lines and syncs.
func (l *FileLog) Append(r *Receipt) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if len(b)+1 > MaxReceiptLine {
		return errors.New("serve: receipt too large")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.WriteAt(append(b, '\n'), l.size); err != nil {
		return fmt.Errorf("serve: receipts: %v", err)
	}
	if err := l.f.Truncate(l.size + int64(len(b)) + 1); err != nil {
		return fmt.Errorf("serve: receipts: %v", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("serve: receipts: %v", err)
	}
	l.size += int64(len(b)) + 1
	return nil
}

// All reads every receipt back.
func (l *FileLog) All() ([]Receipt, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.read()
}

// Close closes the file.
func (l *FileLog) Close() error { return l.f.Close() }

// memLog is the in-memory ReceiptLog.
type memLog struct {
	mu sync.Mutex
	rs []Receipt
}

func (m *memLog) Append(r *Receipt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rs = append(m.rs, *r)
	return nil
}

func (m *memLog) All() ([]Receipt, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Receipt(nil), m.rs...), nil
}
