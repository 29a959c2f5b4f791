package api

import (
	"errors"
	"fmt"
	"time"
)

// DefaultSession is the session every sandbox has. It cannot be created;
// deleting it resets it (its processes are killed and its next command gets
// a fresh shell).
const DefaultSession = "default"

// Error codes of sessions.
const (
	// CodeSessionNotFound: no session by that id; create it first.
	CodeSessionNotFound = "SESSION_NOT_FOUND"
	// CodeSessionTerminated: the session's shell ended during the call
	// (the command ran `exit`, or the shell was killed). The next call in
	// the session starts a fresh shell.
	CodeSessionTerminated = "SESSION_TERMINATED"
)

// CreateSessionRequest is the body of POST /v1/sandboxes/{id}/sessions.
//
// A session is a persistent bash: cd, export, aliases and shell functions
// carry over from one command to the next in it. Sessions share the
// filesystem but not the working directory or environment; commands in one
// session run one at a time in the order they arrive, different sessions
// run in parallel.
type CreateSessionRequest struct {
	// ID names the session; empty means a generated id.
	ID string `json:"id,omitempty"`
	// Cwd is the session's first working directory; default /workspace.
	Cwd string `json:"cwd,omitempty"`
	// Env is exported in the session's shell, on top of the sandbox env.
	Env map[string]string `json:"env,omitempty"`
}

// Validate checks the request before anything is created.
func (r *CreateSessionRequest) Validate() error {
	if r.ID != "" {
		if err := ValidateSessionID(r.ID); err != nil {
			return err
		}
		if r.ID == DefaultSession {
			return fmt.Errorf("session %q always exists; pick another id", DefaultSession)
		}
	}
	if r.Cwd != "" && r.Cwd[0] != '/' {
		return fmt.Errorf("cwd %q must be an absolute path", r.Cwd)
	}
	if err := ValidateEnv(r.Env); err != nil {
		return err
	}
	return ValidateShellNames(r.Env)
}

// Session describes one session.
type Session struct {
	ID string `json:"id"`
	// Cwd and Env are what the session was created with; a fresh shell
	// (after `exit`) starts from them again.
	Cwd       string            `json:"cwd"`
	Env       map[string]string `json:"env,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
	// Pid is the session shell's pid while it runs (0 before its first
	// command and after it ended).
	Pid int `json:"pid,omitempty"`
	// Busy is true while a command runs in the session.
	Busy bool `json:"busy"`
	// Terminal is true while a PTY terminal of this session is open.
	Terminal bool `json:"terminal"`
}

// SessionList is the body of GET /v1/sandboxes/{id}/sessions.
type SessionList struct {
	Sessions []Session `json:"sessions"`
}

// ValidateSessionID checks a session id: 1-64 of [A-Za-z0-9._-], starting
// with a letter or digit. Process ids follow the same rule.
func ValidateSessionID(id string) error {
	if err := validateName(id); err != nil {
		return fmt.Errorf("session id %q: %w", id, err)
	}
	return nil
}

func validateName(s string) error {
	if s == "" || len(s) > 64 {
		return errors.New("must be 1 to 64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return errors.New("use letters, digits, '.', '_' and '-', starting with a letter or digit")
		}
	}
	return nil
}

// ValidateShellNames checks that every key of env is a shell identifier
// ([A-Za-z_][A-Za-z0-9_]*), which a session's bash can export.
func ValidateShellNames(env map[string]string) error {
	for k := range env {
		if !IsShellName(k) {
			return fmt.Errorf("environment variable name %q cannot be exported by a shell; use letters, digits and '_', not starting with a digit", k)
		}
	}
	return nil
}

// IsShellName reports whether s is a shell identifier.
func IsShellName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
