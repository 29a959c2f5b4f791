package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

// do sends a JSON request (body nil: none) and returns the status and body.
func (c *testClient) do(tb testing.TB, method, path string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://agent"+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// call sends a request that must succeed with a 2xx status and decodes the
// answer into out (if not nil).
func (c *testClient) call(tb testing.TB, method, path string, body, out any) {
	tb.Helper()
	status, b := c.do(tb, method, path, body)
	if status/100 != 2 {
		tb.Fatalf("%s %s: status %d: %s", method, path, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			tb.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// apiError sends a request that must fail with status and code.
func (c *testClient) apiError(tb testing.TB, method, path string, body any, status int, code string) api.Error {
	tb.Helper()
	got, b := c.do(tb, method, path, body)
	var e api.Error
	if err := json.Unmarshal(b, &e); err != nil || got != status || e.Code != code {
		tb.Fatalf("%s %s: got %d %s, want %d %s", method, path, got, b, status, code)
	}
	return e
}

// sessionExec runs command in session sid and fails unless it answers 200.
func (c *testClient) sessionExec(tb testing.TB, sid, command string) api.ExecResult {
	tb.Helper()
	return c.exec(tb, api.ExecRequest{Command: command, Session: sid, TimeoutMs: 20_000})
}

type xEvent struct {
	name string
	data string
	at   time.Time
}

// openStream posts body to path asking for events and returns the response.
func (c *testClient) openStream(tb testing.TB, ctx context.Context, method, path string, body any) *http.Response {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, method, "http://agent"+path, rd)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tb.Fatalf("%s %s: status %d content type %q: %s", method, path, resp.StatusCode, ct, b)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readXEvents reads events until the stream ends, calling each (if not nil)
// as they come.
func readXEvents(r io.Reader, each func(xEvent)) ([]xEvent, error) {
	var out []xEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var ev xEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" {
				ev.at = time.Now()
				out = append(out, ev)
				if each != nil {
					each(ev)
				}
			}
			ev = xEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[len("data: "):]
		}
	}
	return out, sc.Err()
}

// streamExec runs req as a stream and returns every event.
func (c *testClient) streamExec(tb testing.TB, req api.ExecRequest) []xEvent {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := c.openStream(tb, ctx, "POST", "/exec", req)
	evs, err := readXEvents(resp.Body, nil)
	if err != nil {
		tb.Fatalf("reading stream: %v", err)
	}
	return evs
}

// outputOf joins the stdout and stderr events of evs, as "o:" and "e:"
// prefixed pieces in stream order.
func outputOf(tb testing.TB, evs []xEvent) (stdout, stderr string, merged []string) {
	tb.Helper()
	for _, ev := range evs {
		if ev.name != api.EventStdout && ev.name != api.EventStderr {
			continue
		}
		var o api.OutputEvent
		if err := json.Unmarshal([]byte(ev.data), &o); err != nil {
			tb.Fatal(err)
		}
		if o.Base64 {
			tb.Fatalf("unexpected base64 chunk %q", o.Data)
		}
		if ev.name == api.EventStdout {
			stdout += o.Data
		} else {
			stderr += o.Data
		}
		merged = append(merged, ev.name[3:4]+":"+o.Data)
	}
	return stdout, stderr, merged
}

func decodeAs[T any](tb testing.TB, s string) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		tb.Fatalf("decode %s: %v", s, err)
	}
	return v
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// startExecAgent is startAgent with the session FIFOs in a directory the
// test removes.
func startExecAgent(tb testing.TB, cfg Config) (*testClient, Config) {
	tb.Helper()
	if cfg.RunDir == "" {
		dir, err := os.MkdirTemp("", "sbx-run-")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
		cfg.RunDir = dir
	}
	return startAgent(tb, cfg)
}
