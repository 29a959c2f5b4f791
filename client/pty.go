package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/coder/websocket"

	"github.com/sbx-dev/sbx/api"
)

// TerminalOptions choose the terminal to open.
type TerminalOptions struct {
	// Session whose terminal to open (default api.DefaultSession). An
	// existing terminal is attached to and replays its recent output.
	Session string
	// Cols and Rows set the size; zero keeps the terminal's (80x24 for a
	// new one).
	Cols, Rows int
}

// Terminal is an open PTY terminal in a sandbox. Read returns its output
// and io.EOF once its shell has exited (see ExitCode); Write types into it.
// Closing it leaves the terminal running for a later attach.
type Terminal struct {
	conn  *websocket.Conn
	ctx   context.Context
	stop  context.CancelFunc
	out   *io.PipeReader
	Ready api.PTYMessage // the server's ready message: pid, session, size

	mu     sync.Mutex
	exited bool
	code   int
	err    error
}

// OpenTerminal opens a terminal over a WebSocket.
func (s *Sandbox) OpenTerminal(ctx context.Context, opts TerminalOptions) (*Terminal, error) {
	q := url.Values{}
	if opts.Session != "" {
		q.Set("session", opts.Session)
	}
	if opts.Cols > 0 || opts.Rows > 0 {
		q.Set("cols", strconv.Itoa(opts.Cols))
		q.Set("rows", strconv.Itoa(opts.Rows))
	}
	u := s.c.base + s.path("/pty")
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	u = "ws" + strings.TrimPrefix(u, "http")
	h := http.Header{}
	if s.c.token != "" {
		h.Set("Authorization", "Bearer "+s.c.token)
	}
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: s.c.hc, HTTPHeader: h,
		CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			if resp.Body != nil {
				return nil, decodeError(resp)
			}
			return nil, &Error{Status: resp.StatusCode, Code: "HTTP_" + strconv.Itoa(resp.StatusCode), Message: err.Error()}
		}
		return nil, fmt.Errorf("sbx: opening terminal: %w", err)
	}
	conn.SetReadLimit(16 << 20)
	// The connection lives beyond ctx, which only bounds the opening.
	cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	pr, pw := io.Pipe()
	t := &Terminal{conn: conn, ctx: cctx, stop: stop, out: pr}
	ready := make(chan error, 1)
	go t.readLoop(pw, ready)
	select {
	case err := <-ready:
		if err != nil {
			t.Close()
			return nil, err
		}
	case <-ctx.Done():
		t.Close()
		return nil, ctx.Err()
	}
	return t, nil
}

// readLoop splits the connection into output (to pw) and control.
func (t *Terminal) readLoop(pw *io.PipeWriter, ready chan<- error) {
	gotReady := false
	fail := func(err error) {
		if !gotReady {
			ready <- err
		}
		pw.CloseWithError(err)
	}
	for {
		typ, data, err := t.conn.Read(t.ctx)
		if err != nil {
			t.mu.Lock()
			exited := t.exited
			t.mu.Unlock()
			if exited {
				pw.Close()
				return
			}
			fail(fmt.Errorf("sbx: terminal connection: %w", err))
			return
		}
		if typ == websocket.MessageBinary {
			if _, err := pw.Write(data); err != nil {
				return // the reader closed the terminal
			}
			continue
		}
		var m api.PTYMessage
		if err := json.Unmarshal(data, &m); err != nil {
			continue
		}
		switch m.Type {
		case api.PTYReady:
			t.Ready = m
			if !gotReady {
				gotReady = true
				ready <- nil
			}
		case api.PTYExit:
			code, _ := m.Code.(float64)
			t.mu.Lock()
			t.exited, t.code = true, int(code)
			t.mu.Unlock()
			if !gotReady {
				gotReady = true
				ready <- nil
			}
		case api.PTYError:
			code, _ := m.Code.(string)
			e := &Error{Status: statusOf(code), Code: code, Message: m.Message}
			t.mu.Lock()
			t.err = e
			t.mu.Unlock()
			if !gotReady {
				fail(e)
				return
			}
		}
	}
}

// Read reads terminal output. It returns io.EOF once the shell exited.
func (t *Terminal) Read(p []byte) (int, error) { return t.out.Read(p) }

// Write sends input to the terminal.
func (t *Terminal) Write(p []byte) (int, error) {
	if err := t.conn.Write(t.ctx, websocket.MessageBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Resize changes the terminal's size; programs in it get SIGWINCH.
func (t *Terminal) Resize(cols, rows int) error {
	b, _ := json.Marshal(api.PTYMessage{Type: api.PTYResize, Cols: cols, Rows: rows})
	return t.conn.Write(t.ctx, websocket.MessageText, b)
}

// ExitCode is the shell's exit code, once Read has returned io.EOF.
func (t *Terminal) ExitCode() (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.code, t.exited
}

// LastError is the last error the server reported on the terminal, if any.
func (t *Terminal) LastError() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		return nil
	}
	return t.err
}

// Close detaches from the terminal; its shell keeps running.
func (t *Terminal) Close() error {
	err := t.conn.Close(websocket.StatusNormalClosure, "")
	t.stop()
	t.out.Close()
	if websocket.CloseStatus(err) == websocket.StatusNormalClosure || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
