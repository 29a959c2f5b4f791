package errdefs

import "errors"

// Sentinels of sessions, background processes, readiness waits and PTY
// terminals; their statuses are in the table in errdefs.go.
var (
	ErrSessionNotFound   = errors.New("session not found")
	ErrSessionTerminated = errors.New("session terminated")
	ErrProcessNotFound   = errors.New("process not found")
	ErrProcessExited     = errors.New("process exited")
	ErrWaitTimeout       = errors.New("wait timed out")
	ErrUpgradeRequired   = errors.New("upgrade required")
)
