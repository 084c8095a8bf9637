// Package lock holds the locks that keep convsync runs from overlapping on
// an output: flock(2) on a lock file beside the output, held for a whole
// run. The kernel drops a flock when its holder dies, so a lock left by a
// dead process never blocks the next run.
package lock

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrBusy is returned by Acquire when a live process holds the lock.
var ErrBusy = errors.New("held by another convsync run")

// BusyError is the error of a refused Acquire: it wraps ErrBusy.
type BusyError struct {
	Path string
}

func (e *BusyError) Error() string { return ErrBusy.Error() }

func (e *BusyError) Unwrap() error { return ErrBusy }

// File is a held lock.
type File struct {
	f    *os.File
	path string
}

// Acquire takes the lock at path without waiting, creating the file if
// needed (its folder must exist). It fails with a *BusyError when another
// process holds it. The file stays empty: taking a lock changes no byte
// on disk.
func Acquire(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &BusyError{Path: path}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &File{f: f, path: path}, nil
}

// Path is the lock file's path.
func (l *File) Path() string { return l.path }

// Release drops the lock. The file stays: removing it would let a run that
// opened it just before lock a file no other run can see.
func (l *File) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := flock(l.f, syscall.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// Free reports whether nobody holds the lock at path (a missing file is
// free). It takes and drops the lock to find out.
func Free(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	defer f.Close()
	if flock(f, syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return false
	}
	_ = flock(f, syscall.LOCK_UN)
	return true
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
