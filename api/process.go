package api

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Background process statuses.
const (
	ProcessStarting  = "starting"
	ProcessRunning   = "running"
	ProcessCompleted = "completed" // exited with status 0
	ProcessFailed    = "failed"    // exited non-zero, died of a signal it was not sent by a kill, or could not start
	ProcessKilled    = "killed"    // ended by DELETE .../processes
)

// Error codes of background processes and readiness waits.
const (
	CodeProcessNotFound = "PROCESS_NOT_FOUND"
	// CodeProcessExited: the process ended before the condition waited
	// for was met.
	CodeProcessExited = "PROCESS_EXITED"
	// CodeWaitTimeout: the condition was not met in time; the process
	// keeps running.
	CodeWaitTimeout = "WAIT_TIMEOUT"
)

// StartProcessRequest is the body of POST /v1/sandboxes/{id}/processes.
type StartProcessRequest struct {
	// Command is run as `bash -c COMMAND` in the background.
	Command string `json:"command"`
	// ID names the process (1-64 of [A-Za-z0-9._-]); empty means a
	// generated id. Routes take the id or the pid.
	ID string `json:"id,omitempty"`
	// Cwd is the working directory; default the session's, else
	// /workspace.
	Cwd string `json:"cwd,omitempty"`
	// Env adds variables for this process.
	Env map[string]string `json:"env,omitempty"`
	// Session starts the process with that session's current working
	// directory and exported environment; deleting the session kills it.
	Session string `json:"session,omitempty"`
}

// Validate checks the request before anything runs.
func (r *StartProcessRequest) Validate() error {
	e := ExecRequest{Command: r.Command, Cwd: r.Cwd, Env: r.Env, Session: r.Session}
	if err := e.Validate(); err != nil {
		return err
	}
	if r.ID != "" {
		if err := ValidateProcessRef(r.ID); err != nil {
			return err
		}
		if isDigits(r.ID) {
			return fmt.Errorf("process id %q is all digits and would be mistaken for a pid; add a letter", r.ID)
		}
	}
	return nil
}

// ValidateProcessRef checks the {pid} path parameter: a process id or a
// decimal pid.
func ValidateProcessRef(ref string) error {
	if err := validateName(ref); err != nil {
		return fmt.Errorf("process %q: %w", ref, err)
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Process describes a background process.
type Process struct {
	ID      string `json:"id"`
	Pid     int    `json:"pid"`
	Command string `json:"command"`
	Session string `json:"session,omitempty"`
	Cwd     string `json:"cwd"`
	Status  string `json:"status"`
	// ExitCode is set once the process has ended: its exit status, or 128
	// plus the number of the signal that ended it.
	ExitCode  *int       `json:"exitCode,omitempty"`
	StartedAt time.Time  `json:"startedAt"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
	// Error says why a failed process could not start.
	Error string `json:"error,omitempty"`
}

// Running reports whether the process has not ended yet.
func (p *Process) Running() bool { return p.Status == ProcessStarting || p.Status == ProcessRunning }

// ProcessList is the body of GET /v1/sandboxes/{id}/processes.
type ProcessList struct {
	Processes []Process `json:"processes"`
}

// KillAllResult is the answer to DELETE /v1/sandboxes/{id}/processes.
type KillAllResult struct {
	// Killed is how many running processes were killed.
	Killed int `json:"killed"`
}

// ProcessLogs is the answer to GET .../processes/{pid}/logs. Each stream
// is kept in a bounded buffer; when its oldest bytes were dropped,
// *DroppedBytes says how many.
type ProcessLogs struct {
	Stdout             string `json:"stdout"`
	Stderr             string `json:"stderr"`
	StdoutBase64       bool   `json:"stdoutBase64,omitempty"`
	StderrBase64       bool   `json:"stderrBase64,omitempty"`
	StdoutDroppedBytes int64  `json:"stdoutDroppedBytes,omitempty"`
	StderrDroppedBytes int64  `json:"stderrDroppedBytes,omitempty"`
}

// ProcessExitEvent is the data of the exit event that ends a followed log
// (GET .../logs?follow=1).
type ProcessExitEvent struct {
	ExitCode int    `json:"exitCode"`
	Status   string `json:"status"`
}

// WaitRequest is the body of POST .../processes/{pid}/wait: block until the
// process is ready by exactly one condition, or until TimeoutMs.
type WaitRequest struct {
	// Log waits for a line of output matching this regular expression
	// (RE2 syntax), looking at everything logged since the start.
	Log string `json:"log,omitempty"`
	// Stream limits Log to "stdout" or "stderr"; default both.
	Stream string `json:"stream,omitempty"`
	// Port waits for a TCP port on the sandbox's loopback to accept
	// connections, or, with HTTPPath, to answer HTTP.
	Port int `json:"port,omitempty"`
	// HTTPPath (with Port) waits for GET http://127.0.0.1:PORT/PATH to
	// answer with a status in [StatusMin, StatusMax] (default 200-399).
	HTTPPath  string `json:"httpPath,omitempty"`
	StatusMin int    `json:"statusMin,omitempty"`
	StatusMax int    `json:"statusMax,omitempty"`
	// Exit waits for the process to end; any exit code is a result.
	Exit bool `json:"exit,omitempty"`
	// TimeoutMs bounds the wait; 0 means 60 seconds.
	TimeoutMs int64 `json:"timeoutMs,omitempty"`
}

// Validate checks the request.
func (r *WaitRequest) Validate() error {
	n := 0
	if r.Log != "" {
		n++
		if _, err := regexp.Compile(r.Log); err != nil {
			return fmt.Errorf("log pattern: %v", err)
		}
	}
	if r.Port != 0 {
		n++
		if r.Port < 1 || r.Port > 65535 {
			return fmt.Errorf("port %d is out of range 1-65535", r.Port)
		}
	}
	if r.Exit {
		n++
	}
	if n != 1 {
		return errors.New("wait for exactly one condition: log, port (optionally with httpPath) or exit")
	}
	switch r.Stream {
	case "", "stdout", "stderr":
	default:
		return fmt.Errorf("stream %q: use stdout, stderr or leave it empty for both", r.Stream)
	}
	if r.Stream != "" && r.Log == "" {
		return errors.New("stream only applies to a log wait")
	}
	if r.HTTPPath != "" {
		if r.Port == 0 {
			return errors.New("httpPath needs port")
		}
		if r.HTTPPath[0] != '/' {
			return fmt.Errorf("httpPath %q must start with '/'", r.HTTPPath)
		}
	}
	if (r.StatusMin != 0 || r.StatusMax != 0) && r.HTTPPath == "" {
		return errors.New("statusMin and statusMax need httpPath")
	}
	if r.StatusMin < 0 || r.StatusMax < 0 || r.StatusMin > 599 || r.StatusMax > 599 ||
		(r.StatusMax != 0 && r.StatusMin > r.StatusMax) {
		return fmt.Errorf("status range %d-%d is not a range of HTTP statuses", r.StatusMin, r.StatusMax)
	}
	if r.TimeoutMs < 0 {
		return fmt.Errorf("timeoutMs must be 0 (60 s) or positive, not %d", r.TimeoutMs)
	}
	return nil
}

// WaitResult is the answer to a wait whose condition was met.
type WaitResult struct {
	// Condition is "log", "port", "http" or "exit".
	Condition string `json:"condition"`
	// Line is the log line that matched.
	Line string `json:"line,omitempty"`
	// Status is the HTTP status that answered.
	Status     int     `json:"status,omitempty"`
	DurationMs int64   `json:"durationMs"`
	Process    Process `json:"process"`
}

// ParseSignal parses the signal of a kill: a name (TERM, SIGTERM, term) or
// a Linux signal number. Empty means TERM (15).
func ParseSignal(s string) (int, error) {
	if s == "" {
		return 15, nil
	}
	n := 0
	if isDigits(s) && len(s) <= 2 {
		for i := 0; i < len(s); i++ {
			n = n*10 + int(s[i]-'0')
		}
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal %d is out of range 1-64", n)
		}
		return n, nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if n, ok := signalNumbers[name]; ok {
		return n, nil
	}
	return 0, fmt.Errorf("unknown signal %q; use TERM, KILL, INT, HUP, QUIT, USR1, USR2 or a number", s)
}

var signalNumbers = map[string]int{"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15}
