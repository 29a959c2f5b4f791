// Package errdefs defines the sentinel errors shared by sbxd and the agent
// and is the one place where they are mapped to HTTP statuses and the stable
// codes of package api.
//
// Code deeper in the stack wraps a sentinel with fmt.Errorf("...: %w", ErrX)
// and a message that tells the caller what to fix; the HTTP layer calls
// Write, which picks the status and code from the sentinel and the message
// from the error text.
package errdefs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sbx-dev/sbx/api"
)

// Sentinel errors. Each maps to exactly one HTTP status and api code.
var (
	ErrInvalidArgument     = errors.New("invalid argument")
	ErrInvalidSandboxID    = errors.New("invalid sandbox id")
	ErrInvalidInstanceType = errors.New("invalid instance type")
	ErrImageNotFound       = errors.New("image not found")
	ErrUnauthorized        = errors.New("unauthorized")
	ErrNotFound            = errors.New("not found")
	ErrSandboxNotFound     = errors.New("sandbox not found")
	ErrConflict            = errors.New("conflict")
	ErrCapacity            = errors.New("capacity exceeded")
	ErrUnavailable         = errors.New("sandbox unavailable")
	ErrMethodNotAllowed    = errors.New("method not allowed")
	// Code interpreter (api/code.go).
	ErrInterpreterNotAvailable = errors.New("interpreter not available")
	ErrContextNotFound         = errors.New("code context not found")
)

// codedError carries an explicit api code for errors that arrive already
// coded, for example from the agent.
type codedError struct {
	status int
	apiErr api.Error
}

func (e *codedError) Error() string { return e.apiErr.Message }

// FromAPI turns an error body received from another sbx component back into
// an error that Write reproduces unchanged.
func FromAPI(status int, e api.Error) error {
	return &codedError{status: status, apiErr: e}
}

var table = []struct {
	err    error
	status int
	code   string
}{
	{ErrInvalidArgument, http.StatusBadRequest, api.CodeInvalidRequest},
	{ErrInvalidSandboxID, http.StatusBadRequest, api.CodeInvalidSandboxID},
	{ErrInvalidInstanceType, http.StatusBadRequest, api.CodeInvalidInstanceType},
	{ErrImageNotFound, http.StatusBadRequest, api.CodeImageNotFound},
	{ErrUnauthorized, http.StatusUnauthorized, api.CodeUnauthorized},
	{ErrSandboxNotFound, http.StatusNotFound, api.CodeSandboxNotFound},
	{ErrInterpreterNotAvailable, http.StatusBadRequest, api.CodeInterpreterNotAvailable},
	{ErrContextNotFound, http.StatusNotFound, api.CodeContextNotFound},
	{ErrNotFound, http.StatusNotFound, api.CodeNotFound},
	{ErrConflict, http.StatusConflict, api.CodeConflict},
	{ErrCapacity, http.StatusTooManyRequests, api.CodeCapacityExceeded},
	{ErrUnavailable, http.StatusServiceUnavailable, api.CodeSandboxUnavailable},
	{ErrMethodNotAllowed, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed},
	{ErrSessionNotFound, http.StatusNotFound, api.CodeSessionNotFound},
	{ErrSessionTerminated, http.StatusConflict, api.CodeSessionTerminated},
	{ErrProcessNotFound, http.StatusNotFound, api.CodeProcessNotFound},
	{ErrProcessExited, http.StatusConflict, api.CodeProcessExited},
	{ErrWaitTimeout, http.StatusRequestTimeout, api.CodeWaitTimeout},
	{ErrUpgradeRequired, http.StatusUpgradeRequired, api.CodeUpgradeRequired},
	{ErrFileNotFound, http.StatusNotFound, api.CodeFileNotFound},
	{ErrIsADirectory, http.StatusBadRequest, api.CodeIsADirectory},
	{ErrNotADirectory, http.StatusBadRequest, api.CodeNotADirectory},
	{ErrPermissionDenied, http.StatusForbidden, api.CodePermissionDenied},
	{ErrFileExists, http.StatusConflict, api.CodeFileExists},
	{ErrInvalidPath, http.StatusBadRequest, api.CodeInvalidPath},
	{ErrNoSpace, http.StatusInsufficientStorage, api.CodeNoSpace},
	{ErrPreviewNotFound, http.StatusNotFound, api.CodePreviewNotFound},
	{ErrPreviewGone, http.StatusGone, api.CodePreviewGone},
	{ErrPortNotListening, http.StatusBadGateway, api.CodePortNotListening},
	{ErrPreviewUpstream, http.StatusBadGateway, api.CodePreviewUpstream},
	{ErrGitUnreachable, http.StatusBadGateway, api.CodeGitUnreachable},
	{ErrGitRepoNotFound, http.StatusNotFound, api.CodeGitRepoNotFound},
	{ErrGitAuthFailed, http.StatusForbidden, api.CodeGitAuthFailed},
	{ErrGitBranchNotFound, http.StatusNotFound, api.CodeGitBranchNotFound},
	{ErrTargetNotEmpty, http.StatusConflict, api.CodeTargetNotEmpty},
	{ErrGitFailed, http.StatusInternalServerError, api.CodeGitFailed},
	{ErrBackupNotFound, http.StatusNotFound, api.CodeBackupNotFound},
	{ErrArchiveCorrupt, http.StatusUnprocessableEntity, api.CodeArchiveCorrupt},
	{ErrStorageUnavailable, http.StatusServiceUnavailable, api.CodeStorageUnavailable},
	{ErrMountNotFound, http.StatusNotFound, api.CodeMountNotFound},
	{ErrMountFailed, http.StatusBadGateway, api.CodeMountFailed},
}

// Classify returns the HTTP status and api error body for err. Unknown
// errors are 500 INTERNAL.
func Classify(err error) (int, api.Error) {
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.status, ce.apiErr
	}
	for _, row := range table {
		if errors.Is(err, row.err) {
			return row.status, api.Error{Code: row.code, Message: err.Error()}
		}
	}
	return http.StatusInternalServerError, api.Error{Code: api.CodeInternal, Message: err.Error()}
}

// Write sends err as a JSON api.Error with the status Classify assigns.
func Write(w http.ResponseWriter, err error) {
	status, body := Classify(err)
	WriteJSON(w, status, body)
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// DecodeJSON decodes a request body strictly into v: unknown fields and
// trailing data are refused with ErrInvalidArgument naming the problem.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty body means all defaults
		}
		return fmt.Errorf("%w: request body is not valid JSON for this endpoint: %v", ErrInvalidArgument, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: request body has data after the JSON object", ErrInvalidArgument)
	}
	return nil
}
