package errdefs

import "errors"

// Sentinel errors of exposed ports and preview URLs (api/ports.go); their
// statuses are in the table in errdefs.go.
var (
	ErrPreviewNotFound  = errors.New("preview not found")
	ErrPreviewGone      = errors.New("preview gone")
	ErrPortNotListening = errors.New("port not listening")
	ErrPreviewUpstream  = errors.New("preview upstream failed")
)
