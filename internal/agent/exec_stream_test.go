package agent

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

func TestExecStream(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	tests := []struct {
		name       string
		req        api.ExecRequest
		wantStdout string
		wantStderr string
		wantExit   int
		timedOut   bool
	}{
		{name: "output and exit code", req: api.ExecRequest{Command: "echo out; echo err >&2; exit 3"}, wantStdout: "out\n", wantStderr: "err\n", wantExit: 3},
		{name: "signal", req: api.ExecRequest{Command: "kill -KILL $$"}, wantExit: 137},
		{name: "stdin", req: api.ExecRequest{Command: "cat", Stdin: ptr("piped")}, wantStdout: "piped"},
		{name: "no stdin is EOF", req: api.ExecRequest{Command: "cat; echo eof"}, wantStdout: "eof\n"},
		{name: "timeout", req: api.ExecRequest{Command: "echo started; sleep 30", TimeoutMs: 200}, wantStdout: "started\n", wantExit: api.ExitCodeTimedOut, timedOut: true},
		{name: "session", req: api.ExecRequest{Command: "echo in session; (exit 4)", Session: "default"}, wantStdout: "in session\n", wantExit: 4},
		{name: "session stdin", req: api.ExecRequest{Command: "cat", Session: "default", Stdin: ptr("x")}, wantStdout: "x"},
		{name: "session timeout", req: api.ExecRequest{Command: "echo started; sleep 30", Session: "default", TimeoutMs: 200}, wantStdout: "started\n", wantExit: api.ExitCodeTimedOut, timedOut: true},
		{name: "split UTF-8", req: api.ExecRequest{Command: `printf '\xc3'; sleep 0.05; printf '\xa9\n'`}, wantStdout: "é\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := c.streamExec(t, tt.req)
			if len(evs) < 2 || evs[0].name != api.EventStart {
				t.Fatalf("events %v: want start first", evs)
			}
			if start := decodeAs[api.ExecStartEvent](t, evs[0].data); start.Pid <= 0 {
				t.Errorf("start pid %d", start.Pid)
			}
			last := evs[len(evs)-1]
			if last.name != api.EventComplete {
				t.Fatalf("last event %v, want complete", last)
			}
			done := decodeAs[api.ExecCompleteEvent](t, last.data)
			stdout, stderr, _ := outputOf(t, evs)
			if stdout != tt.wantStdout || stderr != tt.wantStderr || done.ExitCode != tt.wantExit || done.TimedOut != tt.timedOut {
				t.Errorf("got %q %q exit %d timedOut %v; want %q %q %d %v", stdout, stderr, done.ExitCode, done.TimedOut,
					tt.wantStdout, tt.wantStderr, tt.wantExit, tt.timedOut)
			}
			if done.Success != (tt.wantExit == 0) {
				t.Errorf("success %v", done.Success)
			}
		})
	}
}

// TestExecStreamOrder checks that stdout and stderr keep their relative
// order when they are written apart in time.
func TestExecStreamOrder(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	for _, session := range []string{"", "default"} {
		evs := c.streamExec(t, api.ExecRequest{Session: session,
			Command: `for i in 1 2 3 4 5; do echo "out $i"; sleep 0.05; echo "err $i" >&2; sleep 0.05; done`})
		_, _, merged := outputOf(t, evs)
		var want []string
		for i := 1; i <= 5; i++ {
			want = append(want, fmt.Sprintf("o:out %d\n", i), fmt.Sprintf("e:err %d\n", i))
		}
		if strings.Join(merged, "") != strings.Join(want, "") {
			t.Errorf("session %q: order %q, want %q", session, merged, want)
		}
	}
}

// TestExecStreamIsLive checks that output reaches the client as it is
// written, long before the command ends, and that complete waits for the
// real exit.
func TestExecStreamIsLive(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	resp := c.openStream(t, ctx, "POST", "/exec", api.ExecRequest{Command: "echo first; sleep 0.5; echo second"})
	evs, err := readXEvents(resp.Body, nil)
	if err != nil {
		t.Fatal(err)
	}
	var first, second, complete time.Duration
	for _, ev := range evs {
		switch {
		case ev.name == api.EventStdout && strings.Contains(ev.data, "first"):
			first = ev.at.Sub(start)
		case ev.name == api.EventStdout && strings.Contains(ev.data, "second"):
			second = ev.at.Sub(start)
		case ev.name == api.EventComplete:
			complete = ev.at.Sub(start)
		}
	}
	if first == 0 || first > 300*time.Millisecond {
		t.Errorf("first output arrived after %v", first)
	}
	if second < 500*time.Millisecond || complete < second {
		t.Errorf("second at %v, complete at %v", second, complete)
	}
}

func TestExecStreamBinary(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	evs := c.streamExec(t, api.ExecRequest{Command: `printf 'ok\n'; sleep 0.05; printf '\x00\xff\xfe'`})
	var text string
	var bin []byte
	for _, ev := range evs {
		if ev.name != api.EventStdout {
			continue
		}
		o := decodeAs[api.OutputEvent](t, ev.data)
		if o.Base64 {
			b, err := base64.StdEncoding.DecodeString(o.Data)
			if err != nil {
				t.Fatal(err)
			}
			bin = append(bin, b...)
		} else {
			text += o.Data
		}
	}
	if text != "ok\n" || string(bin) != "\x00\xff\xfe" {
		t.Errorf("text %q binary %q", text, bin)
	}
}

func TestExecStreamErrors(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	// Validation and unknown sessions answer before the stream begins.
	c.apiError(t, "POST", "/exec", api.ExecRequest{Command: ""}, 400, api.CodeInvalidRequest)
	req := api.ExecRequest{Command: "true", Session: "nope"}
	status, b := c.do(t, "POST", "/exec", req)
	if status != 404 || !strings.Contains(string(b), api.CodeSessionNotFound) {
		t.Errorf("unknown session: %d %s", status, b)
	}
}

func TestExecStreamKeepAlive(t *testing.T) {
	c, _ := startExecAgent(t, Config{ExecConfig: ExecConfig{KeepAlive: 50 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp := c.openStream(t, ctx, "POST", "/exec", api.ExecRequest{Command: "sleep 0.3"})
	b := new(strings.Builder)
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if strings.Count(b.String(), ": keep-alive") < 3 {
		t.Errorf("quiet stream carried no keep-alives: %q", b.String())
	}
}
