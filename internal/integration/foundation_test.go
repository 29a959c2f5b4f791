package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

func TestMain(m *testing.M) {
	code := m.Run()
	CleanupBinaries()
	os.Exit(code)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// mustExec runs command in sandbox id and fails the test on API errors.
func mustExec(t *testing.T, d *Daemon, id, command string, opts ...client.ExecOption) *api.ExecResult {
	t.Helper()
	res, err := d.Client.Sandbox(id).Exec(ctxT(t), command, opts...)
	if err != nil {
		t.Fatalf("exec %q in %s: %v", command, id, err)
	}
	return res
}

func TestExecBasics(t *testing.T) {
	d := StartDaemon(t)
	stdin := "from stdin\n"
	tests := []struct {
		name     string
		req      api.ExecRequest
		stdout   string
		stderr   string
		exitCode int
		timedOut bool
	}{
		{"python", api.ExecRequest{Command: `python3 -c "print(2 + 2)"`}, "4\n", "", 0, false},
		{"exit code", api.ExecRequest{Command: "echo out; echo err >&2; exit 3"}, "out\n", "err\n", 3, false},
		{"default cwd", api.ExecRequest{Command: "pwd"}, "/workspace\n", "", 0, false},
		{"cwd", api.ExecRequest{Command: "pwd", Cwd: "/tmp"}, "/tmp\n", "", 0, false},
		{"env", api.ExecRequest{Command: `echo "$GREETING"`, Env: map[string]string{"GREETING": "hi there"}}, "hi there\n", "", 0, false},
		{"stdin", api.ExecRequest{Command: "cat", Stdin: &stdin}, "from stdin\n", "", 0, false},
		{"no stdin is EOF", api.ExecRequest{Command: "cat; echo done"}, "done\n", "", 0, false},
		{"killed by signal", api.ExecRequest{Command: "kill -9 $$"}, "", "", 137, false},
		{"timeout", api.ExecRequest{Command: "echo started; sleep 30", TimeoutMs: 300}, "started\n", "", api.ExitCodeTimedOut, true},
		{"node", api.ExecRequest{Command: `node -e 'console.log(6*7)'`}, "42\n", "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Now()
			res, err := d.Client.Sandbox("basics").ExecRequest(ctxT(t), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Stdout != tc.stdout || res.Stderr != tc.stderr || res.ExitCode != tc.exitCode || res.TimedOut != tc.timedOut {
				t.Errorf("got stdout %q stderr %q exit %d timedOut %v; want %q %q %d %v",
					res.Stdout, res.Stderr, res.ExitCode, res.TimedOut, tc.stdout, tc.stderr, tc.exitCode, tc.timedOut)
			}
			if res.Success != (tc.exitCode == 0 && !tc.timedOut) {
				t.Errorf("success = %v for exit %d", res.Success, res.ExitCode)
			}
			if tc.timedOut && time.Since(t0) > 10*time.Second {
				t.Errorf("timed-out exec took %v", time.Since(t0))
			}
		})
	}
	// The timed-out command's process group is gone, not left running.
	res := mustExec(t, d, "basics", "pgrep -f 'sleep [3]0' || echo none")
	if strings.TrimSpace(res.Stdout) != "none" {
		t.Errorf("timed-out sleep still running: %q", res.Stdout)
	}
}

func TestCurlQuickStart(t *testing.T) {
	// The README's first request, byte for byte.
	d := StartDaemon(t)
	req, _ := http.NewRequest("POST", d.URL+"/v1/sandboxes/my-first-sandbox/exec",
		strings.NewReader(`{"command":"python3 -c \"print(2 + 2)\""}`))
	req.Header.Set("Authorization", "Bearer "+d.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || got["stdout"] != "4\n" || got["stderr"] != "" || got["exitCode"] != 0.0 || got["success"] != true {
		t.Fatalf("status %d body %v", resp.StatusCode, got)
	}
}

func TestCLI(t *testing.T) {
	d := StartDaemon(t)
	out, errOut, code := d.CLI(nil, "exec", "cli-box", "--", "python3", "-c", "print(2+2)")
	if out != "4\n" || code != 0 {
		t.Fatalf("sbx exec: out %q err %q code %d", out, errOut, code)
	}
	_, _, code = d.CLI(nil, "exec", "cli-box", "--", "exit 7")
	if code != 7 {
		t.Errorf("exit code passed through as %d, want 7", code)
	}
	out, _, code = d.CLI(strings.NewReader("piped"), "exec", "cli-box", "-i", "--", "cat")
	if out != "piped" || code != 0 {
		t.Errorf("stdin: %q %d", out, code)
	}
	out, errOut, code = d.CLI(nil, "ls", "--json")
	var list []api.Sandbox
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != "cli-box" || list[0].Status != "running" {
		t.Errorf("ls --json: %q %q %d", out, errOut, code)
	}
	out, _, code = d.CLI(nil, "status", "cli-box")
	if code != 0 || !strings.Contains(out, "running") {
		t.Errorf("status: %q %d", out, code)
	}
	_, errOut, code = d.CLI(nil, "status", "absent-box")
	if code != 1 || !strings.Contains(errOut, "SANDBOX_NOT_FOUND") {
		t.Errorf("status of absent: %q %d", errOut, code)
	}
	if _, errOut, code = d.CLI(nil, "stop", "cli-box"); code != 0 {
		t.Errorf("stop: %s", errOut)
	}
	if _, errOut, code = d.CLI(nil, "rm", "cli-box"); code != 0 {
		t.Errorf("rm: %s", errOut)
	}
	out, _, _ = d.CLI(nil, "ls")
	if strings.Contains(out, "cli-box") {
		t.Errorf("removed sandbox still listed: %q", out)
	}
	if _, errOut, code = d.CLI(nil, "create", "netless", "--network", "none"); code != 0 {
		t.Fatalf("create --network none: %s", errOut)
	}
	if out, _, _ = d.CLI(nil, "exec", "netless", "--", "ls /sys/class/net"); out != "lo\n" {
		t.Errorf("--network none sandbox has interfaces %q", out)
	}
	if _, errOut, code = d.CLI(nil, "create", "badnet", "--allow", "not a cidr!"); code == 0 || !strings.Contains(errOut, "INVALID_REQUEST") {
		t.Errorf("bad --allow accepted: %d %s", code, errOut)
	}
	out, _, code = d.CLI(nil, "exec", "--help")
	if code != 0 || !strings.Contains(out, "Example") {
		t.Errorf("--help does not teach: %q", out)
	}
}

func TestIsolation(t *testing.T) {
	d := StartDaemon(t)
	marker := filepath.Join("/tmp", fmt.Sprintf("sbx-host-marker-%d", os.Getpid()))
	if err := os.WriteFile(marker, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(marker) })

	checks := []struct {
		name, command, want string
	}{
		{"hostname is the id", "hostname", "iso-a\n"},
		{"own network: eth0 and lo only", "ls /sys/class/net", "eth0\nlo\n"},
		{"no host processes", "ps -e -o comm= | grep -v -e '^ps$' -e '^bash$' -e '^grep$' -e '^sort$' | sort -u", "sbx-agent\n"},
		{"agent is pid 1", "cat /proc/1/comm", "sbx-agent\n"},
		{"no host files", "test -e " + marker + " && echo visible || echo absent", "absent\n"},
		{"cannot mount", "mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo refused", "refused\n"},
		{"cannot write /proc/sys", "echo 1 > /proc/sys/kernel/panic 2>/dev/null && echo wrote || echo refused", "refused\n"},
		{"cannot load modules", `python3 -c 'import ctypes,os; l=ctypes.CDLL(None,use_errno=True); r=l.syscall(175,0,0,b""); print("refused" if r!=0 else "loaded")'`, "refused\n"},
		{"no new user namespaces", "unshare -U true 2>/dev/null && echo created || echo refused", "refused\n"},
		{"no host disks", "ls /dev | grep -E '^(vd|sd|nvme|xvd)' || echo none", "none\n"},
		{"kcore masked", "head -c 1 /proc/kcore 2>/dev/null | wc -c", "0\n"},
		{"sys read-only", "touch /sys/x 2>/dev/null && echo wrote || echo refused", "refused\n"},
		{"no keyrings", `python3 -c 'import ctypes; l=ctypes.CDLL(None,use_errno=True); print("refused" if l.syscall(250,0,0,0,0)<0 else "allowed")'`, "refused\n"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			res := mustExec(t, d, "iso-a", c.command)
			if res.Stdout != c.want {
				t.Errorf("%s: got %q (stderr %q), want %q", c.command, res.Stdout, res.Stderr, c.want)
			}
		})
	}
	t.Run("network none is loopback only", func(t *testing.T) {
		if _, err := d.Client.Sandbox("iso-none").Create(ctxT(t), &api.CreateSandboxRequest{Network: &api.Network{Mode: api.NetworkNone}}); err != nil {
			t.Fatal(err)
		}
		if res := mustExec(t, d, "iso-none", "ls /sys/class/net"); res.Stdout != "lo\n" {
			t.Errorf("interfaces: %q", res.Stdout)
		}
	})
	t.Run("writes invisible to other sandboxes", func(t *testing.T) {
		mustExec(t, d, "iso-a", "echo secret > /workspace/a.txt && echo x > /etc/written-by-a")
		res := mustExec(t, d, "iso-b", "cat /workspace/a.txt /etc/written-by-a 2>&1 || true")
		if strings.Contains(res.Stdout, "secret") || !strings.Contains(res.Stdout, "No such file") {
			t.Errorf("sandbox b sees a's files: %q", res.Stdout)
		}
		res = mustExec(t, d, "iso-b", "ps -e -o pid= | wc -l")
		if res.Stdout == "" {
			t.Error("no ps output")
		}
	})
}

func TestMemoryHogKilled(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	if _, err := d.Client.Sandbox("hog").Create(ctx, &api.CreateSandboxRequest{InstanceType: "lite"}); err != nil {
		t.Fatal(err)
	}
	res := mustExec(t, d, "hog", `python3 -c 'b = bytearray(1024*1024*1024); print("survived")'`)
	if res.ExitCode != 137 || strings.Contains(res.Stdout, "survived") || !res.OOMKilled {
		t.Fatalf("1 GiB allocation in a 256 MiB sandbox: exit %d oomKilled %v stdout %q stderr %q", res.ExitCode, res.OOMKilled, res.Stdout, res.Stderr)
	}
	// Reported as such only when it is: a plain SIGKILL is not.
	if res := mustExec(t, d, "hog", "kill -9 $$"); res.ExitCode != 137 || res.OOMKilled {
		t.Errorf("kill -9: exit %d oomKilled %v; want 137 without oomKilled", res.ExitCode, res.OOMKilled)
	}
	_, stderr, code := d.CLI(nil, "exec", "hog", "--", "python3", "-c", "bytearray(1 << 30)")
	if code != 137 || !strings.Contains(stderr, "out of memory") {
		t.Errorf("sbx exec of a memory hog: exit %d, stderr %q; want 137 and the reason", code, stderr)
	}
	if err := d.Client.Health(ctx); err != nil {
		t.Fatalf("sbxd unhealthy after OOM: %v", err)
	}
	if res := mustExec(t, d, "hog", "echo still-here"); res.Stdout != "still-here\n" {
		t.Fatalf("sandbox unusable after OOM kill: %+v", res)
	}
}

func TestForkBombContained(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	if _, err := d.Client.Sandbox("bomb").Create(ctx, &api.CreateSandboxRequest{InstanceType: "lite"}); err != nil {
		t.Fatal(err)
	}
	// The bomb runs until the timeout kills the command's whole tree.
	res := mustExec(t, d, "bomb", `bomb() { bomb | bomb & }; bomb; sleep 30`, client.WithTimeout(3000))
	if !res.TimedOut || !strings.Contains(res.Stderr, "Resource temporarily unavailable") {
		t.Errorf("fork bomb: exit %d timedOut %v stderr %.200q; want the pids limit hit and a timeout", res.ExitCode, res.TimedOut, res.Stderr)
	}
	if err := d.Client.Health(ctx); err != nil {
		t.Fatalf("sbxd unhealthy after fork bomb: %v", err)
	}
	// Once the bomb is gone the sandbox works, or at worst is destroyed
	// cleanly.
	usable := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := d.Client.Sandbox("bomb").Exec(cctx, "echo ok")
		cancel()
		if err == nil && r.Stdout == "ok\n" {
			usable = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !usable {
		t.Log("sandbox not usable after the fork bomb; destroying it")
	}
	dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Client.Sandbox("bomb").Destroy(dctx); err != nil {
		t.Fatalf("destroy after fork bomb: %v", err)
	}
	if l := leftovers(t, d, "bomb"); len(l) > 0 {
		t.Errorf("destroy after fork bomb left behind:\n%s", strings.Join(l, "\n"))
	}
}

func TestSleepAfterStopsIdleSandbox(t *testing.T) {
	d := StartDaemon(t, "--reap-interval", "200ms")
	ctx := ctxT(t)
	if _, err := d.Client.Sandbox("sleepy").Create(ctx, &api.CreateSandboxRequest{SleepAfter: api.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client.Sandbox("awake").Create(ctx, &api.CreateSandboxRequest{SleepAfter: api.Duration(time.Second), KeepAlive: true}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, d, "sleepy", "echo hi > /workspace/f")
	waitStatus(t, d, "sleepy", api.StatusStopped, 15*time.Second)
	if sb, _ := d.Client.Sandbox("awake").Get(ctx); sb.Status != api.StatusRunning {
		t.Errorf("keepAlive sandbox was stopped: %+v", sb)
	}
	// The next request wakes it, fresh (ephemeral).
	res := mustExec(t, d, "sleepy", "cat /workspace/f 2>/dev/null || echo gone")
	if res.Stdout != "gone\n" {
		t.Errorf("ephemeral sandbox kept files across sleep: %q", res.Stdout)
	}
	sb, err := d.Client.Sandbox("sleepy").Get(ctx)
	if err != nil || sb.Status != api.StatusRunning || time.Duration(sb.SleepAfter) != time.Second {
		t.Errorf("after wake: %+v %v", sb, err)
	}
}

func waitStatus(t *testing.T, d *Daemon, id, status string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		sb, err := d.Client.Sandbox(id).Get(ctxT(t))
		if err == nil && sb.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s not %s within %v: %+v %v", id, status, within, sb, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leftovers lists host resources that still mention sandbox id or the data
// dir: mounts, cgroup directories and processes.
func leftovers(t *testing.T, d *Daemon, id string) []string {
	t.Helper()
	var found []string
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, filepath.Join(d.DataDir, "sandboxes", id)) {
			found = append(found, "mount: "+line)
		}
	}
	for _, ctrl := range []string{"memory", "pids", "cpu"} {
		_ = filepath.WalkDir(filepath.Join("/sys/fs/cgroup", ctrl), func(p string, e os.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return nil
			}
			if strings.Count(strings.TrimPrefix(p, "/sys/fs/cgroup/"), "/") > 3 {
				return filepath.SkipDir
			}
			if filepath.Base(p) == id || strings.HasSuffix(filepath.Base(p), "-"+id) {
				found = append(found, "cgroup: "+p)
			}
			return nil
		})
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/root")
	for _, p := range procs {
		if root, err := os.Readlink(p); err == nil && strings.HasPrefix(root, filepath.Join(d.DataDir, "sandboxes", id)) {
			found = append(found, "process: "+p)
		}
	}
	if _, err := os.Stat(filepath.Join(d.DataDir, "sandboxes", id)); err == nil {
		found = append(found, "directory: "+filepath.Join(d.DataDir, "sandboxes", id))
	}
	return found
}

func TestDestroyLeavesNothing(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	mustExec(t, d, "doomed", "sleep 1000 & sleep 1000 & echo started")
	if l := leftovers(t, d, "doomed"); len(l) == 0 {
		t.Fatal("leftover check finds nothing even for a running sandbox; it cannot detect leaks")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := 0; i < 5; i++ { // destroy is idempotent and concurrent-safe
		wg.Add(1)
		go func() { defer wg.Done(); errs <- d.Client.Sandbox("doomed").Destroy(ctx) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent destroy: %v", err)
		}
	}
	if l := leftovers(t, d, "doomed"); len(l) > 0 {
		t.Errorf("destroy left behind:\n%s", strings.Join(l, "\n"))
	}
	if _, err := d.Client.Sandbox("doomed").Get(ctx); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("get after destroy: %v, want not found", err)
	}
}

func TestRestartReadoptsRunningSandbox(t *testing.T) {
	d := StartDaemon(t)
	mustExec(t, d, "survivor", "echo kept > /workspace/state; sleep 1000 & echo $! > /workspace/pid")
	pid1 := mustExec(t, d, "survivor", "cat /workspace/pid").Stdout
	d.Restart()
	res := mustExec(t, d, "survivor", "cat /workspace/state; kill -0 $(cat /workspace/pid) && echo alive")
	if res.Stdout != "kept\nalive\n" {
		t.Fatalf("after restart: %q %q", res.Stdout, res.Stderr)
	}
	if pid2 := mustExec(t, d, "survivor", "cat /workspace/pid").Stdout; pid1 != pid2 {
		t.Errorf("pid file changed: %q → %q", pid1, pid2)
	}
	// A crash (SIGKILL) is no different.
	d.Kill()
	d.Start()
	if res := mustExec(t, d, "survivor", "cat /workspace/state"); res.Stdout != "kept\n" {
		t.Fatalf("after crash restart: %q", res.Stdout)
	}
}

func TestConcurrentFirstRequestsCreateOneSandbox(t *testing.T) {
	d := StartDaemon(t)
	const n = 50
	var wg sync.WaitGroup
	starts := make(chan string, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Field 22 of /proc/1/stat is the start time of the agent:
			// one sandbox means one value.
			res, err := d.Client.Sandbox("herd").Exec(context.Background(), "cut -d' ' -f22 /proc/1/stat")
			if err != nil {
				errs <- err
				return
			}
			starts <- res.Stdout
		}()
	}
	wg.Wait()
	close(starts)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]int{}
	for s := range starts {
		seen[s]++
	}
	if len(seen) != 1 {
		t.Errorf("requests reached %d different sandboxes: %v", len(seen), seen)
	}
	if got := strings.Count(d.Logs(), `msg="sandbox started" id=herd `); got != 1 {
		t.Errorf("sandbox started %d times, want 1", got)
	}
}

func TestManySandboxesConcurrently(t *testing.T) {
	d := StartDaemon(t)
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("many-%d", i)
			res, err := d.Client.Sandbox(id).Exec(context.Background(), "hostname")
			if err != nil {
				t.Errorf("%s: %v", id, err)
				return
			}
			if res.Stdout != id+"\n" {
				t.Errorf("%s: hostname %q", id, res.Stdout)
			}
		}(i)
	}
	wg.Wait()
	list, err := d.Client.List(ctxT(t))
	if err != nil || len(list) != n {
		t.Fatalf("listed %d sandboxes (%v), want %d", len(list), err, n)
	}
}

func TestBadRequests(t *testing.T) {
	d := StartDaemon(t)
	long := strings.Repeat("a", 64)
	tests := []struct {
		name, method, path, body, token string
		status                          int
		code                            string
	}{
		{"no token", "GET", "/v1/sandboxes", "", "-", 401, "UNAUTHORIZED"},
		{"wrong token", "GET", "/v1/sandboxes", "", "nope", 401, "UNAUTHORIZED"},
		{"uppercase id", "POST", "/v1/sandboxes/Bad/exec", `{"command":"true"}`, "", 400, "INVALID_SANDBOX_ID"},
		{"leading dash", "POST", "/v1/sandboxes/-bad/exec", `{"command":"true"}`, "", 400, "INVALID_SANDBOX_ID"},
		{"trailing dash", "PUT", "/v1/sandboxes/bad-", ``, "", 400, "INVALID_SANDBOX_ID"},
		{"too long", "POST", "/v1/sandboxes/" + long + "/exec", `{"command":"true"}`, "", 400, "INVALID_SANDBOX_ID"},
		{"underscore", "GET", "/v1/sandboxes/a_b", ``, "", 400, "INVALID_SANDBOX_ID"},
		{"bad json", "POST", "/v1/sandboxes/ok-id/exec", `{"command":`, "", 400, "INVALID_REQUEST"},
		{"unknown field", "POST", "/v1/sandboxes/ok-id/exec", `{"command":"true","comand":"x"}`, "", 400, "INVALID_REQUEST"},
		{"empty command", "POST", "/v1/sandboxes/ok-id/exec", `{"command":""}`, "", 400, "INVALID_REQUEST"},
		{"negative timeout", "POST", "/v1/sandboxes/ok-id/exec", `{"command":"true","timeoutMs":-1}`, "", 400, "INVALID_REQUEST"},
		{"relative cwd", "POST", "/v1/sandboxes/ok-id/exec", `{"command":"true","cwd":"tmp"}`, "", 400, "INVALID_REQUEST"},
		{"bad instance type", "PUT", "/v1/sandboxes/ok-id", `{"instanceType":"huge"}`, "", 400, "INVALID_INSTANCE_TYPE"},
		{"bad sleepAfter", "PUT", "/v1/sandboxes/ok-id", `{"sleepAfter":"soon"}`, "", 400, "INVALID_REQUEST"},
		{"unknown image", "PUT", "/v1/sandboxes/ok-id", `{"image":"nope"}`, "", 400, "IMAGE_NOT_FOUND"},
		{"get absent", "GET", "/v1/sandboxes/absent", ``, "", 404, "SANDBOX_NOT_FOUND"},
		{"stop absent", "POST", "/v1/sandboxes/absent/stop", ``, "", 404, "SANDBOX_NOT_FOUND"},
		{"unknown route", "GET", "/v1/nothing", ``, "", 404, "NOT_FOUND"},
		{"wrong method", "PATCH", "/v1/sandboxes/x/exec", ``, "", 405, "METHOD_NOT_ALLOWED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, d.URL+tc.path, strings.NewReader(tc.body))
			switch tc.token {
			case "":
				req.Header.Set("Authorization", "Bearer "+d.Token)
			case "-":
			default:
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var e api.Error
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("error body is not JSON: %q", b)
			}
			if resp.StatusCode != tc.status || e.Code != tc.code || e.Message == "" {
				t.Errorf("got %d %s %q, want %d %s", resp.StatusCode, e.Code, e.Message, tc.status, tc.code)
			}
		})
	}
	// None of the refused requests created a sandbox.
	if list, err := d.Client.List(ctxT(t)); err != nil || len(list) != 0 {
		t.Errorf("bad requests created sandboxes: %v %v", list, err)
	}
	// Health needs no token; everything else does.
	resp, err := http.Get(d.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz: %v %v", resp, err)
	}
}

func TestOpenAPIAndMetrics(t *testing.T) {
	d := StartDaemon(t)
	get := func(path string) []byte {
		req, _ := http.NewRequest("GET", d.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+d.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(get("/v1/openapi.json"), &doc); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/v1/sandboxes/{id}/exec", "/v1/sandboxes/{id}", "/v1/sandboxes", "/healthz"} {
		if doc.Paths[p] == nil {
			t.Errorf("openapi lacks %s", p)
		}
	}
	mustExec(t, d, "metered", "true")
	m := string(get("/metrics"))
	for _, want := range []string{"sbx_sandboxes_running 1", "sbx_sandbox_starts_total 1", "sbx_http_request_duration_seconds"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestDaemonRefusesUnsafeConfig(t *testing.T) {
	RequireRoot(t)
	bin := Binaries(t)
	dir := t.TempDir()
	out, err := exec.Command(filepath.Join(bin, "sbxd"), "--listen", "0.0.0.0:0", "--insecure-no-auth",
		"--data-dir", dir, "--images-dir", ImagesDir(), "--no-image-build").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loopback") {
		t.Fatalf("sbxd without auth on a public address: err %v, output %s", err, out)
	}
	// A config file sets flags; the command line wins.
	cfg := filepath.Join(dir, "sbxd.json")
	os.WriteFile(cfg, []byte(`{"listen": "0.0.0.0:0", "insecure-no-auth": true}`), 0o600)
	out, err = exec.Command(filepath.Join(bin, "sbxd"), "--config", cfg, "--data-dir", dir,
		"--images-dir", ImagesDir(), "--no-image-build").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loopback") {
		t.Fatalf("config file not applied: err %v, output %s", err, out)
	}
	os.WriteFile(cfg, []byte(`{"lisen": "x"}`), 0o600)
	out, err = exec.Command(filepath.Join(bin, "sbxd"), "--config", cfg, "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown key "lisen"`) {
		t.Fatalf("unknown config key accepted: %v %s", err, out)
	}
}

func TestEnvPatchSurvivesSleep(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	v := "kept"
	if _, err := d.Client.Sandbox("envsleep").SetEnv(ctx, api.EnvPatch{"PATCHED": &v}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client.Sandbox("envsleep").Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if res := mustExec(t, d, "envsleep", `echo "$PATCHED"`); res.Stdout != "kept\n" {
		t.Fatalf("env after stop and wake: %q", res.Stdout)
	}
}

// TestDiskQuotaFilled checks that a sandbox filling its disk meets its own
// limit: the instance type's size, ENOSPC inside, NO_SPACE through the
// file API with the old file kept, and room again once it deletes.
func TestDiskQuotaFilled(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("full")
	if _, err := sb.Create(ctx, &api.CreateSandboxRequest{InstanceType: "lite"}); err != nil {
		t.Fatal(err)
	}
	const gb = 1000 * 1000 * 1000 // lite has 2 GB, as in the reference
	res := mustExec(t, d, "full", "df -B1 --output=size / | tail -n 1")
	if size, err := strconv.ParseInt(strings.TrimSpace(res.Stdout), 10, 64); err != nil || size > 2*gb || size < 19*gb/10 {
		t.Fatalf("size of / in a lite sandbox = %q; want a little under 2 GB", res.Stdout)
	}
	if _, err := sb.WriteFile(ctx, "/workspace/keep", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	// Allocating without writing fills the disk without moving 2 GB.
	res = mustExec(t, d, "full", "fallocate -l 3G /workspace/huge; echo $?; rm -f /workspace/huge; fallocate -l $(( $(df -B1 --output=avail / | tail -n 1) - 8*1024*1024 )) /workspace/fill && echo filled")
	if !strings.Contains(res.Stdout, "1\n") || !strings.Contains(res.Stderr, "No space left") || !strings.Contains(res.Stdout, "filled") {
		t.Fatalf("fallocate past and up to the limit: %q %q", res.Stdout, res.Stderr)
	}
	_, err := sb.WriteFile(ctx, "/workspace/keep", newBlockStream(64<<20))
	var e *client.Error
	if !errors.As(err, &e) || e.Code != api.CodeNoSpace || !strings.Contains(e.Message, "/workspace/keep") {
		t.Fatalf("writing 64 MiB into a full sandbox: %v; want NO_SPACE naming the path", err)
	}
	if got, err := sb.ReadFile(ctx, "/workspace/keep"); err != nil || string(got) != "old" {
		t.Errorf("after a failed write the file reads %q, %v; want the old content", got, err)
	}
	mustExec(t, d, "full", "rm /workspace/fill")
	if _, err := sb.WriteFile(ctx, "/workspace/keep", newBlockStream(64<<20)); err != nil {
		t.Errorf("write after freeing space: %v", err)
	}
}
