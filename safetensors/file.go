package safetensors

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
)

// ReadFile reads and parses the safetensors file at path. It checks the
// header length against the file size (from Stat) before reading the rest
// of the file. Errors are prefixed with "read PATH: " and are either an
// I/O error (errors.Is(err, fs.ErrNotExist) holds for a missing file) or
// one of the errors of Parse.
func ReadFile(path string) (*File, error) {
	b, err := readAll(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in our prefix
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return f, nil
}

func readAll(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	var prefix [8]byte
	if size >= 8 {
		if _, err := io.ReadFull(f, prefix[:]); err != nil {
			return nil, err
		}
	}
	if _, err := headerLen(prefix[:], size); err != nil {
		return nil, err
	}
	if uint64(size) > math.MaxInt {
		return nil, fmt.Errorf("file is %d bytes, too large to read into memory", size)
	}
	b := make([]byte, size)
	copy(b, prefix[:])
	if _, err := io.ReadFull(f, b[8:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = errors.New("file shrank while being read")
		}
		return nil, err
	}
	return b, nil
}

// WriteFile encodes tensors and metadata with Encode and writes them to
// path atomically: the data goes to a temporary file in the same
// directory, which is synced, closed and renamed over path, and then the
// directory is synced. The file gets mode 0644. A reader of path sees
// either the old file or the complete new one, never a partial write.
//
// WriteFile returns an error, prefixed with "write PATH: ", if Encode
// fails (nothing is written) or if any file system step fails; the
// temporary file is then removed. If only the final directory sync fails,
// path already holds the new content.
func WriteFile(path string, tensors map[string]Tensor, metadata map[string]string) error {
	b, err := Encode(tensors, metadata)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := writeAtomic(path, b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteAtomic writes b to path through a synced temporary file in the
// same directory and a rename: path holds its old content or all of b.
// Errors are the file system's; the temporary file is then removed.
func WriteAtomic(path string, b []byte) error { return writeAtomic(path, b) }

func writeAtomic(path string, b []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close() // may already be closed; the error is irrelevant
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable. Windows cannot sync directories.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
