package api

// Error is the body of every non-2xx response from sbxd and the agent.
type Error struct {
	// Code is stable and upper-case; programs switch on it.
	Code string `json:"code"`
	// Message says what went wrong and what to do about it.
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Stable error codes. Their HTTP statuses are assigned in one place,
// internal/errdefs.
const (
	CodeInvalidRequest      = "INVALID_REQUEST"
	CodeInvalidSandboxID    = "INVALID_SANDBOX_ID"
	CodeInvalidInstanceType = "INVALID_INSTANCE_TYPE"
	CodeImageNotFound       = "IMAGE_NOT_FOUND"
	CodeUnauthorized        = "UNAUTHORIZED"
	CodeNotFound            = "NOT_FOUND"
	CodeSandboxNotFound     = "SANDBOX_NOT_FOUND"
	CodeConflict            = "CONFLICT"
	CodeCapacityExceeded    = "CAPACITY_EXCEEDED"
	CodeSandboxUnavailable  = "SANDBOX_UNAVAILABLE"
	CodeMethodNotAllowed    = "METHOD_NOT_ALLOWED"
	CodeInternal            = "INTERNAL"
)
