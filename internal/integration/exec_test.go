package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

// agentStart is the start time of the sandbox's agent: it changes when the
// sandbox is stopped and started again.
func agentStart(t *testing.T, d *Daemon, id string) string {
	return mustExec(t, d, id, "cut -d' ' -f22 /proc/1/stat").Stdout
}

// collect runs a stream to its end.
func collect(t *testing.T, seq func(func(client.ExecEvent, error) bool)) (evs []client.ExecEvent, err error) {
	t.Helper()
	for ev, e := range seq {
		if e != nil && ev.Type == "" {
			return evs, e
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

func streamOutput(evs []client.ExecEvent) (stdout, stderr string) {
	for _, ev := range evs {
		switch ev.Type {
		case api.EventStdout:
			stdout += string(ev.Data)
		case api.EventStderr:
			stderr += string(ev.Data)
		}
	}
	return stdout, stderr
}

func TestSessionsE2E(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("sessions")
	a, err := sb.CreateSession(ctx, &api.CreateSessionRequest{ID: "a", Env: map[string]string{"WHO": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := sb.CreateSession(ctx, &api.CreateSessionRequest{ID: "b", Cwd: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	exec := func(s *client.Session, cmd string) *api.ExecResult {
		t.Helper()
		res, err := s.Exec(ctx, cmd)
		if err != nil {
			t.Fatalf("session %s: %q: %v", s.ID, cmd, err)
		}
		return res
	}
	exec(a, "cd /etc; export ONLY_A=1; fa() { echo from-fa; }; alias la='echo aliased'")
	if res := exec(a, `echo "$WHO $PWD $ONLY_A"; fa; la`); res.Stdout != "a /etc 1\nfrom-fa\naliased\n" {
		t.Errorf("session a: %q %q", res.Stdout, res.Stderr)
	}
	if res := exec(b, `echo "[$WHO] $PWD [$ONLY_A]"; type fa >/dev/null 2>&1 || echo no-fa`); res.Stdout != "[] /tmp []\nno-fa\n" {
		t.Errorf("session b sees a's state: %q", res.Stdout)
	}
	// Per-call cwd and env do not leak into the session.
	res, err := sb.Exec(ctx, `pwd; echo $WHO`, client.WithSession("a"), client.WithCwd("/"), client.WithEnv(map[string]string{"WHO": "call"}))
	if err != nil || res.Stdout != "/\ncall\n" {
		t.Fatalf("per-call: %+v %v", res, err)
	}
	if res := exec(a, `pwd; echo $WHO`); res.Stdout != "/etc\na\n" {
		t.Errorf("per-call cwd/env leaked: %q", res.Stdout)
	}

	// Ordering within a session, parallelism across sessions.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { exec(a, fmt.Sprintf("echo %d >> /tmp/order; sleep 0.02", i)) })
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if res := exec(b, "tr '\\n' ' ' < /tmp/order"); res.Stdout != "0 1 2 3 4 5 6 7 " {
		t.Errorf("order in one session: %q", res.Stdout)
	}
	start := time.Now()
	for _, s := range []*client.Session{a, b, sb.Session(api.DefaultSession)} {
		wg.Go(func() { exec(s, "sleep 1") })
	}
	wg.Wait()
	if el := time.Since(start); el > 2500*time.Millisecond {
		t.Errorf("three sessions sleeping 1 s took %v", el)
	}

	// exit ends the session with SESSION_TERMINATED; the next call gets a
	// fresh shell.
	_, err = a.Exec(ctx, "exit 4")
	if client.ErrorCode(err) != api.CodeSessionTerminated {
		t.Fatalf("exit: %v", err)
	}
	if res := exec(a, `echo "$PWD [$ONLY_A] $WHO"`); res.Stdout != "/workspace [] a\n" {
		t.Errorf("fresh shell: %q", res.Stdout)
	}

	// Deleting a session kills only its processes.
	exec(a, "sleep 1001 & setsid sleep 1002 &")
	exec(b, "sleep 1003 &")
	if err := a.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	left := mustExec(t, d, "sessions", "sleep 0.2; pgrep -x sleep -a | awk '{print $3}' | sort | tr '\\n' ' '").Stdout
	if left != "1003 " {
		t.Errorf("sleeps left after deleting session a: %q, want only b's", left)
	}
	if _, err := a.Exec(ctx, "true"); !errors.Is(err, client.ErrNotFound) || client.ErrorCode(err) != api.CodeSessionNotFound {
		t.Errorf("exec in deleted session: %v", err)
	}
	list, err := sb.Sessions(ctx)
	if err != nil || len(list) != 2 {
		t.Errorf("sessions: %+v %v", list, err)
	}
}

func TestExecStreamE2E(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("streams")
	mustExec(t, d, "streams", "true")
	for _, code := range []int{0, 1, 3, 42, 255} {
		for _, session := range []string{"", api.DefaultSession} {
			cmd := fmt.Sprintf("echo out; echo err >&2; exit %d", code)
			if session != "" {
				cmd = fmt.Sprintf("echo out; echo err >&2; (exit %d)", code)
			}
			evs, err := collect(t, sb.ExecStream(ctx, cmd, client.WithSession(session)))
			if err != nil {
				t.Fatal(err)
			}
			last := evs[len(evs)-1]
			out, errOut := streamOutput(evs)
			if evs[0].Type != api.EventStart || evs[0].Pid <= 0 || last.Type != api.EventComplete || last.ExitCode != code || out != "out\n" || errOut != "err\n" {
				t.Errorf("exit %d session %q: events %+v", code, session, evs)
			}
		}
	}
	// stdout and stderr keep their order; output is live; timeouts kill.
	evs, err := collect(t, sb.ExecStream(ctx, `for i in 1 2 3; do echo o$i; sleep 0.01; echo e$i >&2; sleep 0.01; done`))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, ev := range evs {
		if ev.Type == api.EventStdout || ev.Type == api.EventStderr {
			order = append(order, strings.TrimSpace(string(ev.Data)))
		}
	}
	if strings.Join(order, " ") != "o1 e1 o2 e2 o3 e3" {
		t.Errorf("order %v", order)
	}
	start := time.Now()
	var first time.Duration
	for ev, err := range sb.ExecStream(ctx, "echo now; sleep 1; echo later") {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == api.EventStdout && first == 0 {
			first = time.Since(start)
		}
	}
	if first > 500*time.Millisecond {
		t.Errorf("first output after %v", first)
	}
	evs, _ = collect(t, sb.ExecStream(ctx, "sleep 300 & echo $!; sleep 300", client.WithTimeout(300)))
	if last := evs[len(evs)-1]; !last.TimedOut || last.ExitCode != api.ExitCodeTimedOut {
		t.Errorf("timeout: %+v", last)
	}
	if res := mustExec(t, d, "streams", "pgrep -x sleep || echo none"); res.Stdout != "none\n" {
		t.Errorf("timed-out tree survived: %q", res.Stdout)
	}
	// Binary output arrives intact.
	evs, _ = collect(t, sb.ExecStream(ctx, `printf '\x00\xff\xfe'`))
	if out, _ := streamOutput(evs); out != "\x00\xff\xfe" {
		t.Errorf("binary: %q", out)
	}
}

// TestExecStreamSurvivesIdle holds a stream open on a command that prints
// nothing for many times the sandbox's sleepAfter: the open stream is
// activity, so the sandbox must not idle out under it. The real figure is
// 10 minutes of silence against the default sleepAfter of 10m; here
// sleepAfter is 1s and the reaper looks every 100ms, so 8s of silence is 8
// sleepAfters and 80 reaper passes. Once the stream is closed, the same
// sandbox does idle out, which shows the settings were in force.
func TestExecStreamSurvivesIdle(t *testing.T) {
	d := StartDaemon(t, "--reap-interval", "100ms")
	ctx := ctxT(t)
	sb := d.Client.Sandbox("quiet")
	if _, err := sb.Create(ctx, &api.CreateSandboxRequest{SleepAfter: api.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	before := agentStart(t, d, "quiet")
	evs, err := collect(t, sb.ExecStream(ctx, "sleep 8; echo woke"))
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if out, _ := streamOutput(evs); out != "woke\n" || last.Type != api.EventComplete || last.ExitCode != 0 {
		t.Fatalf("quiet stream: %+v", evs)
	}
	if got, err := sb.Get(ctx); err != nil || got.Status != api.StatusRunning {
		t.Fatalf("after the stream: %+v %v", got, err)
	}
	if after := agentStart(t, d, "quiet"); after != before {
		t.Fatalf("the sandbox was restarted under the stream (agent start %s → %s)", before, after)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := sb.Get(ctx)
		if err == nil && got.Status == api.StatusStopped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox never idled out after the stream: %+v %v", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentKilledMidStream kills the sandbox's agent on the host while a
// command streams: the client must get an error event promptly, never a
// complete event with a made-up exit code, and never hang.
func TestAgentKilledMidStream(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("victim")
	mustExec(t, d, "victim", "true")
	pid := agentHostPid(t, d, "victim")
	var killedAt time.Time
	var evs []client.ExecEvent
	var streamErr error
	for ev, err := range sb.ExecStream(ctx, "echo started; sleep 60; echo never") {
		if ev.Type != "" {
			evs = append(evs, ev)
		}
		if err != nil {
			streamErr = err
			break
		}
		if ev.Type == api.EventStdout && killedAt.IsZero() {
			killedAt = time.Now()
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	if killedAt.IsZero() {
		t.Fatalf("stream ended before output: %+v %v", evs, streamErr)
	}
	if el := time.Since(killedAt); el > 5*time.Second {
		t.Errorf("error came %v after the agent died", el)
	}
	last := evs[len(evs)-1]
	if last.Type != api.EventError || last.Err == nil || last.Err.Code != api.CodeSandboxUnavailable {
		t.Fatalf("last event %+v (err %v), want an error event", last, streamErr)
	}
	for _, ev := range evs {
		if ev.Type == api.EventComplete {
			t.Errorf("fabricated complete event %+v", ev)
		}
	}
	// Requests after it get a working sandbox again, once the daemon has
	// noticed the death (a request may still find the dead socket).
	waitFor(t, 20*time.Second, func() bool {
		res, err := sb.Exec(ctx, "echo back")
		return err == nil && res.Stdout == "back\n"
	})
}

func TestProcessesE2E(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("procs")
	p, err := sb.StartProcess(ctx, api.StartProcessRequest{ID: "web", Command: `echo booting; exec python3 -u -m http.server 8000 --bind 127.0.0.1`})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != api.ProcessRunning || p.Pid <= 0 {
		t.Fatalf("started %+v", p)
	}
	if _, err := sb.WaitForPort(ctx, "web", 8000, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if r, err := sb.WaitProcess(ctx, "web", api.WaitRequest{Port: 8000, HTTPPath: "/", TimeoutMs: 5000}); err != nil || r.Status != 200 {
		t.Fatalf("http wait: %+v %v", r, err)
	}
	if r, err := sb.WaitForLog(ctx, "web", "^booting$", 5*time.Second); err != nil || r.Line != "booting" {
		t.Fatalf("log wait: %+v %v", r, err)
	}
	_, err = sb.WaitForLog(ctx, "web", "never", 300*time.Millisecond)
	if client.ErrorCode(err) != api.CodeWaitTimeout {
		t.Errorf("wait timeout: %v", err)
	}

	// Records and logs live in the agent: they survive a daemon restart.
	d.Restart()
	sb = d.Client.Sandbox("procs")
	got, err := sb.Process(ctx, "web")
	if err != nil || got.Status != api.ProcessRunning || got.Pid != p.Pid {
		t.Fatalf("after restart: %+v %v", got, err)
	}
	if l, err := sb.ProcessLogs(ctx, "web"); err != nil || !strings.HasPrefix(l.Stdout, "booting\n") {
		t.Fatalf("logs after restart: %+v %v", l, err)
	}

	// Following a log replays it, then goes live, then ends with exit.
	if _, err := sb.StartProcess(ctx, api.StartProcessRequest{ID: "talk", Command: "echo one; sleep 0.5; echo two >&2; exit 3"}); err != nil {
		t.Fatal(err)
	}
	evs, err := collect(t, sb.FollowProcessLogs(ctx, "talk"))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut := streamOutput(evs)
	if last := evs[len(evs)-1]; out != "one\n" || errOut != "two\n" || last.Type != api.EventExit || last.ExitCode != 3 || last.Status != api.ProcessFailed {
		t.Errorf("follow: %+v", evs)
	}

	// Killing a three-level tree leaves nothing, even the part that
	// detached into its own session and ignores SIGTERM.
	tree := `setsid bash -c 'bash -c "trap \"\" TERM; sleep 1004" & sleep 1005' & sleep 1006`
	if _, err := sb.StartProcess(ctx, api.StartProcessRequest{ID: "tree", Command: tree}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		return mustExec(t, d, "procs", "pgrep -x sleep | wc -l").Stdout == "3\n"
	})
	killed, err := sb.KillProcess(ctx, "tree", client.KillOptions{Grace: 500 * time.Millisecond})
	if err != nil || killed.Status != api.ProcessKilled {
		t.Fatalf("kill: %+v %v", killed, err)
	}
	if res := mustExec(t, d, "procs", "pgrep -f 'sleep 100[456]' || echo none"); res.Stdout != "none\n" {
		t.Errorf("tree survived the kill: %q", res.Stdout)
	}

	n, err := sb.KillAllProcesses(ctx, client.KillOptions{})
	if err != nil || n != 1 {
		t.Errorf("kill all: %d %v", n, err)
	}
	list, err := sb.Processes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list {
		if p.Running() {
			t.Errorf("still running after kill all: %+v", p)
		}
	}
	if _, err := sb.Process(ctx, "nope"); client.ErrorCode(err) != api.CodeProcessNotFound {
		t.Errorf("unknown process: %v", err)
	}
}

func TestPatchEnvE2E(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("envs")
	mustExec(t, d, "envs", "true")
	if _, err := sb.Session(api.DefaultSession).Exec(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	v := "on"
	if _, err := sb.SetEnv(ctx, api.EnvPatch{"FEATURE": &v, "HOME": nil}); err != nil {
		t.Fatal(err)
	}
	want := "on [unset]\n"
	for _, s := range []string{"", api.DefaultSession} {
		res, err := sb.Exec(ctx, `echo "$FEATURE [${HOME-unset}]"`, client.WithSession(s))
		if err != nil || res.Stdout != want {
			t.Errorf("session %q: %+v %v", s, res, err)
		}
	}
	if _, err := sb.SetEnv(ctx, api.EnvPatch{"1BAD": &v}); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("bad name: %v", err)
	}
}

func TestPTYE2E(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("term")
	term, err := sb.OpenTerminal(ctx, client.TerminalOptions{Cols: 90, Rows: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	var mu sync.Mutex
	var out strings.Builder
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := term.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	seen := func(s string) bool { mu.Lock(); defer mu.Unlock(); return strings.Contains(out.String(), s) }
	term.Write([]byte("stty size\n"))
	waitFor(t, 10*time.Second, func() bool { return seen("20 90") })
	if err := term.Resize(120, 33); err != nil {
		t.Fatal(err)
	}
	term.Write([]byte("stty size\n"))
	waitFor(t, 10*time.Second, func() bool { return seen("33 120") })

	// A second client attaches and sees the recent output.
	other, err := sb.OpenTerminal(ctx, client.TerminalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	n, _ := other.Read(buf)
	if !strings.Contains(string(buf[:n]), "33 120") {
		t.Errorf("no replay for the second client: %q", buf[:n])
	}
	other.Close()

	term.Write([]byte("exit 5\n"))
	waitFor(t, 10*time.Second, func() bool { _, ok := term.ExitCode(); return ok })
	if code, _ := term.ExitCode(); code != 5 {
		t.Errorf("exit code %d", code)
	}

	// Not a WebSocket: 426.
	req, _ := http.NewRequest("GET", d.URL+"/v1/sandboxes/term/pty", nil)
	req.Header.Set("Authorization", "Bearer "+d.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || !strings.Contains(string(b), api.CodeUpgradeRequired) {
		t.Errorf("plain GET: %d %s", resp.StatusCode, b)
	}

	// sbx shell passes the exit code through.
	_, errOut, code := d.CLI(strings.NewReader("echo from-shell; exit 7\n"), "shell", "term")
	if code != 7 {
		t.Errorf("sbx shell exit code %d (%s)", code, errOut)
	}
}

func TestExecCLI(t *testing.T) {
	d := StartDaemon(t)
	cli := func(stdin string, args ...string) (string, int) {
		t.Helper()
		out, errOut, code := d.CLI(strings.NewReader(stdin), args...)
		if code != 0 && !strings.HasPrefix(args[0], "exec") {
			t.Logf("sbx %v: %s", args, errOut)
		}
		return out, code
	}
	// The README's first example: an argument vector keeps its words.
	if out, code := cli("", "exec", "cli", "--", "python3", "-c", "print(2+2)"); out != "4\n" || code != 0 {
		t.Errorf("sbx exec -- python3 -c 'print(2+2)': %q, exit %d", out, code)
	}
	if out, code := cli("", "exec", "cli", "--", "bash", "-c", `echo "$0" "it's"; exit 3`, "zero"); out != "zero it's\n" || code != 3 {
		t.Errorf("sbx exec -- bash -c SCRIPT zero: %q, exit %d; want the words kept and the exit code passed on", out, code)
	}
	if _, code := cli("", "exec", "cli", "--session", "default", "--", "cd /tmp; X=1"); code != 0 {
		t.Fatalf("exec --session: %d", code)
	}
	if out, _ := cli("", "exec", "cli", "-s", "default", "--", "echo $PWD $X"); out != "/tmp 1\n" {
		t.Errorf("session state via CLI: %q", out)
	}
	if _, code := cli("", "sessions", "create", "cli", "work", "--cwd", "/etc"); code != 0 {
		t.Fatal("sessions create")
	}
	if out, _ := cli("", "sessions", "cli"); !strings.Contains(out, "work") || !strings.Contains(out, "/etc") {
		t.Errorf("sessions: %q", out)
	}
	if out, code := cli("", "start", "cli", "--name", "srv", "--", "echo ready; sleep 300"); code != 0 || !strings.HasPrefix(out, "srv (pid ") {
		t.Errorf("start: %q", out)
	}
	if out, code := cli("", "wait", "cli", "srv", "--log", "^ready"); code != 0 || out != "ready\n" {
		t.Errorf("wait: %q %d", out, code)
	}
	if out, _ := cli("", "ps", "cli"); !strings.Contains(out, "srv") || !strings.Contains(out, "running") {
		t.Errorf("ps: %q", out)
	}
	if out, _ := cli("", "logs", "cli", "srv"); out != "ready\n" {
		t.Errorf("logs: %q", out)
	}
	if _, code := cli("", "kill", "cli", "srv"); code != 0 {
		t.Errorf("kill: %d", code)
	}
	if _, code := cli("", "start", "cli", "--name", "short", "--", "echo bye; exit 3"); code != 0 {
		t.Fatal("start short")
	}
	if out, code := cli("", "logs", "cli", "short", "-f"); out != "bye\n" || code != 3 {
		t.Errorf("logs -f: %q %d", out, code)
	}
	if _, code := cli("", "env", "cli", "GREETING=hello"); code != 0 {
		t.Fatal("env")
	}
	if out, _ := cli("", "exec", "cli", "--", "echo $GREETING"); out != "hello\n" {
		t.Errorf("env via CLI: %q", out)
	}
	if _, code := cli("", "sessions", "rm", "cli", "work"); code != 0 {
		t.Error("sessions rm")
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %v", d)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
