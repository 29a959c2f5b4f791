package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

func (c *testClient) startProc(tb testing.TB, req api.StartProcessRequest) api.Process {
	tb.Helper()
	var p api.Process
	c.call(tb, "POST", "/processes", req, &p)
	tb.Cleanup(func() { c.do(tb, "DELETE", "/processes/"+p.ID+"?signal=KILL", nil) })
	return p
}

func (c *testClient) getProc(tb testing.TB, ref string) api.Process {
	tb.Helper()
	var p api.Process
	c.call(tb, "GET", "/processes/"+ref, nil, &p)
	return p
}

func (c *testClient) waitExit(tb testing.TB, ref string) api.Process {
	tb.Helper()
	var res api.WaitResult
	c.call(tb, "POST", "/processes/"+ref+"/wait", api.WaitRequest{Exit: true, TimeoutMs: 10_000}, &res)
	return res.Process
}

func TestProcessLifecycle(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	p := c.startProc(t, api.StartProcessRequest{ID: "web", Command: "echo started; echo oops >&2; sleep 0.2; exit 3", Env: map[string]string{"X": "1"}})
	if p.ID != "web" || p.Pid <= 0 || p.Status != api.ProcessRunning || p.StartedAt.IsZero() || p.ExitCode != nil {
		t.Fatalf("started %+v", p)
	}
	// By id or by pid.
	if got := c.getProc(t, strconv.Itoa(p.Pid)); got.ID != "web" {
		t.Errorf("by pid: %+v", got)
	}
	end := c.waitExit(t, "web")
	if end.Status != api.ProcessFailed || end.ExitCode == nil || *end.ExitCode != 3 || end.EndedAt == nil {
		t.Errorf("ended %+v", end)
	}
	var logs api.ProcessLogs
	c.call(t, "GET", "/processes/web/logs", nil, &logs)
	if logs.Stdout != "started\n" || logs.Stderr != "oops\n" {
		t.Errorf("logs %+v", logs)
	}
	ok := c.startProc(t, api.StartProcessRequest{Command: "pwd; echo $X", Cwd: "/", Env: map[string]string{"X": "y"}})
	if !strings.HasPrefix(ok.ID, "proc-") {
		t.Errorf("generated id %q", ok.ID)
	}
	if end := c.waitExit(t, ok.ID); end.Status != api.ProcessCompleted || *end.ExitCode != 0 {
		t.Errorf("ended %+v", end)
	}
	c.call(t, "GET", "/processes/"+ok.ID+"/logs", nil, &logs)
	if logs.Stdout != "/\ny\n" {
		t.Errorf("cwd/env: %q", logs.Stdout)
	}
	var list api.ProcessList
	c.call(t, "GET", "/processes", nil, &list)
	if len(list.Processes) != 2 || list.Processes[0].ID != "web" {
		t.Errorf("list %+v", list)
	}
	// An id in use by a running process is a conflict; an ended one is
	// replaced.
	c.startProc(t, api.StartProcessRequest{ID: "dup", Command: "sleep 30"})
	c.apiError(t, "POST", "/processes", api.StartProcessRequest{ID: "dup", Command: "true"}, http.StatusConflict, api.CodeConflict)
	c.startProc(t, api.StartProcessRequest{ID: "web", Command: "true"})

	c.apiError(t, "GET", "/processes/nope", nil, 404, api.CodeProcessNotFound)
	c.apiError(t, "POST", "/processes", api.StartProcessRequest{Command: ""}, 400, api.CodeInvalidRequest)
	c.apiError(t, "POST", "/processes", api.StartProcessRequest{Command: "true", ID: "123"}, 400, api.CodeInvalidRequest)
	c.apiError(t, "POST", "/processes", api.StartProcessRequest{Command: "true", Session: "nope"}, 404, api.CodeSessionNotFound)
	c.apiError(t, "DELETE", "/processes/dup?signal=BOGUS", nil, 400, api.CodeInvalidRequest)
}

func TestProcessInSession(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	c.call(t, "POST", "/sessions", api.CreateSessionRequest{ID: "dev"}, nil)
	c.sessionExec(t, "dev", "cd /tmp; export MODE=dev")
	p := c.startProc(t, api.StartProcessRequest{Session: "dev", Command: `pwd; echo "$MODE"; sleep 300`})
	if p.Cwd != "/tmp" || p.Session != "dev" {
		t.Errorf("process %+v", p)
	}
	var res api.WaitResult
	c.call(t, "POST", "/processes/"+p.ID+"/wait", api.WaitRequest{Log: "^dev$", TimeoutMs: 5000}, &res)
	// Deleting the session kills its processes.
	c.call(t, "DELETE", "/sessions/dev", nil, nil)
	if end := c.waitExit(t, p.ID); end.Status != api.ProcessKilled {
		t.Errorf("after session delete: %+v", end)
	}
}

// TestProcessKillTree starts a three-level tree whose middle detaches into
// a session of its own and whose bottom ignores SIGTERM; killing the
// process must leave none of it.
func TestProcessKillTree(t *testing.T) {
	c, cfg := startExecAgent(t, Config{ExecConfig: ExecConfig{KillGrace: 300 * time.Millisecond}})
	pids := filepath.Join(cfg.DefaultCwd, "pids")
	script := fmt.Sprintf(`echo $$ >> %[1]s
setsid bash -c 'echo $$ >> %[1]s; bash -c "trap \"\" TERM; echo \$\$ >> %[1]s; while :; do sleep 1; done" & wait' &
wait`, pids)
	p := c.startProc(t, api.StartProcessRequest{ID: "tree", Command: script})
	var tree []int
	if !eventually(5*time.Second, func() bool {
		b, _ := os.ReadFile(pids)
		tree = nil
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			tree = append(tree, pid)
		}
		return len(tree) == 3
	}) {
		t.Fatalf("tree did not start: %v", tree)
	}
	for _, pid := range tree {
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	}
	start := time.Now()
	var killed api.Process
	c.call(t, "DELETE", "/processes/tree", nil, &killed)
	if killed.Status != api.ProcessKilled || killed.ExitCode == nil {
		t.Errorf("killed %+v", killed)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("kill took %v", d)
	}
	alive := func() (out []int) {
		for _, pid := range tree {
			if st, _ := statOf(pid); st != 0 && st != 'Z' {
				out = append(out, pid)
			}
		}
		return out
	}
	if !eventually(time.Second, func() bool { return len(alive()) == 0 }) {
		t.Errorf("processes of the tree survived the kill: %v (tree %v, leader %d)", alive(), tree, p.Pid)
	}
}

func TestProcessKillAll(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	for i := range 3 {
		c.startProc(t, api.StartProcessRequest{ID: fmt.Sprintf("k%d", i), Command: "sleep 300"})
	}
	c.startProc(t, api.StartProcessRequest{ID: "done", Command: "true"})
	c.waitExit(t, "done")
	var res api.KillAllResult
	c.call(t, "DELETE", "/processes?signal=KILL", nil, &res)
	if res.Killed != 3 {
		t.Errorf("killed %d, want 3", res.Killed)
	}
	for i := range 3 {
		if p := c.getProc(t, fmt.Sprintf("k%d", i)); p.Status != api.ProcessKilled || *p.ExitCode != 137 {
			t.Errorf("k%d: %+v", i, p)
		}
	}
	if p := c.getProc(t, "done"); p.Status != api.ProcessCompleted {
		t.Errorf("done: %+v", p)
	}
}

func TestProcessLogsFollow(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	c.startProc(t, api.StartProcessRequest{ID: "talk", Command: "echo one; sleep 0.05; echo two >&2; sleep 0.3; echo three; exit 2"})
	time.Sleep(100 * time.Millisecond) // "one" and "two" are in the past
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp := c.openStream(t, ctx, "GET", "/processes/talk/logs?follow=1", nil)
	evs, err := readXEvents(resp.Body, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, merged := outputOf(t, evs)
	if strings.Join(merged, "") != "o:one\ne:two\no:three\n" {
		t.Errorf("followed %q", merged)
	}
	last := evs[len(evs)-1]
	if exit := decodeAs[api.ProcessExitEvent](t, last.data); last.name != api.EventExit || exit.ExitCode != 2 || exit.Status != api.ProcessFailed {
		t.Errorf("last event %v", last)
	}
	// Following an ended process replays and ends at once.
	resp = c.openStream(t, ctx, "GET", "/processes/talk/logs?follow=1", nil)
	if evs, _ := readXEvents(resp.Body, nil); len(evs) != 4 || evs[3].name != api.EventExit {
		t.Errorf("replay %v", evs)
	}
}

func TestProcessLogsBounded(t *testing.T) {
	c, _ := startExecAgent(t, Config{ExecConfig: ExecConfig{ProcessLogCap: 1000}})
	c.startProc(t, api.StartProcessRequest{ID: "loud", Command: "for i in $(seq 1000); do echo line-$i; done"})
	c.waitExit(t, "loud")
	var logs api.ProcessLogs
	c.call(t, "GET", "/processes/loud/logs", nil, &logs)
	if len(logs.Stdout) != 1000 || !strings.HasSuffix(logs.Stdout, "line-1000\n") || logs.StdoutDroppedBytes == 0 {
		t.Errorf("kept %d bytes, dropped %d, tail %q", len(logs.Stdout), logs.StdoutDroppedBytes, logs.Stdout[max(0, len(logs.Stdout)-20):])
	}
	total := 0
	for i := 1; i <= 1000; i++ {
		total += len(fmt.Sprintf("line-%d\n", i))
	}
	if int(logs.StdoutDroppedBytes)+len(logs.Stdout) != total {
		t.Errorf("dropped %d + kept %d != %d", logs.StdoutDroppedBytes, len(logs.Stdout), total)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp := c.openStream(t, ctx, "GET", "/processes/loud/logs?follow=1", nil)
	evs, _ := readXEvents(resp.Body, nil)
	if len(evs) < 2 || evs[0].name != api.EventDropped {
		t.Fatalf("follow of a trimmed log: %v", evs[:min(3, len(evs))])
	}
	if d := decodeAs[api.DroppedEvent](t, evs[0].data); d.Stream != "stdout" || d.Bytes != logs.StdoutDroppedBytes {
		t.Errorf("dropped marker %+v", d)
	}
}

func TestWait(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	python := "python3"
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs python3 for an HTTP server")
	}
	server := fmt.Sprintf(`sleep 0.3; echo "booting"; exec %s -u -c '
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ready" else 404); self.end_headers()
    def log_message(self, *a): pass
print("listening", flush=True)
socketserver.TCPServer(("127.0.0.1", %d), H).serve_forever()'`, python, free)
	c.startProc(t, api.StartProcessRequest{ID: "srv", Command: server})
	tests := []struct {
		name string
		req  api.WaitRequest
		cond string
	}{
		{"log", api.WaitRequest{Log: "^listen", TimeoutMs: 10_000}, "log"},
		{"port", api.WaitRequest{Port: free, TimeoutMs: 10_000}, "port"},
		{"http", api.WaitRequest{Port: free, HTTPPath: "/ready", TimeoutMs: 10_000}, "http"},
		{"http status range", api.WaitRequest{Port: free, HTTPPath: "/missing", StatusMin: 404, StatusMax: 404, TimeoutMs: 10_000}, "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res api.WaitResult
			c.call(t, "POST", "/processes/srv/wait", tt.req, &res)
			if res.Condition != tt.cond || res.Process.Status != api.ProcessRunning {
				t.Errorf("result %+v", res)
			}
		})
	}
	// Time runs out: WAIT_TIMEOUT, the process keeps running.
	e := c.apiError(t, "POST", "/processes/srv/wait", api.WaitRequest{Log: "never", TimeoutMs: 200}, http.StatusRequestTimeout, api.CodeWaitTimeout)
	if !strings.Contains(e.Message, "still running") {
		t.Errorf("timeout message %q", e.Message)
	}
	e = c.apiError(t, "POST", "/processes/srv/wait", api.WaitRequest{Port: free, HTTPPath: "/missing", TimeoutMs: 200}, http.StatusRequestTimeout, api.CodeWaitTimeout)
	// The process exits first: PROCESS_EXITED, promptly.
	c.startProc(t, api.StartProcessRequest{ID: "quitter", Command: "echo bye; sleep 0.2; exit 5"})
	start := time.Now()
	for _, req := range []api.WaitRequest{{Log: "never"}, {Port: free + 1}} {
		e = c.apiError(t, "POST", "/processes/quitter/wait", req, http.StatusConflict, api.CodeProcessExited)
		if !strings.Contains(e.Message, "exit code 5") {
			t.Errorf("exited message %q", e.Message)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("waits on an exiting process took %v", d)
	}
	var res api.WaitResult
	c.call(t, "POST", "/processes/quitter/wait", api.WaitRequest{Exit: true}, &res)
	if *res.Process.ExitCode != 5 {
		t.Errorf("exit wait %+v", res)
	}
	for name, req := range map[string]api.WaitRequest{
		"none":       {},
		"two":        {Log: "x", Exit: true},
		"bad regexp": {Log: "("},
		"bad port":   {Port: 70000},
		"path only":  {HTTPPath: "/"},
	} {
		t.Run(name, func(t *testing.T) { c.apiError(t, "POST", "/processes/srv/wait", req, 400, api.CodeInvalidRequest) })
	}
}

func TestProcessKillAllMany(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	const n = 200
	for i := range n {
		c.startProc(t, api.StartProcessRequest{ID: fmt.Sprintf("m%d", i), Command: "sleep 300"})
	}
	start := time.Now()
	var res api.KillAllResult
	c.call(t, "DELETE", "/processes", nil, &res)
	if res.Killed != n {
		t.Errorf("killed %d, want %d", res.Killed, n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("killing %d processes took %v", n, d)
	}
	var list api.ProcessList
	c.call(t, "GET", "/processes", nil, &list)
	for _, p := range list.Processes {
		if p.Status != api.ProcessKilled {
			t.Fatalf("after kill all: %+v", p)
		}
	}
}
