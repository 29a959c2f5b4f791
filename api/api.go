// Package api holds the wire types of sbx: the JSON bodies exchanged between
// clients and sbxd, and between sbxd and the sbx-agent inside each sandbox.
// The same types serve both hops, so a request a client sends to
// /v1/sandboxes/{id}/exec is the request the agent receives at /exec.
package api

import (
	"encoding/json"
	"fmt"
	"time"
)

// Sandbox statuses.
const (
	StatusRunning = "running"
	StatusStopped = "stopped"
)

// Sandbox describes one sandbox as the API reports it.
type Sandbox struct {
	ID           string            `json:"id"`
	Status       string            `json:"status"`
	Image        string            `json:"image"`
	InstanceType string            `json:"instanceType"`
	Env          map[string]string `json:"env,omitempty"`
	SleepAfter   Duration          `json:"sleepAfter"`
	KeepAlive    bool              `json:"keepAlive"`
	Network      *Network          `json:"network,omitempty"`
	Persistent   bool              `json:"persistent,omitempty"`
	CreatedAt    time.Time         `json:"createdAt"`
	LastActiveAt time.Time         `json:"lastActiveAt"`
}

// SandboxList is the body of GET /v1/sandboxes.
type SandboxList struct {
	Sandboxes []Sandbox `json:"sandboxes"`
}

// CreateSandboxRequest is the body of PUT /v1/sandboxes/{id}. Every field is
// optional; zero values take the daemon's defaults.
type CreateSandboxRequest struct {
	// Image names a built image; empty means the default image.
	Image string `json:"image,omitempty"`
	// InstanceType is one of lite, basic, standard-1 … standard-4.
	InstanceType string `json:"instanceType,omitempty"`
	// Env is set for every command run in the sandbox.
	Env map[string]string `json:"env,omitempty"`
	// SleepAfter is how long the sandbox may stay idle before it is
	// stopped, as a Go duration string ("10m", "90s").
	SleepAfter Duration `json:"sleepAfter,omitempty"`
	// KeepAlive disables the idle stop.
	KeepAlive bool `json:"keepAlive,omitempty"`
	// Network is the network policy, "internet" (default), "none" or an
	// object with allow and deny lists; see Network in network.go.
	Network *Network `json:"network,omitempty"`
	// Persistent keeps the sandbox's whole file system across stops,
	// idle stops and daemon restarts (processes are not kept); see
	// api/backup.go.
	Persistent bool `json:"persistent,omitempty"`
}

// ExecRequest is the body of POST /v1/sandboxes/{id}/exec.
type ExecRequest struct {
	// Command is run as `bash -c COMMAND`.
	Command string `json:"command"`
	// Cwd is the working directory; default /workspace.
	Cwd string `json:"cwd,omitempty"`
	// Env adds variables for this command only.
	Env map[string]string `json:"env,omitempty"`
	// Stdin, when set, is written to the command's standard input; without
	// it the command reads end-of-file.
	Stdin *string `json:"stdin,omitempty"`
	// TimeoutMs kills the command's process group after this many
	// milliseconds; 0 means no timeout.
	TimeoutMs int64 `json:"timeoutMs,omitempty"`
	// Session runs the command in that session's persistent shell (see
	// api/session.go); empty runs it in a fresh shell of its own.
	Session string `json:"session,omitempty"`
}

// ExecResult is the response of a non-streaming exec. A non-zero exit code is
// a result, not an error.
type ExecResult struct {
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	ExitCode   int    `json:"exitCode"`
	Success    bool   `json:"success"`
	DurationMs int64  `json:"durationMs"`
	TimedOut   bool   `json:"timedOut"`
	// OOMKilled: the command (or the program it ran last) was killed by
	// the kernel because the sandbox reached its memory limit; the exit
	// code is then 137. A larger instance type gives more memory.
	OOMKilled       bool `json:"oomKilled,omitempty"`
	StdoutTruncated bool `json:"stdoutTruncated,omitempty"`
	StderrTruncated bool `json:"stderrTruncated,omitempty"`
}

// Health is the body of GET /healthz (daemon) and GET /health (agent).
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version,omitempty"`
}

// Duration is a time.Duration that travels as a Go duration string ("10m").
// A bare JSON number is accepted as seconds.
type Duration time.Duration

// MarshalJSON renders d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts "90s"-style strings and numbers of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q: use a form like \"90s\" or \"10m\"", s)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("invalid duration %s: use a string like \"10m\" or a number of seconds", b)
	}
	*d = Duration(time.Duration(secs * float64(time.Second)))
	return nil
}
