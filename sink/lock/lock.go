// Package lock holds the locks that keep convsync runs from overlapping on
// an output: flock(2) on a lock file beside the output, held for a whole
// run. The kernel drops a flock when its holder dies, so a lock left by a
// dead process never blocks the next run.
package lock

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// ErrBusy is returned by Acquire when a live process holds the lock.
var ErrBusy = errors.New("held by another convsync run")

// Holder describes the process holding a lock; it is written into the
// lock file so that a refused run can say who holds it.
type Holder struct {
	PID     int       `json:"pid"`
	RunID   string    `json:"run_id,omitempty"`
	Command string    `json:"command,omitempty"`
	Since   time.Time `json:"since"`
}

func (h Holder) String() string {
	s := fmt.Sprintf("pid %d", h.PID)
	if h.Command != "" {
		s = h.Command + " " + s
	}
	if h.RunID != "" {
		s += ", run " + h.RunID
	}
	if !h.Since.IsZero() {
		s += ", since " + h.Since.UTC().Format(time.RFC3339)
	}
	return s
}

// BusyError is the error of a refused Acquire: it wraps ErrBusy and tells
// who holds the lock, when the lock file says.
type BusyError struct {
	Path   string
	Holder *Holder
}

func (e *BusyError) Error() string {
	if e.Holder != nil {
		return fmt.Sprintf("%s (%s)", ErrBusy, e.Holder)
	}
	return ErrBusy.Error()
}

func (e *BusyError) Unwrap() error { return ErrBusy }

// File is a held lock.
type File struct {
	f    *os.File
	path string
}

// Acquire takes the lock at path without waiting, creating the file if
// needed (its folder must exist). It fails with a *BusyError when another
// process holds it.
func Acquire(path string, h Holder) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &BusyError{Path: path, Holder: readHolder(f)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if h.PID == 0 {
		h.PID = os.Getpid()
	}
	if h.Since.IsZero() {
		h.Since = time.Now()
	}
	// Who holds it is information for a refused run; failing to record it
	// does not weaken the lock.
	if b, err := json.Marshal(h); err == nil && f.Truncate(0) == nil {
		_, _ = f.WriteAt(append(b, '\n'), 0)
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

func readHolder(f *os.File) *Holder {
	b := make([]byte, 4096)
	n, _ := f.ReadAt(b, 0)
	var h Holder
	if n == 0 || json.Unmarshal(b[:n], &h) != nil || h.PID == 0 {
		return nil
	}
	return &h
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
