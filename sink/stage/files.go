package stage

import (
	"errors"
	"os"
	"path/filepath"
)

// WriteFileSynced writes data to a new file at path and syncs it.
func WriteFileSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReplaceFileSynced replaces the file at path with data atomically: a
// reader, or the next process after a crash, finds the old content or the
// new, never a part. The new file and the rename are synced.
func ReplaceFileSynced(path string, data []byte) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	if err := WriteFileSynced(tmp, data); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir flushes a directory's entries (renames, creations) to disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems do not support syncing directories.
	if errors.Is(err, os.ErrInvalid) {
		return nil
	}
	return err
}
