package agent

import (
	"errors"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

// TestReapOrphans checks that a process orphaned by a command is reparented
// to the agent (PID 1 in a sandbox, a child subreaper here) and reaped when
// it exits instead of staying a zombie.
func TestReapOrphans(t *testing.T) {
	c, _ := startAgent(t, Config{})
	// The subshell starts sleep and exits at once, orphaning it.
	res := c.exec(t, api.ExecRequest{Command: "(sleep 0.3 >/dev/null 2>&1 & echo $!); exit 0"})
	orphan := firstLineInt(t, res.Stdout)
	t.Cleanup(func() { _ = syscall.Kill(orphan, syscall.SIGKILL) })

	if _, ppid, _, err := procStat(orphan); err != nil || ppid != os.Getpid() {
		t.Fatalf("orphan %d: parent %d (err %v), want the agent %d", orphan, ppid, err, os.Getpid())
	}
	if !eventually(3*time.Second, func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(orphan))
		return os.IsNotExist(err)
	}) {
		state, _, _, _ := procStat(orphan)
		t.Fatalf("orphan %d was not reaped (state %c)", orphan, state)
	}
	self := os.Getpid()
	if !eventually(time.Second, func() bool {
		return len(procs(func(_ int, state byte, ppid, _ int) bool { return ppid == self && state == 'Z' })) == 0
	}) {
		t.Errorf("zombie children remain: %v", procs(func(_ int, state byte, ppid, _ int) bool { return ppid == self && state == 'Z' }))
	}
}

// TestStartProcessFastExit checks that no exit status is lost for children
// that exit before their start has returned.
func TestStartProcessFastExit(t *testing.T) {
	null, err := devNull()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		p, err := startProcess(&startSpec{
			path:  "/bin/sh",
			argv:  []string{"sh", "-c", "exit " + strconv.Itoa(i%7)},
			dir:   "/",
			files: []*os.File{null, null, null},
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("process %d: exit never delivered", i)
		}
		if got := exitCode(p.Status()); got != i%7 {
			t.Fatalf("process %d: exit code %d, want %d", i, got, i%7)
		}
		if err := p.signalGroup(syscall.SIGKILL); !errors.Is(err, os.ErrProcessDone) {
			t.Fatalf("signalGroup after exit = %v, want os.ErrProcessDone", err)
		}
	}
}

func TestStartProcessError(t *testing.T) {
	null, err := devNull()
	if err != nil {
		t.Fatal(err)
	}
	_, err = startProcess(&startSpec{path: "/no/such/shell", argv: []string{"x"}, dir: "/", files: []*os.File{null, null, null}})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("starting a missing binary: got %v, want ENOENT", err)
	}
}
