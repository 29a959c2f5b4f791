package errdefs

import "errors"

// Sentinel errors of git checkout (api/git.go); their statuses are in the
// table in errdefs.go.
var (
	ErrGitUnreachable    = errors.New("git repository unreachable")
	ErrGitRepoNotFound   = errors.New("git repository not found")
	ErrGitAuthFailed     = errors.New("git authentication failed")
	ErrGitBranchNotFound = errors.New("git branch not found")
	ErrTargetNotEmpty    = errors.New("target directory not empty")
	ErrGitFailed         = errors.New("git failed")
)
