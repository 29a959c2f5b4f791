package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

func ptr[T any](v T) *T { return &v }

func TestExec(t *testing.T) {
	c, cfg := startAgent(t, Config{})
	sub := filepath.Join(cfg.DefaultCwd, "sub dir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB, more than a pipe holds

	tests := []struct {
		name       string
		req        api.ExecRequest
		wantStdout string
		wantStderr string
		wantExit   int
	}{
		{name: "stdout", req: api.ExecRequest{Command: "echo hello"}, wantStdout: "hello\n"},
		{name: "stderr and exit code", req: api.ExecRequest{Command: "echo oops >&2; exit 3"}, wantStderr: "oops\n", wantExit: 3},
		{name: "exit 255", req: api.ExecRequest{Command: "exit 255"}, wantExit: 255},
		{name: "killed by SIGTERM", req: api.ExecRequest{Command: "kill -TERM $$"}, wantExit: 128 + 15},
		{name: "killed by SIGKILL", req: api.ExecRequest{Command: "echo before; kill -KILL $$; echo after"}, wantStdout: "before\n", wantExit: 128 + 9},
		{name: "default cwd", req: api.ExecRequest{Command: "pwd"}, wantStdout: cfg.DefaultCwd + "\n"},
		{name: "absolute cwd", req: api.ExecRequest{Command: "pwd", Cwd: "/"}, wantStdout: "/\n"},
		{name: "cwd with a space", req: api.ExecRequest{Command: "pwd", Cwd: sub}, wantStdout: sub + "\n"},
		{name: "env", req: api.ExecRequest{Command: `printf '%s|%s' "$FOO" "$EMPTY"`, Env: map[string]string{"FOO": "bar baz", "EMPTY": ""}}, wantStdout: "bar baz|"},
		{name: "stdin", req: api.ExecRequest{Command: "cat", Stdin: ptr("line 1\nline 2\n")}, wantStdout: "line 1\nline 2\n"},
		{name: "empty stdin", req: api.ExecRequest{Command: "cat; echo done", Stdin: ptr("")}, wantStdout: "done\n"},
		{name: "stdin larger than a pipe", req: api.ExecRequest{Command: "wc -c", Stdin: &big}, wantStdout: strconv.Itoa(len(big)) + "\n"},
		{name: "stdin not read", req: api.ExecRequest{Command: "echo ignored", Stdin: &big}, wantStdout: "ignored\n"},
		{name: "no stdin reads end-of-file", req: api.ExecRequest{Command: "cat; read x || echo eof"}, wantStdout: "eof\n"},
		{name: "UTF-8 output", req: api.ExecRequest{Command: "printf 'héllo ✓'"}, wantStdout: "héllo ✓"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A hang must fail the test, not stall it.
			tt.req.TimeoutMs = 10_000
			res := c.exec(t, tt.req)
			if res.Stdout != tt.wantStdout || res.Stderr != tt.wantStderr || res.ExitCode != tt.wantExit {
				t.Errorf("got stdout %q stderr %q exit %d; want %q %q %d",
					trunc(res.Stdout), trunc(res.Stderr), res.ExitCode, tt.wantStdout, tt.wantStderr, tt.wantExit)
			}
			if want := tt.wantExit == 0; res.Success != want {
				t.Errorf("success = %v, want %v", res.Success, want)
			}
			if res.TimedOut || res.StdoutTruncated || res.StderrTruncated {
				t.Errorf("unexpected flags: %+v", res)
			}
		})
	}
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

func TestExecEnvInheritsAndOverrides(t *testing.T) {
	t.Setenv("SBXAGENTTEST_KEPT", "from agent")
	t.Setenv("SBXAGENTTEST_REPLACED", "from agent")
	c, _ := startAgent(t, Config{})
	res := c.exec(t, api.ExecRequest{
		Command: "env | grep ^SBXAGENTTEST_ | sort",
		Env:     map[string]string{"SBXAGENTTEST_REPLACED": "from request", "SBXAGENTTEST_ADDED": "a=b"},
	})
	want := "SBXAGENTTEST_ADDED=a=b\nSBXAGENTTEST_KEPT=from agent\nSBXAGENTTEST_REPLACED=from request\n"
	if res.Stdout != want {
		t.Errorf("environment:\n%s\nwant:\n%s", res.Stdout, want)
	}
}

func TestExecDuration(t *testing.T) {
	c, _ := startAgent(t, Config{})
	res := c.exec(t, api.ExecRequest{Command: "sleep 0.2"})
	if res.DurationMs < 200 || res.DurationMs > 2000 {
		t.Errorf("durationMs = %d for sleep 0.2", res.DurationMs)
	}
}

func TestExecInvalidRequest(t *testing.T) {
	c, cfg := startAgent(t, Config{})
	file := filepath.Join(cfg.DefaultCwd, "plain-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		body        string
		wantMessage string // a substring that tells the caller what to fix
	}{
		{"empty body", ``, "command is empty"},
		{"empty command", `{"command":""}`, "command is empty"},
		{"unknown field", `{"command":"true","cmd":"x"}`, `unknown field "cmd"`},
		{"malformed JSON", `{"command":`, "not valid JSON"},
		{"trailing data", `{"command":"true"} {}`, "data after the JSON object"},
		{"missing cwd", `{"command":"true","cwd":"/no/such/dir"}`, `"/no/such/dir" does not exist`},
		{"relative cwd", `{"command":"true","cwd":"nope"}`, `cwd "nope" must be an absolute path`},
		{"cwd is a file", fmt.Sprintf(`{"command":"true","cwd":%q}`, file), file + `" is not a directory`},
		{"env key with =", `{"command":"true","env":{"A=B":"x"}}`, `"A=B" must not contain '='`},
		{"empty env key", `{"command":"true","env":{"":"x"}}`, "names must not be empty"},
		{"env value with NUL", `{"command":"true","env":{"A":"x\u0000y"}}`, "NUL"},
		{"command with NUL", `{"command":"true\u0000"}`, "NUL"},
		{"negative timeout", `{"command":"true","timeoutMs":-1}`, "timeoutMs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := c.execRaw(t, []byte(tt.body))
			var e api.Error
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("status %d, body %s is not an api.Error: %v", status, b, err)
			}
			if status != http.StatusBadRequest || e.Code != api.CodeInvalidRequest {
				t.Fatalf("got %d %s (%s), want 400 %s", status, e.Code, e.Message, api.CodeInvalidRequest)
			}
			if !strings.Contains(e.Message, tt.wantMessage) {
				t.Errorf("message %q does not mention %q", e.Message, tt.wantMessage)
			}
		})
	}
}

func TestExecCommandTooLong(t *testing.T) {
	c, _ := startAgent(t, Config{})
	// The kernel refuses a single argument over 128 KiB.
	body, _ := json.Marshal(api.ExecRequest{Command: "true #" + strings.Repeat("x", 200<<10)})
	status, b := c.execRaw(t, body)
	if status != http.StatusBadRequest || !strings.Contains(string(b), "stdin") {
		t.Errorf("got %d %s, want 400 suggesting stdin", status, b)
	}
}

func TestExecTimeoutKillsGroup(t *testing.T) {
	c, _ := startAgent(t, Config{})
	start := time.Now()
	// Line 1: the group id (bash's pid); line 2: a background member.
	res := c.exec(t, api.ExecRequest{Command: "echo $$; sleep 30 & echo $!; sleep 30", TimeoutMs: 200})
	elapsed := time.Since(start)
	pgid := firstLineInt(t, res.Stdout)
	killGroupOnCleanup(t, pgid)

	if !res.TimedOut || res.ExitCode != api.ExitCodeTimedOut || res.Success {
		t.Errorf("got timedOut=%v exitCode=%d success=%v, want true %d false", res.TimedOut, res.ExitCode, res.Success, api.ExitCodeTimedOut)
	}
	if elapsed > 2*time.Second {
		t.Errorf("exec took %v with timeoutMs 200", elapsed)
	}
	if lines := strings.Fields(res.Stdout); len(lines) != 2 {
		t.Errorf("stdout %q: want the output written before the kill", res.Stdout)
	}
	if !eventually(2*time.Second, func() bool { return len(groupMembers(pgid)) == 0 }) {
		t.Errorf("processes of the timed-out group %d still exist: %v", pgid, groupMembers(pgid))
	}
}

func TestExecCancelKillsGroup(t *testing.T) {
	c, cfg := startAgent(t, Config{})
	pidFile := filepath.Join(cfg.DefaultCwd, "pgid")
	body, _ := json.Marshal(api.ExecRequest{Command: "sleep 30 & echo $$ > pgid; sleep 30"})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		resp, err := c.post(ctx, "/exec", body)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	var pgid int
	if !eventually(5*time.Second, func() bool {
		b, _ := os.ReadFile(pidFile)
		pgid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pgid > 0
	}) {
		t.Fatal("command did not start")
	}
	killGroupOnCleanup(t, pgid)
	cancel() // the client goes away
	if err := <-done; err == nil {
		t.Fatal("request succeeded despite cancellation")
	}
	if !eventually(2*time.Second, func() bool { return len(groupMembers(pgid)) == 0 }) {
		t.Errorf("processes of the abandoned group %d still exist: %v", pgid, groupMembers(pgid))
	}
}

func TestExecOutputCap(t *testing.T) {
	const limit = 1024
	c, _ := startAgent(t, Config{OutputCap: limit})
	tests := []struct {
		name          string
		command       string
		wantStdout    string
		wantTruncated bool
		wantStderr    string
	}{
		{
			// Far more than a pipe buffer: the command only finishes if the
			// excess is drained.
			name:          "over the cap",
			command:       "head -c 1000000 /dev/zero | tr '\\0' a; printf err >&2",
			wantStdout:    strings.Repeat("a", limit),
			wantTruncated: true,
			wantStderr:    "err",
		},
		{
			name:       "exactly the cap",
			command:    "head -c 1024 /dev/zero | tr '\\0' b",
			wantStdout: strings.Repeat("b", limit),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := c.exec(t, api.ExecRequest{Command: tt.command, TimeoutMs: 10_000})
			if res.TimedOut || res.ExitCode != 0 {
				t.Fatalf("exit %d timedOut %v: a capped stream must not block the command", res.ExitCode, res.TimedOut)
			}
			if res.Stdout != tt.wantStdout || res.StdoutTruncated != tt.wantTruncated {
				t.Errorf("stdout: %d bytes truncated=%v, want %d bytes truncated=%v",
					len(res.Stdout), res.StdoutTruncated, len(tt.wantStdout), tt.wantTruncated)
			}
			if res.Stderr != tt.wantStderr || res.StderrTruncated {
				t.Errorf("stderr %q truncated=%v, want %q", res.Stderr, res.StderrTruncated, tt.wantStderr)
			}
		})
	}
}

func TestExecBackgroundProcessDoesNotHang(t *testing.T) {
	c, _ := startAgent(t, Config{})
	start := time.Now()
	// The background job keeps stdout and stderr open, writes to them
	// after exec has returned, then lives on.
	res := c.exec(t, api.ExecRequest{
		Command:   "echo $$; (sleep 0.2; for i in 1 2 3; do echo late; echo late >&2; sleep 0.05; done; exec sleep 100) & echo hi",
		TimeoutMs: 10_000,
	})
	elapsed := time.Since(start)
	pgid := firstLineInt(t, res.Stdout)
	killGroupOnCleanup(t, pgid)

	if elapsed > 3*time.Second || res.TimedOut {
		t.Fatalf("exec took %v (timedOut %v): a background job holding the pipes must not delay it", elapsed, res.TimedOut)
	}
	if !strings.HasSuffix(res.Stdout, "\nhi\n") || res.ExitCode != 0 {
		t.Errorf("got stdout %q exit %d", res.Stdout, res.ExitCode)
	}
	// Its late output is drained, not answered with SIGPIPE: it must still
	// be alive (as the exec'd sleep) after writing.
	time.Sleep(600 * time.Millisecond)
	alive := procs(func(_ int, state byte, _, pgrp int) bool { return pgrp == pgid && state != 'Z' })
	if len(alive) != 1 {
		t.Errorf("background job: want 1 live process in group %d, got %v", pgid, alive)
	}
}

// TestExecConcurrent checks that exit statuses reach the right requests when
// many commands start and exit at once.
func TestExecConcurrent(t *testing.T) {
	c, _ := startAgent(t, Config{})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			res := c.exec(t, api.ExecRequest{Command: fmt.Sprintf("echo %d; exit %d", i, i)})
			if res.ExitCode != i || res.Stdout != fmt.Sprintf("%d\n", i) {
				t.Errorf("command %d: got exit %d stdout %q", i, res.ExitCode, res.Stdout)
			}
		})
	}
	wg.Wait()
}

// TestExecNoDescriptorLeak checks that a long-lived agent does not run out of
// file descriptors: every pipe an exec opens is closed when it returns.
func TestExecNoDescriptorLeak(t *testing.T) {
	c, _ := startAgent(t, Config{})
	countFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	reqs := []api.ExecRequest{
		{Command: "echo out; echo err >&2"},
		{Command: "cat", Stdin: ptr("input")},
		{Command: "exit 1", Cwd: "/"},
		{Command: "sleep 5", TimeoutMs: 50},
	}
	for _, r := range reqs { // warm up: connections, /dev/null
		c.exec(t, r)
	}
	before := countFDs()
	for range 10 {
		for _, r := range reqs {
			c.exec(t, r)
		}
	}
	// Pumps close their pipe ends just after the result is sent.
	if !eventually(time.Second, func() bool { return countFDs() <= before }) {
		t.Errorf("open descriptors grew from %d to %d over 40 execs", before, countFDs())
	}
}

// slowSink takes its time with every write, like a pump the scheduler left
// waiting on a loaded machine.
type slowSink struct {
	mu  sync.Mutex
	got [2][]byte
}

func (s *slowSink) write(stream int, p []byte) {
	time.Sleep(100 * time.Millisecond)
	s.mu.Lock()
	s.got[stream] = append(s.got[stream], p...)
	s.mu.Unlock()
}

func (s *slowSink) detach() {}

func TestPumpsNeverCutOffWrittenOutput(t *testing.T) {
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	outW.WriteString("all of stdout")
	errW.WriteString("all of stderr")
	sink := &slowSink{}
	p := startPumps(outR, errR, sink)
	// The writers stay open, as a background job would hold them: only
	// the grace ends the wait, and it must not end it before the output
	// already written is in the sink.
	p.wait(10 * time.Millisecond)
	sink.mu.Lock()
	got := [2]string{string(sink.got[0]), string(sink.got[1])}
	sink.mu.Unlock()
	if got != [2]string{"all of stdout", "all of stderr"} {
		t.Fatalf("sink got %q", got)
	}
	outW.Close()
	errW.Close()
}
