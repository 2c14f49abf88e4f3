//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || solaris || windows)

package p2p

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// lockFile, where the platform has no advisory locks Cairn uses, creates
// path exclusively. A node that dies without closing leaves it behind:
// the error then says to remove it.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%v (if no node runs there, remove %s: this platform's lock outlives a crashed node)", inUse(path), path)
	}
	return f, err
}

func unlockFile(f *os.File, path string) error {
	err := f.Close()
	os.Remove(path)
	return err
}
