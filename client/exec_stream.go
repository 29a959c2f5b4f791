package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"

	"github.com/sbx-dev/sbx/api"
)

// WithSession runs the command in session sid's persistent shell.
func WithSession(sid string) ExecOption { return func(r *api.ExecRequest) { r.Session = sid } }

// ExecEvent is one event of a streaming exec or of a followed process log;
// Type says which fields are set.
type ExecEvent struct {
	// Type is api.EventStart, EventStdout, EventStderr, EventComplete,
	// EventError (exec), or EventStdout, EventStderr, EventDropped,
	// EventExit (process logs).
	Type string
	// Pid is the command's process (start).
	Pid int
	// Data is a chunk of output (stdout, stderr), base64 already decoded.
	Data []byte
	// ExitCode, Success, DurationMs, TimedOut and OOMKilled describe the
	// end (complete; exit has ExitCode and Status).
	ExitCode   int
	Success    bool
	DurationMs int64
	TimedOut   bool
	OOMKilled  bool
	Status     string
	// Stream and Dropped say how many bytes of which stream were dropped
	// from a bounded log before they could be read (dropped).
	Stream  string
	Dropped int64
	// Err is the error of an error event.
	Err *Error
}

// Final reports whether ev ends its stream.
func (ev ExecEvent) Final() bool {
	return ev.Type == api.EventComplete || ev.Type == api.EventError || ev.Type == api.EventExit
}

// ExecStream runs command and yields its events as they happen: start,
// stdout and stderr chunks in the order the sandbox read them, and last
// complete, which comes only after the command really exited. If the
// command's outcome cannot be known (the sandbox died) the last event is an
// error event, yielded with its *Error as the error. A broken connection
// or a stream that ends without a final event yields a non-nil error.
//
//	for ev, err := range sb.ExecStream(ctx, "make test") {
//		if err != nil { return err }
//		if ev.Type == api.EventStdout { os.Stdout.Write(ev.Data) }
//	}
func (s *Sandbox) ExecStream(ctx context.Context, command string, opts ...ExecOption) iter.Seq2[ExecEvent, error] {
	req := api.ExecRequest{Command: command}
	for _, o := range opts {
		o(&req)
	}
	return s.ExecStreamRequest(ctx, req)
}

// ExecStreamRequest is ExecStream with a full request.
func (s *Sandbox) ExecStreamRequest(ctx context.Context, req api.ExecRequest) iter.Seq2[ExecEvent, error] {
	return s.c.stream(ctx, http.MethodPost, s.path("/exec"), req)
}

// ExecStreamFunc runs req, calls fn for each event and returns the final
// one (complete). fn returning an error stops the stream (and, as the
// request is cancelled, kills the command).
func (s *Sandbox) ExecStreamFunc(ctx context.Context, req api.ExecRequest, fn func(ExecEvent) error) (*ExecEvent, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for ev, err := range s.ExecStreamRequest(ctx, req) {
		if err != nil {
			return nil, err
		}
		if fn != nil {
			if err := fn(ev); err != nil {
				return nil, err
			}
		}
		if ev.Final() {
			return &ev, nil
		}
	}
	return nil, errors.New("sbx: stream ended without an event")
}

// stream sends a request asking for server-sent events and yields them.
func (c *Client) stream(ctx context.Context, method, path string, in any) iter.Seq2[ExecEvent, error] {
	return func(yield func(ExecEvent, error) bool) {
		var body io.Reader
		if in != nil {
			b, err := json.Marshal(in)
			if err != nil {
				yield(ExecEvent{}, err)
				return
			}
			body = bytes.NewReader(b)
		}
		req, err := c.newRequest(ctx, method, path, body)
		if err != nil {
			yield(ExecEvent{}, err)
			return
		}
		req.Header.Set("Accept", "text/event-stream")
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.doRaw(req)
		if err != nil {
			yield(ExecEvent{}, err)
			return
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			yield(ExecEvent{}, fmt.Errorf("sbx: %s %s answered %q, not an event stream", method, path, ct))
			return
		}
		final := false
		for ev, err := range readEvents(resp.Body) {
			if err != nil {
				if ctx.Err() != nil {
					err = ctx.Err()
				}
				yield(ExecEvent{}, err)
				return
			}
			final = ev.Final()
			var evErr error
			if ev.Err != nil {
				evErr = ev.Err
			}
			if !yield(ev, evErr) || final {
				return
			}
		}
		if !final {
			err := fmt.Errorf("sbx: %s %s: the stream ended without a final event: %w", method, path, io.ErrUnexpectedEOF)
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			yield(ExecEvent{}, err)
		}
	}
}

// readEvents parses server-sent events of the exec and log streams.
func readEvents(r io.Reader) iter.Seq2[ExecEvent, error] {
	return func(yield func(ExecEvent, error) bool) {
		br := bufio.NewReaderSize(r, 64<<10)
		var name string
		var data []byte
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				if errors.Is(err, io.EOF) {
					return
				}
				yield(ExecEvent{}, fmt.Errorf("sbx: reading event stream: %w", err))
				return
			}
			line = bytes.TrimRight(line, "\r\n")
			switch {
			case len(line) == 0:
				if name == "" && data == nil {
					continue
				}
				ev, err := decodeExecEvent(name, data)
				name, data = "", nil
				if !yield(ev, err) || err != nil {
					return
				}
			case line[0] == ':': // keep-alive
			case bytes.HasPrefix(line, []byte("event:")):
				name = strings.TrimSpace(string(line[len("event:"):]))
			case bytes.HasPrefix(line, []byte("data:")):
				d := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, d...)
			}
		}
	}
}

func decodeExecEvent(name string, data []byte) (ExecEvent, error) {
	ev := ExecEvent{Type: name}
	var err error
	switch name {
	case api.EventStart:
		var e api.ExecStartEvent
		err = json.Unmarshal(data, &e)
		ev.Pid = e.Pid
	case api.EventStdout, api.EventStderr:
		var e api.OutputEvent
		if err = json.Unmarshal(data, &e); err == nil {
			ev.Data = []byte(e.Data)
			if e.Base64 {
				ev.Data, err = base64.StdEncoding.DecodeString(e.Data)
			}
		}
	case api.EventComplete:
		var e api.ExecCompleteEvent
		err = json.Unmarshal(data, &e)
		ev.ExitCode, ev.Success, ev.DurationMs, ev.TimedOut, ev.OOMKilled = e.ExitCode, e.Success, e.DurationMs, e.TimedOut, e.OOMKilled
	case api.EventExit:
		var e api.ProcessExitEvent
		err = json.Unmarshal(data, &e)
		ev.ExitCode, ev.Status, ev.Success = e.ExitCode, e.Status, e.ExitCode == 0
	case api.EventDropped:
		var e api.DroppedEvent
		err = json.Unmarshal(data, &e)
		ev.Stream, ev.Dropped = e.Stream, e.Bytes
	case api.EventError:
		var e api.Error
		err = json.Unmarshal(data, &e)
		ev.Err = &Error{Status: statusOf(e.Code), Code: e.Code, Message: e.Message}
	default:
		return ev, nil // unknown events are for newer clients
	}
	if err != nil {
		return ev, fmt.Errorf("sbx: malformed %s event %q: %w", name, data, err)
	}
	return ev, nil
}

// statusOf gives an error that arrived as an event the HTTP status it
// would have had, so that errors.Is works on it too.
func statusOf(code string) int {
	switch code {
	case api.CodeSandboxUnavailable:
		return http.StatusServiceUnavailable
	case api.CodeSessionNotFound, api.CodeProcessNotFound, api.CodeSandboxNotFound, api.CodeNotFound:
		return http.StatusNotFound
	case api.CodeSessionTerminated, api.CodeProcessExited, api.CodeConflict:
		return http.StatusConflict
	case api.CodeInvalidRequest:
		return http.StatusBadRequest
	case api.CodeCapacityExceeded:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}
