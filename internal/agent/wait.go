package agent

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// Readiness waits block until a background process is ready by one
// condition: a log line matching a pattern, a port accepting TCP or
// answering HTTP, or its exit. A process that ends first, for any condition
// but exit, is an error (PROCESS_EXITED), as is running out of time
// (WAIT_TIMEOUT); the process keeps running then.

const (
	defaultWaitTimeout = 60 * time.Second
	probeInterval      = 20 * time.Millisecond
	// maxLine bounds a partial log line kept for matching; longer lines
	// are matched in pieces.
	maxLine = 64 << 10
)

func (a *Agent) handleWait(w http.ResponseWriter, r *http.Request) {
	b, err := a.lookupProcess(r)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	var req api.WaitRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := req.Validate(); err != nil {
		errdefs.Write(w, invalid(err))
		return
	}
	res, err := b.wait(r.Context(), &req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, res)
}

// wait blocks until req's condition holds for b.
func (b *bgProcess) wait(ctx context.Context, req *api.WaitRequest) (*api.WaitResult, error) {
	timeout := defaultWaitTimeout
	if req.TimeoutMs > 0 {
		timeout = time.Duration(min(req.TimeoutMs, int64(24*time.Hour/time.Millisecond))) * time.Millisecond
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := &api.WaitResult{}
	var what string
	var err error
	switch {
	case req.Exit:
		res.Condition, what = "exit", "exit"
		select {
		case <-b.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	case req.Log != "":
		res.Condition, what = "log", fmt.Sprintf("a log line matching %q", req.Log)
		res.Line, err = b.waitLog(ctx, regexp.MustCompile(req.Log), req.Stream)
	default:
		res.Condition, what = "port", fmt.Sprintf("port %d to accept connections", req.Port)
		if req.HTTPPath != "" {
			lo, hi := req.StatusMin, req.StatusMax
			if lo == 0 && hi == 0 {
				lo, hi = 200, 399
			} else if hi == 0 {
				hi = 599
			}
			res.Condition = "http"
			what = fmt.Sprintf("GET http://localhost:%d%s to answer with a status in %d-%d", req.Port, req.HTTPPath, lo, hi)
			res.Status, err = b.waitHTTP(ctx, req.Port, req.HTTPPath, lo, hi)
		} else {
			err = b.waitPort(ctx, req.Port)
		}
	}
	res.DurationMs = time.Since(start).Milliseconds()
	res.Process = b.view()
	switch {
	case err == errExited:
		code := -1
		if res.Process.ExitCode != nil {
			code = *res.Process.ExitCode
		}
		return nil, fmt.Errorf("%w: process %q ended (%s, exit code %d) before %s; see its logs",
			errdefs.ErrProcessExited, b.id, res.Process.Status, code, what)
	case err != nil && ctx.Err() == context.DeadlineExceeded:
		return nil, fmt.Errorf("%w: process %q: still waiting for %s after %v; the process is still %s (see its logs, or wait longer with timeoutMs)",
			errdefs.ErrWaitTimeout, b.id, what, timeout, res.Process.Status)
	case err != nil:
		return nil, fmt.Errorf("%w: wait cancelled: %v", errdefs.ErrUnavailable, err)
	}
	return res, nil
}

var errExited = fmt.Errorf("process exited")

// waitLog scans the log from its start for a line matching re.
func (b *bgProcess) waitLog(ctx context.Context, re *regexp.Regexp, stream string) (string, error) {
	var cur logCursor
	var partial [2][]byte
	match := func(s int, line []byte) bool {
		if stream != "" && streamNames[s] != stream {
			return false
		}
		return re.Match(bytes.TrimSuffix(line, []byte("\r")))
	}
	for {
		items, ended, _, changed := b.logs.next(&cur)
		for _, it := range items {
			if it.data == nil {
				partial[it.stream] = nil // the line's start was dropped
				continue
			}
			data := it.data
			for len(data) > 0 {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					partial[it.stream] = append(partial[it.stream], data...)
					if len(partial[it.stream]) > maxLine {
						if match(it.stream, partial[it.stream]) {
							return string(partial[it.stream]), nil
						}
						partial[it.stream] = nil
					}
					break
				}
				line := append(partial[it.stream], data[:i]...)
				partial[it.stream] = nil
				data = data[i+1:]
				if match(it.stream, line) {
					return string(line), nil
				}
			}
		}
		if ended {
			for s := range 2 {
				if len(partial[s]) > 0 && match(s, partial[s]) {
					return string(partial[s]), nil
				}
			}
			return "", errExited
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// dialPort connects to port on the loopback, IPv4 first, then IPv6
// (servers that listen on "localhost" may take either).
func dialPort(ctx context.Context, port int) (net.Conn, error) {
	d := net.Dialer{Timeout: time.Second}
	p := strconv.Itoa(port)
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", p))
	if err == nil {
		return c, nil
	}
	if c6, err6 := d.DialContext(ctx, "tcp", net.JoinHostPort("::1", p)); err6 == nil {
		return c6, nil
	}
	return nil, err
}

// poll calls probe every probeInterval until it succeeds, the process
// ends or ctx is done.
func (b *bgProcess) poll(ctx context.Context, probe func() bool) error {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		if probe() {
			return nil
		}
		select {
		case <-b.done:
			if probe() { // ready just as it ended: a daemonizing start
				return nil
			}
			return errExited
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (b *bgProcess) waitPort(ctx context.Context, port int) error {
	return b.poll(ctx, func() bool {
		c, err := dialPort(ctx, port)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

func (b *bgProcess) waitHTTP(ctx context.Context, port int, path string, lo, hi int) (int, error) {
	tr := &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return dialPort(ctx, port) },
		DisableKeepAlives: true,
		Proxy:             nil,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	status := 0
	err := b.poll(ctx, func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost:"+strconv.Itoa(port)+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		status = resp.StatusCode
		return status >= lo && status <= hi
	})
	return status, err
}
