//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly || solaris

package p2p

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive flock on path (created if missing), without
// waiting.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, inUse(path)
		}
		return nil, err
	}
	return f, nil
}

func unlockFile(f *os.File, _ string) error {
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return f.Close()
}
