package p2p

import (
	"fmt"
	"os"
	"path/filepath"
)

// LockFile is the lock a running node holds in its data directory.
const LockFile = "LOCK"

// DirLock is a held lock on a node's data directory: while it is held, no
// other node (in this process or another) can lock the directory, so two
// nodes never share an identity key or a run's state by accident. The
// operating system releases it when the process ends, however it ends.
type DirLock struct {
	f    *os.File
	path string
}

// LockDir creates dir if needed and locks it for this node, or fails at
// once, in one line naming the directory, if another node holds it.
func LockDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	f, err := lockFile(path)
	if err != nil {
		return nil, err
	}
	return &DirLock{f: f, path: path}, nil
}

// inUse is the error for a directory another node holds.
func inUse(path string) error {
	return fmt.Errorf("data directory %s is in use by another cairn node (it holds %s); give each node its own data directory",
		filepath.Dir(path), path)
}

// Close releases the lock. It is safe to call more than once.
func (l *DirLock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlockFile(l.f, l.path)
	l.f = nil
	return err
}
