package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sbx-dev/sbx/api"
)

func (s *Sandbox) processPath(ref, suffix string) string {
	return s.path("/processes/" + url.PathEscape(ref) + suffix)
}

// StartProcess starts a background process. Its record and logs live in the
// sandbox: they survive this client and daemon restarts.
func (s *Sandbox) StartProcess(ctx context.Context, req api.StartProcessRequest) (*api.Process, error) {
	var p api.Process
	if err := s.c.do(ctx, http.MethodPost, s.path("/processes"), req, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Processes lists background processes, running and ended.
func (s *Sandbox) Processes(ctx context.Context) ([]api.Process, error) {
	var l api.ProcessList
	if err := s.c.do(ctx, http.MethodGet, s.path("/processes"), nil, &l); err != nil {
		return nil, err
	}
	return l.Processes, nil
}

// Process returns a background process by id or pid.
func (s *Sandbox) Process(ctx context.Context, ref string) (*api.Process, error) {
	var p api.Process
	if err := s.c.do(ctx, http.MethodGet, s.processPath(ref, ""), nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// KillOptions tune a kill; the zero value sends SIGTERM and SIGKILLs what
// is left after the sandbox's grace period (5 s).
type KillOptions struct {
	Signal string        // TERM, INT, HUP, QUIT, USR1, USR2, KILL or a number
	Grace  time.Duration // 0: the default
}

func (o KillOptions) query() string {
	q := url.Values{}
	if o.Signal != "" {
		q.Set("signal", o.Signal)
	}
	if o.Grace > 0 {
		q.Set("graceMs", strconv.FormatInt(o.Grace.Milliseconds(), 10))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// KillProcess ends a background process and its whole process tree and
// returns its final record.
func (s *Sandbox) KillProcess(ctx context.Context, ref string, opts KillOptions) (*api.Process, error) {
	var p api.Process
	if err := s.c.do(ctx, http.MethodDelete, s.processPath(ref, "")+opts.query(), nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// KillAllProcesses kills every running background process and reports how
// many there were.
func (s *Sandbox) KillAllProcesses(ctx context.Context, opts KillOptions) (int, error) {
	var r api.KillAllResult
	if err := s.c.do(ctx, http.MethodDelete, s.path("/processes")+opts.query(), nil, &r); err != nil {
		return 0, err
	}
	return r.Killed, nil
}

// ProcessLogs returns what a background process has logged (bounded; see
// the *DroppedBytes fields).
func (s *Sandbox) ProcessLogs(ctx context.Context, ref string) (*api.ProcessLogs, error) {
	var l api.ProcessLogs
	if err := s.c.do(ctx, http.MethodGet, s.processPath(ref, "/logs"), nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// FollowProcessLogs yields a background process's log from its beginning,
// then live: stdout, stderr and dropped events, and an exit event last.
func (s *Sandbox) FollowProcessLogs(ctx context.Context, ref string) iter.Seq2[ExecEvent, error] {
	return s.c.stream(ctx, http.MethodGet, s.processPath(ref, "/logs?follow=1"), nil)
}

// WaitProcess blocks until req's condition holds. It fails with code
// PROCESS_EXITED if the process ends first and WAIT_TIMEOUT when time runs
// out.
func (s *Sandbox) WaitProcess(ctx context.Context, ref string, req api.WaitRequest) (*api.WaitResult, error) {
	var r api.WaitResult
	if err := s.c.do(ctx, http.MethodPost, s.processPath(ref, "/wait"), req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// WaitForLog waits for a log line matching pattern (RE2).
func (s *Sandbox) WaitForLog(ctx context.Context, ref, pattern string, timeout time.Duration) (*api.WaitResult, error) {
	return s.WaitProcess(ctx, ref, api.WaitRequest{Log: pattern, TimeoutMs: timeout.Milliseconds()})
}

// WaitForPort waits for port to accept TCP connections in the sandbox.
func (s *Sandbox) WaitForPort(ctx context.Context, ref string, port int, timeout time.Duration) (*api.WaitResult, error) {
	return s.WaitProcess(ctx, ref, api.WaitRequest{Port: port, TimeoutMs: timeout.Milliseconds()})
}

// WaitForExit waits for the process to end and returns its final record.
func (s *Sandbox) WaitForExit(ctx context.Context, ref string, timeout time.Duration) (*api.Process, error) {
	r, err := s.WaitProcess(ctx, ref, api.WaitRequest{Exit: true, TimeoutMs: timeout.Milliseconds()})
	if err != nil {
		return nil, err
	}
	return &r.Process, nil
}
