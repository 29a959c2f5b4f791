package errdefs

import "errors"

// Sentinel errors of backups, persistence and bucket mounts; their
// statuses are in the table in errdefs.go.
var (
	ErrBackupNotFound     = errors.New("backup not found")
	ErrArchiveCorrupt     = errors.New("archive corrupt")
	ErrStorageUnavailable = errors.New("storage unavailable")
	ErrMountNotFound      = errors.New("mount not found")
	ErrMountFailed        = errors.New("mount failed")
)
