package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

// TestAgentConfigOutputCaps checks that sbxd's caps reach the agent of
// every sandbox: exec output and background-process logs are cut at them.
func TestAgentConfigOutputCaps(t *testing.T) {
	d := StartDaemon(t, "--exec-output-cap", "1000", "--process-log-cap", "2000")
	ctx := ctxT(t)
	sb := d.Client.Sandbox("capped")

	res := mustExec(t, d, "capped", `head -c 5000 /dev/zero | tr '\0' x; printf small >&2`)
	if len(res.Stdout) != 1000 || strings.Trim(res.Stdout, "x") != "" || !res.StdoutTruncated {
		t.Errorf("stdout: %d bytes, truncated %v; want 1000 bytes of x, truncated", len(res.Stdout), res.StdoutTruncated)
	}
	if res.Stderr != "small" || res.StderrTruncated || res.ExitCode != 0 {
		t.Errorf("stderr %q truncated %v exit %d; want small, untruncated, exit 0", res.Stderr, res.StderrTruncated, res.ExitCode)
	}

	if _, err := sb.StartProcess(ctx, api.StartProcessRequest{ID: "loud", Command: `head -c 5000 /dev/zero | tr '\0' y`}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.WaitForExit(ctx, "loud", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	logs, err := sb.ProcessLogs(ctx, "loud")
	if err != nil {
		t.Fatal(err)
	}
	if len(logs.Stdout) != 2000 || logs.StdoutDroppedBytes != 3000 {
		t.Errorf("process log kept %d bytes and dropped %d; want 2000 and 3000", len(logs.Stdout), logs.StdoutDroppedBytes)
	}
}

// TestAgentConfigInterpreterPool checks --interpreter-pool: after the first
// python context, the agent keeps that many more interpreters started.
func TestAgentConfigInterpreterPool(t *testing.T) {
	RequirePythonImage(t)
	for _, pool := range []int{0, 2} {
		t.Run("pool "+strconv.Itoa(pool), func(t *testing.T) {
			d := StartDaemon(t, "--interpreter-pool", strconv.Itoa(pool))
			sb := d.Client.Sandbox("pool")
			if _, err := sb.Create(ctxT(t), &api.CreateSandboxRequest{Image: "python"}); err != nil {
				t.Fatal(err)
			}
			id := mustContext(t, sb, api.LanguagePython)
			if res := mustRun(t, sb, "6 * 7", client.InContext(id)); mainText(res) != "42" {
				t.Fatalf("run in a context: %+v", res)
			}
			// Interpreters are processes running the agent's runner.py;
			// the pattern keeps grep and its shell from matching.
			count := func() int {
				r := mustExec(t, d, "pool", `grep -las 'runner[.]py' /proc/[0-9]*/cmdline | wc -l`)
				n, err := strconv.Atoi(strings.TrimSpace(r.Stdout))
				if err != nil {
					t.Fatalf("counting interpreters: %q %q", r.Stdout, r.Stderr)
				}
				return n
			}
			want := 1 + pool // the context's own, and the pool's
			waitFor(t, 30*time.Second, func() bool { return count() >= want })
			// The pool is filled at once after first use: give a wrong
			// refill time to show.
			time.Sleep(500 * time.Millisecond)
			if n := count(); n != want {
				t.Errorf("%d interpreters running, want %d", n, want)
			}
		})
	}
}
