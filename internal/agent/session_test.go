package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

func TestSessionStatePersists(t *testing.T) {
	c, cfg := startExecAgent(t, Config{})
	dir := filepath.Join(cfg.DefaultCwd, "sub")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	steps := []struct{ command, want string }{
		{"cd sub && export GREETING='hi there'", ""},
		{"pwd", dir + "\n"},
		{`echo "$GREETING"`, "hi there\n"},
		{"greet() { echo \"hello, $1\"; }; alias ll='echo aliased'", ""},
		{"greet world; ll", "hello, world\naliased\n"},
		{"declare -A m=([k]=v); n=5", ""},
		{`echo "${m[k]} $n"`, "v 5\n"},
		{`bash -c 'echo "$GREETING"'`, "hi there\n"}, // exported to children
		{`echo "it's ok!"; echo 'quotes " and \'`, "it's ok!\nquotes \" and \\\n"},
		{"false", ""},
		{"echo $?", "1\n"}, // $? carries over like in a terminal
	}
	for _, s := range steps {
		res := c.sessionExec(t, api.DefaultSession, s.command)
		if res.Stdout != s.want {
			t.Fatalf("%q: stdout %q (stderr %q, exit %d), want %q", s.command, res.Stdout, res.Stderr, res.ExitCode, s.want)
		}
	}
	res := c.sessionExec(t, api.DefaultSession, "echo out; echo err >&2; (exit 3)")
	if res.Stdout != "out\n" || res.Stderr != "err\n" || res.ExitCode != 3 || res.Success {
		t.Errorf("exit status: %+v", res)
	}
	// A syntax error is an error of that command, not of the session.
	res = c.sessionExec(t, api.DefaultSession, `echo "unterminated`)
	if res.ExitCode != 2 || !strings.Contains(res.Stderr, "unexpected EOF") {
		t.Errorf("syntax error: %+v", res)
	}
	if res := c.sessionExec(t, api.DefaultSession, "pwd"); res.Stdout != dir+"\n" {
		t.Errorf("session lost its state after a syntax error: %q", res.Stdout)
	}
	// One-shot commands do not see session state.
	if res := c.exec(t, api.ExecRequest{Command: `echo "[$GREETING]"; pwd`}); res.Stdout != "[]\n"+cfg.DefaultCwd+"\n" {
		t.Errorf("one-shot exec saw session state: %q", res.Stdout)
	}
}

func TestSessionIsolation(t *testing.T) {
	c, cfg := startExecAgent(t, Config{})
	var a, b api.Session
	c.call(t, "POST", "/sessions", api.CreateSessionRequest{ID: "a", Env: map[string]string{"WHO": "a"}}, &a)
	c.call(t, "POST", "/sessions", api.CreateSessionRequest{ID: "b", Cwd: "/", Env: map[string]string{"WHO": "b"}}, &b)
	if a.ID != "a" || a.Cwd != cfg.DefaultCwd || b.Cwd != "/" || a.Pid == 0 {
		t.Fatalf("created %+v and %+v", a, b)
	}
	c.sessionExec(t, "a", "cd /tmp; export ONLY_A=1; fa() { echo fa; }; X=from-a")
	tests := []struct{ sid, command, want string }{
		{"a", `echo "$WHO $PWD $ONLY_A $X"; type -t fa`, "a /tmp 1 from-a\nfunction\n"},
		{"b", `echo "$WHO $PWD [$ONLY_A] [$X]"; type -t fa || echo none`, "b / [] []\nnone\n"},
		{api.DefaultSession, `echo "[$WHO] $PWD"`, "[] " + cfg.DefaultCwd + "\n"},
	}
	for _, tt := range tests {
		if res := c.sessionExec(t, tt.sid, tt.command); res.Stdout != tt.want {
			t.Errorf("session %s: %q, want %q", tt.sid, res.Stdout, tt.want)
		}
	}
	// Sessions share the filesystem.
	c.sessionExec(t, "a", "echo shared > /tmp/sbx-session-test-$PPID")
	t.Cleanup(func() { os.Remove(fmt.Sprintf("/tmp/sbx-session-test-%d", os.Getpid())) })
	if res := c.sessionExec(t, "b", "cat /tmp/sbx-session-test-$PPID"); res.Stdout != "shared\n" {
		t.Errorf("file written in a, read in b: %q %q", res.Stdout, res.Stderr)
	}
	var list api.SessionList
	c.call(t, "GET", "/sessions", nil, &list)
	var ids []string
	for _, s := range list.Sessions {
		ids = append(ids, s.ID)
	}
	if strings.Join(ids, ",") != "a,b,default" {
		t.Errorf("sessions %v", ids)
	}
}

func TestSessionPerCallCwdAndEnvDoNotLeak(t *testing.T) {
	c, cfg := startExecAgent(t, Config{})
	c.sessionExec(t, "default", "export KEEP=session; export OVER=session")
	res := c.exec(t, api.ExecRequest{Session: "default", Command: `pwd; echo "$KEEP $OVER $NEW"; export INSIDE=1`,
		Cwd: "/", Env: map[string]string{"OVER": "call", "NEW": "call"}})
	if res.Stdout != "/\nsession call call\n" {
		t.Fatalf("per-call cwd/env: %q %q", res.Stdout, res.Stderr)
	}
	res = c.sessionExec(t, "default", `pwd; echo "$KEEP $OVER [$NEW] $INSIDE"`)
	if res.Stdout != cfg.DefaultCwd+"\nsession session [] 1\n" {
		t.Errorf("after the call: %q", res.Stdout)
	}
	// Names a shell cannot export are refused for session calls.
	c.apiError(t, "POST", "/exec", api.ExecRequest{Session: "default", Command: "true", Env: map[string]string{"A.B": "x"}},
		http.StatusBadRequest, api.CodeInvalidRequest)
}

func TestSessionStdin(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	big := strings.Repeat("x", 300<<10)
	tests := []struct {
		name, command string
		stdin         *string
		want          string
	}{
		{"stdin", "cat", ptr("a\nb\n"), "a\nb\n"},
		{"large stdin", "wc -c", &big, strconv.Itoa(len(big)) + "\n"},
		{"stdin not read", "echo ignored", &big, "ignored\n"},
		{"no stdin is EOF", "cat; read x || echo eof", nil, "eof\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := c.exec(t, api.ExecRequest{Session: "default", Command: tt.command, Stdin: tt.stdin, TimeoutMs: 10_000})
			if res.Stdout != tt.want || res.TimedOut {
				t.Errorf("got %q (timedOut %v), want %q", trunc(res.Stdout), res.TimedOut, tt.want)
			}
		})
	}
}

func TestSessionOrderAndParallelism(t *testing.T) {
	c, cfg := startExecAgent(t, Config{})
	for _, id := range []string{"p1", "p2", "p3"} {
		c.call(t, "POST", "/sessions", api.CreateSessionRequest{ID: id}, nil)
	}
	// Commands sent at once to one session run one after another, in the
	// order they arrived.
	log := filepath.Join(cfg.DefaultCwd, "order")
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			c.sessionExec(t, "p1", fmt.Sprintf("echo start %d >> %s; sleep 0.02; echo end %d >> %s", i, log, i, log))
		})
		time.Sleep(5 * time.Millisecond) // arrival order
	}
	wg.Wait()
	b, _ := os.ReadFile(log)
	var want strings.Builder
	for i := range 10 {
		fmt.Fprintf(&want, "start %d\nend %d\n", i, i)
	}
	if string(b) != want.String() {
		t.Errorf("commands of one session overlapped or ran out of order:\n%s", b)
	}
	// Different sessions run at the same time.
	start := time.Now()
	for _, id := range []string{"p1", "p2", "p3"} {
		wg.Go(func() { c.sessionExec(t, id, "sleep 0.5") })
	}
	wg.Wait()
	if d := time.Since(start); d > 1400*time.Millisecond {
		t.Errorf("three sessions sleeping 0.5 s took %v: they did not run in parallel", d)
	}
}

func TestSessionExitTerminates(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	c.call(t, "POST", "/sessions", api.CreateSessionRequest{ID: "ex", Cwd: "/"}, nil)
	c.sessionExec(t, "ex", "cd /tmp; export GONE=1")
	e := c.apiError(t, "POST", "/exec", api.ExecRequest{Session: "ex", Command: "echo bye; exit 3"}, http.StatusConflict, api.CodeSessionTerminated)
	if !strings.Contains(e.Message, "exited with code 3") || !strings.Contains(e.Message, "fresh shell") {
		t.Errorf("message %q does not explain", e.Message)
	}
	// The next call gets a fresh shell, started like the session was.
	if res := c.sessionExec(t, "ex", `pwd; echo "[$GONE]"`); res.Stdout != "/\n[]\n" {
		t.Errorf("after exit: %q", res.Stdout)
	}
	// A streaming call ends with an error event, after its output.
	evs := c.streamExec(t, api.ExecRequest{Session: "ex", Command: "echo last words; exit"})
	out, _, _ := outputOf(t, evs)
	last := evs[len(evs)-1]
	if out != "last words\n" || last.name != api.EventError || !strings.Contains(last.data, api.CodeSessionTerminated) {
		t.Errorf("stream: out %q last %v", out, last)
	}
}

func TestSessionTimeoutKeepsSession(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	c.sessionExec(t, "default", "export KEPT=yes")
	tests := []struct{ name, command string }{
		{"external command", "sleep 30; echo after"},
		{"builtin loop", "while :; do :; done; echo after"},
		{"ignores SIGINT", "trap '' INT; sleep 30; echo after"},
		{"loop of functions", "f() { sleep 30; }; for i in 1 2 3; do f; done; echo after"},
		{"loop in functions", "f() { while :; do :; done; }; for i in 1 2 3; do f; done; echo after"},
		{"command substitution", "x=$(while :; do :; done); echo after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			// The job started first is part of the command's tree too.
			res := c.exec(t, api.ExecRequest{Session: "default", Command: "sleep 300 & echo $!; " + tt.command, TimeoutMs: 300})
			if !res.TimedOut || res.ExitCode != api.ExitCodeTimedOut {
				t.Fatalf("got %+v, want timed out", res)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v", d)
			}
			if strings.Contains(res.Stdout, "after") {
				t.Errorf("the rest of the command ran after the timeout: %q", res.Stdout)
			}
			job := firstLineInt(t, res.Stdout)
			t.Cleanup(func() { syscall.Kill(job, syscall.SIGKILL) })
			if !eventually(2*time.Second, func() bool { return syscall.Kill(job, 0) != nil }) {
				t.Errorf("the timed-out command's job %d survived", job)
			}
			// The shell survived with its state.
			if res := c.sessionExec(t, "default", `echo "$KEPT"; echo next`); res.Stdout != "yes\nnext\n" || res.Stderr != "" {
				t.Errorf("session after timeout: %+v", res)
			}
		})
	}
}

func TestSessionDeleteKillsOnlyItsProcesses(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	c.call(t, "POST", "/sessions", api.CreateSessionRequest{ID: "doomed"}, nil)
	c.call(t, "POST", "/sessions", api.CreateSessionRequest{ID: "other"}, nil)
	// A job, and a daemon that left the shell's process group and session.
	res := c.sessionExec(t, "doomed", "sleep 300 & echo $!; setsid sleep 301 & echo $!")
	doomed := strings.Fields(res.Stdout)
	res = c.sessionExec(t, "other", "sleep 302 & echo $!")
	other := strings.Fields(res.Stdout)
	var pids []int
	for _, s := range append(doomed, other...) {
		pid, _ := strconv.Atoi(s)
		pids = append(pids, pid)
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	}
	if len(pids) != 3 {
		t.Fatalf("pids %v", pids)
	}
	c.call(t, "DELETE", "/sessions/doomed", nil, nil)
	if !eventually(2*time.Second, func() bool { return syscall.Kill(pids[0], 0) != nil && syscall.Kill(pids[1], 0) != nil }) {
		t.Errorf("processes of the deleted session survive: %v", pids[:2])
	}
	if syscall.Kill(pids[2], 0) != nil {
		t.Errorf("process %d of another session was killed", pids[2])
	}
	c.apiError(t, "POST", "/exec", api.ExecRequest{Session: "doomed", Command: "true"}, http.StatusNotFound, api.CodeSessionNotFound)
	c.apiError(t, "DELETE", "/sessions/doomed", nil, http.StatusNotFound, api.CodeSessionNotFound)
}

func TestSessionBadRequests(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	c.call(t, "POST", "/sessions", api.CreateSessionRequest{ID: "dup"}, nil)
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{"duplicate", "POST", "/sessions", api.CreateSessionRequest{ID: "dup"}, 409, api.CodeConflict},
		{"create default", "POST", "/sessions", api.CreateSessionRequest{ID: "default"}, 400, api.CodeInvalidRequest},
		{"bad id", "POST", "/sessions", api.CreateSessionRequest{ID: "a b"}, 400, api.CodeInvalidRequest},
		{"missing cwd", "POST", "/sessions", api.CreateSessionRequest{ID: "x", Cwd: "/no/such"}, 400, api.CodeInvalidRequest},
		{"relative cwd", "POST", "/sessions", api.CreateSessionRequest{ID: "x", Cwd: "tmp"}, 400, api.CodeInvalidRequest},
		{"unknown session", "POST", "/exec", api.ExecRequest{Session: "nope", Command: "true"}, 404, api.CodeSessionNotFound},
		{"bad session id", "POST", "/exec", api.ExecRequest{Session: "../x", Command: "true"}, 400, api.CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { c.apiError(t, tt.method, tt.path, tt.body, tt.status, tt.code) })
	}
	// Deleting the default session resets it.
	c.sessionExec(t, "default", "export RESET=no")
	c.call(t, "DELETE", "/sessions/default", nil, nil)
	if res := c.sessionExec(t, "default", `echo "[$RESET]"`); res.Stdout != "[]\n" {
		t.Errorf("default session not reset: %q", res.Stdout)
	}
}

func TestSessionCancelledCallKillsCommand(t *testing.T) {
	c, cfg := startExecAgent(t, Config{})
	pidFile := filepath.Join(cfg.DefaultCwd, "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := c.post(ctx, "/exec", []byte(fmt.Sprintf(`{"session":"default","command":"sleep 60 & echo $! > %s; wait"}`, pidFile)))
		if err == nil {
			resp.Body.Close()
		}
	}()
	var pid int
	if !eventually(5*time.Second, func() bool {
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	}) {
		t.Fatal("command did not start")
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	cancel()
	<-done
	if !eventually(3*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }) {
		t.Errorf("command of the cancelled call survives")
	}
	if res := c.sessionExec(t, "default", "echo alive"); res.Stdout != "alive\n" {
		t.Errorf("session after cancel: %+v", res)
	}
}
