package errdefs

import "errors"

// Sentinel errors of the file routes; their statuses are in the table in
// errdefs.go.
var (
	ErrFileNotFound     = errors.New("file not found")
	ErrIsADirectory     = errors.New("is a directory")
	ErrNotADirectory    = errors.New("not a directory")
	ErrPermissionDenied = errors.New("permission denied")
	ErrFileExists       = errors.New("file exists")
	ErrInvalidPath      = errors.New("invalid path")
	ErrNoSpace          = errors.New("no space left")
)
