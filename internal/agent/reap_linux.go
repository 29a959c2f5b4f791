package agent

import (
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The agent is PID 1 of its sandbox, so every orphan in the sandbox is
// reparented to it and must be reaped, or the pid namespace fills with
// zombies. A plain wait4(-1) loop would also collect the exit statuses of the
// commands the agent started itself, racing with whoever waits for them, so
// the agent never uses os/exec's Cmd.Wait or os.Process.Wait. Instead every
// child is started through startProcess, which registers it with the one
// reaper of the process; the reaper collects every exit with wait4(-1) and
// hands each status to the process it belongs to. Statuses of unregistered
// pids are orphans and are dropped.
//
// Nothing else in the process may wait for children: os/exec's Cmd.Wait
// would race with the reaper and fail with ECHILD.

// reaper is the process-wide child registry and reaping loop. There is at
// most one, created by theReaper.
type reaper struct {
	// mu is held across fork + registration in startProcess and across the
	// wait4 loop, so a status is never collected for a pid that is about to
	// be registered, and a registered pid is never reused while a signal to
	// it is being sent.
	mu    sync.Mutex
	procs map[int]*process
}

var (
	reaperOnce    sync.Once
	reaperSingle  *reaper
	reaperRunning atomic.Bool
)

// theReaper returns the process's reaper, starting it on first use. It
// subscribes to SIGCHLD before any child can be started through it, and,
// unless the agent is PID 1, makes the process a child subreaper so that
// orphans of its commands are reparented to it as they are inside a sandbox.
func theReaper() *reaper {
	reaperOnce.Do(func() {
		r := &reaper{procs: make(map[int]*process)}
		if os.Getpid() != 1 {
			// Best effort: without it orphans go to the host's init, which
			// reaps them; only the reaping of our own children matters.
			_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
		}
		// SIGCHLDs coalesce; one pending wake-up is enough because each
		// wake-up reaps until nothing is left.
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGCHLD)
		go r.loop(ch)
		ch <- syscall.SIGCHLD // collect zombies that predate the subscription
		reaperSingle = r
		reaperRunning.Store(true)
	})
	return reaperSingle
}

func (r *reaper) loop(ch <-chan os.Signal) {
	for range ch {
		r.reap()
	}
}

// reap collects every exited child without blocking.
func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children; 0: none has exited yet
		}
		if p, ok := r.procs[pid]; ok {
			delete(r.procs, pid)
			p.status = ws
			p.reaped = true
			close(p.done)
		}
	}
}

// startSpec describes a child for startProcess.
type startSpec struct {
	path string
	argv []string
	env  []string
	dir  string
	// files become the child's descriptors 0, 1, 2, … in order; they stay
	// owned by the caller, who closes its copies after the start.
	files []*os.File
	// sys defaults to a new process group led by the child, which
	// signalGroup relies on. A PTY would set Setsid and Setctty instead.
	sys *syscall.SysProcAttr
}

// startProcess starts a child registered with the reaper. The caller learns
// of its exit through Done, never by waiting itself.
func startProcess(s *startSpec) (*process, error) {
	r := theReaper()
	fds := make([]uintptr, len(s.files))
	for i, f := range s.files {
		fds[i] = f.Fd() // also puts the descriptor in blocking mode, as children expect
	}
	sys := s.sys
	if sys == nil {
		sys = &syscall.SysProcAttr{Setpgid: true}
	}
	attr := &syscall.ProcAttr{Dir: s.dir, Env: s.env, Files: fds, Sys: sys}

	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(s.path, s.argv, attr)
	runtime.KeepAlive(s.files) // their descriptors must stay open until the fork is done
	if err != nil {
		return nil, err
	}
	p := &process{r: r, pid: pid, done: make(chan struct{})}
	r.procs[pid] = p
	return p, nil
}

// process is a child started by startProcess.
type process struct {
	r    *reaper
	pid  int
	done chan struct{}
	// status and reaped are written under r.mu before done is closed.
	status syscall.WaitStatus
	reaped bool
}

// Done is closed once the process has exited and been reaped.
func (p *process) Done() <-chan struct{} { return p.done }

// Status is the wait status; it is valid only after Done is closed.
func (p *process) Status() syscall.WaitStatus { return p.status }

// signalGroup sends sig to the process group the process leads. Once the
// leader has been reaped its pid may belong to someone else, so the signal is
// then not sent and os.ErrProcessDone returned.
func (p *process) signalGroup(sig syscall.Signal) error {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	return syscall.Kill(-p.pid, sig)
}

// signal sends sig to the process alone, unless it has been reaped.
func (p *process) signal(sig syscall.Signal) error {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	return syscall.Kill(p.pid, sig)
}

// exited reports whether the process has exited and been reaped.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode renders a wait status the way shells do: the exit status, or 128
// plus the number of the signal that ended the process.
func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
