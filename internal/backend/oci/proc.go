package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// initProc identifies a sandbox's init process across pid reuse: a pid is
// only the same process while its start time (in clock ticks since boot)
// is the same.
type initProc struct {
	pid   int
	start uint64
}

func (p initProc) String() string {
	return strconv.Itoa(p.pid) + " " + strconv.FormatUint(p.start, 10) + "\n"
}

func parseInitProc(b []byte) (initProc, error) {
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return initProc{}, fmt.Errorf("malformed init record %q", b)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return initProc{}, fmt.Errorf("malformed init record %q", b)
	}
	start, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return initProc{}, fmt.Errorf("malformed init record %q", b)
	}
	return initProc{pid: pid, start: start}, nil
}

// procStat returns the state letter and start time of pid from
// /proc/<pid>/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may contain
	// anything, so fields are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	return f[0][0], start, nil
}

// alive reports whether p is still running (a zombie is not).
func (p initProc) alive() bool {
	state, start, err := procStat(p.pid)
	return err == nil && start == p.start && state != 'Z' && state != 'X'
}

// open returns a pidfd for p, or -1 if p has exited. The start time is
// checked after the pidfd is open, so the fd cannot refer to a process that
// reused the pid.
func (p initProc) open() (int, error) {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", p.pid, err)
	}
	if !p.alive() {
		unix.Close(fd)
		return -1, nil
	}
	return fd, nil
}

// kill sends SIGKILL to p and waits until it has exited. p is the init of
// the sandbox's pid namespace, so its death takes every process of the
// sandbox with it; the kernel has reaped them all by the time the pidfd
// reports the exit.
func (p initProc) kill(ctx context.Context) error {
	fd, err := p.open()
	if err != nil || fd < 0 {
		return err
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill sandbox init %d: %w", p.pid, err)
	}
	return waitPidfd(ctx, fd, p.pid)
}

// waitPidfd blocks until the process behind fd exits or ctx ends.
func waitPidfd(ctx context.Context, fd, pid int) error {
	for {
		timeout := 100 // ms; re-check ctx this often
		if d, ok := ctx.Deadline(); ok {
			timeout = min(timeout, max(int(time.Until(d).Milliseconds()), 0))
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("wait for sandbox init %d: %w", pid, err)
		}
		if n > 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for sandbox init %d to exit: %w", pid, err)
		}
	}
}
