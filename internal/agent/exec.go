package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

const (
	// pipeGrace is how long exec waits for end-of-file on the output pipes
	// after the command has exited. A background process (`server &`)
	// inherits the pipes and may hold them open for ever; its later output
	// is drained and discarded so it never blocks on a full pipe.
	pipeGrace = 30 * time.Millisecond
	// killWait bounds the wait for a killed command to be reaped: a process
	// in uninterruptible sleep acts on SIGKILL only when it wakes.
	killWait = 2 * time.Second
)

// Output streams, as the pumps number them.
const (
	stdout = 0
	stderr = 1
)

var streamNames = [2]string{api.EventStdout, api.EventStderr}

func invalid(err error) error { return fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err) }

// handleExec serves POST /exec: run one command to completion and return its
// output, or stream it as server-sent events when the client accepts
// text/event-stream. A non-zero exit is a result, not an error.
func (a *Agent) handleExec(w http.ResponseWriter, r *http.Request) {
	var req api.ExecRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	c, err := a.newCommand(&req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		a.streamExec(w, r, c)
		return
	}
	sink := &captureSink{c: [2]*capture{newCapture(a.cfg.OutputCap), newCapture(a.cfg.OutputCap)}}
	o, err := a.run(r.Context(), c, sink, nil)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	res := &api.ExecResult{ExitCode: o.exitCode, Success: o.exitCode == 0 && !o.timedOut,
		DurationMs: o.duration.Milliseconds(), TimedOut: o.timedOut, OOMKilled: o.oomKilled}
	res.Stdout, res.StdoutTruncated = sink.c[stdout].detach()
	res.Stderr, res.StderrTruncated = sink.c[stderr].detach()
	errdefs.WriteJSON(w, http.StatusOK, res)
}

// command is a validated ExecRequest, ready to start. Streaming exec,
// sessions and background processes start from the same validation.
type command struct {
	script  string
	dir     string   // "" in a session: the session's own
	env     []string // full environment (one-shot) or nil
	extra   map[string]string
	stdin   *string
	timeout time.Duration // 0: none
	session string
}

// newCommand validates req with the same validator sbxd uses, then checks
// what only the sandbox can: the working directory. Every problem is an
// errdefs.ErrInvalidArgument naming what to fix.
func (a *Agent) newCommand(req *api.ExecRequest) (*command, error) {
	if err := req.Validate(); err != nil {
		return nil, invalid(err)
	}
	c := &command{script: req.Command, extra: req.Env, stdin: req.Stdin, session: req.Session}
	// Beyond ~292 years the Duration overflows; such a timeout is none.
	if req.TimeoutMs > 0 && req.TimeoutMs <= math.MaxInt64/int64(time.Millisecond) {
		c.timeout = time.Duration(req.TimeoutMs) * time.Millisecond
	}
	if req.Session != "" {
		if err := api.ValidateShellNames(req.Env); err != nil {
			return nil, invalid(fmt.Errorf("%v (commands in a session get their env from its shell)", err))
		}
		if req.Cwd != "" {
			if err := checkDir(req.Cwd); err != nil {
				return nil, err
			}
		}
		c.dir = req.Cwd
		return c, nil
	}
	c.dir = a.cfg.DefaultCwd
	if req.Cwd != "" {
		c.dir = req.Cwd
	}
	if err := checkDir(c.dir); err != nil {
		return nil, err
	}
	c.env = mergeEnv(a.env.environ(), req.Env)
	return c, nil
}

// checkDir checks that dir is an existing directory.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: working directory %q does not exist; create it or pass another cwd", errdefs.ErrInvalidArgument, dir)
	case err != nil:
		return fmt.Errorf("%w: working directory %q: %v", errdefs.ErrInvalidArgument, dir, err)
	case !fi.IsDir():
		return fmt.Errorf("%w: working directory %q is not a directory", errdefs.ErrInvalidArgument, dir)
	}
	return nil
}

// mergeEnv returns a new slice: base with the variables of extra added,
// replacing those of the same name. extra is already validated.
func mergeEnv(base []string, extra map[string]string, more ...string) []string {
	env := make([]string, 0, len(base)+len(extra)+len(more))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := extra[k]; !ok {
			env = append(env, kv)
		}
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return append(env, more...)
}

// devNull is the standard input of commands that get none: they read
// end-of-file at once instead of waiting for input that never comes. One
// descriptor serves every command.
var devNull = sync.OnceValues(func() (*os.File, error) { return os.Open(os.DevNull) })

// outcome is how a command ended.
type outcome struct {
	exitCode  int
	timedOut  bool
	oomKilled bool // SIGKILLed by the kernel at the sandbox's memory limit
	duration  time.Duration
}

// outputSink receives a command's output in the order the pumps read it.
// write may block, which holds the command back (a slow stream reader).
type outputSink interface {
	write(stream int, p []byte) // p is reused once write returns
	// detach ends delivery: later output is discarded.
	detach()
}

// run runs c (in its session, if it names one) and delivers its output to
// sink. started, if not nil, learns the pid before any output. When the
// timeout expires or ctx is cancelled, the command's whole process tree is
// killed before run returns; a cancelled run returns an error, a timed-out
// one an outcome with timedOut set. Jobs a command leaves in the background
// when it exits by itself keep running; their later output is discarded.
func (a *Agent) run(ctx context.Context, c *command, sink outputSink, started func(pid int)) (*outcome, error) {
	oomBefore, oomKnown := oomKills()
	var (
		o   *outcome
		err error
	)
	if c.session != "" {
		s, serr := a.sessions.get(c.session)
		if serr != nil {
			return nil, serr
		}
		o, err = s.run(ctx, c, sink, started)
	} else {
		o, err = a.runOnce(ctx, c, sink, started)
	}
	// 137 is SIGKILL's status, also as a shell reports a killed child.
	if err == nil && oomKnown && o.exitCode == 128+int(syscall.SIGKILL) && !o.timedOut {
		if n, ok := oomKills(); ok && n > oomBefore {
			o.oomKilled = true
		}
	}
	return o, err
}

// runOnce runs c as `bash -c` in a process group of its own.
func (a *Agent) runOnce(ctx context.Context, c *command, sink outputSink, started func(pid int)) (*outcome, error) {
	var files []*os.File // every descriptor opened here, for the error path
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}

	var stdinR, stdinW *os.File
	if c.stdin == nil {
		f, err := devNull()
		if err != nil {
			return nil, fmt.Errorf("open stdin: %w", err)
		}
		stdinR = f
	} else {
		r, w, err := pipe()
		if err != nil {
			return nil, fmt.Errorf("create stdin pipe: %w", err)
		}
		stdinR, stdinW = r, w
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("create stdout pipe: %w", err)
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("create stderr pipe: %w", err)
	}

	scope := "e" + strconv.FormatUint(a.seq.Add(1), 10)
	start := time.Now()
	p, err := startProcess(&startSpec{
		path:  a.cfg.Shell,
		argv:  []string{"bash", "-c", c.script},
		env:   append(c.env, a.tagEnv(scope)),
		dir:   c.dir,
		files: []*os.File{stdinR, outW, errW},
	})
	if err != nil {
		closeAll()
		return nil, startError(a.cfg.Shell, err)
	}
	// The child holds its own copies now; ours would keep the pipes from
	// ever reaching end-of-file.
	outW.Close()
	errW.Close()
	if stdinW != nil {
		stdinR.Close()
		go func() {
			// A write error means the command stopped reading, or exec
			// closed the pipe after it exited: either way input is moot.
			_, _ = stdinW.WriteString(*c.stdin)
			stdinW.Close()
		}()
	}
	if started != nil {
		started(p.pid)
	}

	pumps := startPumps(outR, errR, sink)

	var timeout <-chan time.Time
	if c.timeout > 0 {
		t := time.NewTimer(c.timeout)
		defer t.Stop()
		timeout = t.C
	}
	exited, timedOut, cancelled := false, false, false
	select {
	case <-p.Done():
		exited = true
	case <-timeout:
		// ErrProcessDone: it exited on its own just as the timer fired.
		timedOut = !errors.Is(p.signalGroup(syscall.SIGKILL), os.ErrProcessDone)
	case <-ctx.Done():
		_ = p.signalGroup(syscall.SIGKILL)
		cancelled = true
	}
	if !exited {
		// Members that left the group (setsid, daemons) go too.
		a.killScope(scope, nil, syscall.SIGKILL, 0)
		t := time.NewTimer(killWait)
		select {
		case <-p.Done():
			exited = true
		case <-t.C:
		}
		t.Stop()
	}
	duration := time.Since(start)

	// The output of a command that has exited is normally at end-of-file
	// already: the kernel closes a process's descriptors before it reports
	// the exit. Only processes it left behind can delay it.
	pumps.wait(pipeGrace)
	if stdinW != nil {
		stdinW.Close() // unblocks a writer stuck on input nobody reads
	}
	sink.detach()

	if cancelled {
		return nil, fmt.Errorf("%w: command killed because its request was cancelled (client gone or agent shutting down): %v",
			errdefs.ErrUnavailable, context.Cause(ctx))
	}
	o := &outcome{timedOut: timedOut, duration: duration}
	switch {
	case timedOut:
		o.exitCode = api.ExitCodeTimedOut
	case exited:
		o.exitCode = exitCode(p.Status())
	}
	return o, nil
}

// startError explains why the shell could not be started.
func startError(shell string, err error) error {
	switch {
	case errors.Is(err, syscall.E2BIG):
		return fmt.Errorf("%w: command or environment too large for the kernel (one string may be at most 128 KiB); pass large data on stdin: %v",
			errdefs.ErrInvalidArgument, err)
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.ENOMEM):
		return fmt.Errorf("%w: cannot start a command, the sandbox is at its process or memory limit: %v", errdefs.ErrCapacity, err)
	}
	return fmt.Errorf("start %s: %w", shell, err)
}

// pumpBufs recycles the read buffers of pump.
var pumpBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// outputPumps copy a command's stdout and stderr pipes into a sink.
type outputPumps struct {
	eof   chan struct{}
	busy  atomic.Int32 // pumps holding bytes read but not yet in the sink
	pipes [2]*os.File
}

// startPumps starts copying out and errOut into sink.
func startPumps(out, errOut *os.File, sink outputSink) *outputPumps {
	p := &outputPumps{eof: make(chan struct{}, 2), pipes: [2]*os.File{out, errOut}}
	go p.pump(stdout, sink)
	go p.pump(stderr, sink)
	return p
}

func (p *outputPumps) pump(stream int, sink outputSink) {
	f := p.pipes[stream]
	bp := pumpBufs.Get().(*[]byte)
	for {
		n, err := f.Read(*bp)
		if n > 0 {
			p.busy.Add(1)
			sink.write(stream, (*bp)[:n])
			p.busy.Add(-1)
		}
		if err != nil {
			break
		}
	}
	pumpBufs.Put(bp)
	f.Close()
	p.eof <- struct{}{}
}

// wait returns once both pipes are at end-of-file, or once grace has
// passed with nothing left to copy: what a command left running in the
// background may hold its pipes for ever. Output already written is never
// cut off by a pump that the scheduler left waiting (a loaded machine can
// delay it far beyond grace), though a writer that never stops is given up
// on after maxDrain.
func (p *outputPumps) wait(grace time.Duration) {
	const maxDrain = time.Second
	deadline := time.Now().Add(maxDrain)
	t := time.NewTimer(grace)
	defer t.Stop()
	for n := 2; n > 0; {
		select {
		case <-p.eof:
			n--
		case <-t.C:
			if !p.pending() || time.Now().After(deadline) {
				return
			}
			t.Reset(grace)
		}
	}
}

// pending reports whether output is still on its way: bytes in a pipe or
// in a pump's hands.
func (p *outputPumps) pending() bool {
	if p.busy.Load() > 0 {
		return true
	}
	for _, f := range p.pipes {
		rc, err := f.SyscallConn()
		if err != nil {
			continue
		}
		n := 0
		// TIOCINQ is FIONREAD: bytes waiting in the pipe. Control fails
		// once the pump has closed it: nothing left then.
		if rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }) == nil && n > 0 {
			return true
		}
	}
	return false
}

// captureSink keeps the output of a non-streaming exec.
type captureSink struct{ c [2]*capture }

func (s *captureSink) write(stream int, p []byte) { s.c[stream].write(p) }

// detach is left to the caller, who detaches each capture to read it.
func (s *captureSink) detach() {}

// capture keeps the first limit bytes of a stream and notes whether more
// came. Once detached it discards everything, so whatever still holds the
// pipe can keep writing.
type capture struct {
	mu        sync.Mutex
	buf       []byte
	limit     int
	truncated bool
	detached  bool
}

func newCapture(limit int64) *capture {
	return &capture{limit: int(min(limit, math.MaxInt32))}
}

func (c *capture) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.detached {
		return
	}
	if room := c.limit - len(c.buf); len(p) > room {
		p = p[:room]
		c.truncated = true
	}
	if len(c.buf)+len(p) > cap(c.buf) {
		// Grow by doubling, but never past the limit.
		n := min(max(2*cap(c.buf), len(c.buf)+len(p), 4096), c.limit)
		c.buf = append(make([]byte, 0, n), c.buf...)
	}
	c.buf = append(c.buf, p...)
}

// detach returns what was captured and whether anything was cut, and turns
// c into a sink.
func (c *capture) detach() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := string(c.buf)
	c.buf, c.detached = nil, true
	return s, c.truncated
}

// resolveCwd returns the directory a command runs in: cwd, which must be
// absolute, or the default working directory when cwd is empty.
func (a *Agent) resolveCwd(cwd string) (string, error) {
	dir := a.cfg.DefaultCwd
	if cwd != "" {
		if !strings.HasPrefix(cwd, "/") {
			return "", fmt.Errorf("%w: cwd %q must be an absolute path", errdefs.ErrInvalidArgument, cwd)
		}
		dir = cwd
	}
	if err := checkDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}
