package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

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

// handleExec serves POST /exec: run one command to completion and return its
// output. A non-zero exit is a result, not an error.
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
	res, err := c.run(r.Context(), a.cfg.OutputCap)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, res)
}

// command is a validated ExecRequest, ready to start. Streaming exec,
// background processes and sessions start from the same validation.
type command struct {
	shell   string
	script  string
	dir     string
	env     []string
	stdin   *string
	timeout time.Duration // 0: none
}

// newCommand validates req against the agent's configuration. Every
// problem is an errdefs.ErrInvalidArgument naming what to fix.
func (a *Agent) newCommand(req *api.ExecRequest) (*command, error) {
	if req.Command == "" {
		return nil, fmt.Errorf("%w: command is empty; pass the shell command to run", errdefs.ErrInvalidArgument)
	}
	if strings.IndexByte(req.Command, 0) >= 0 {
		return nil, fmt.Errorf("%w: command contains a NUL byte", errdefs.ErrInvalidArgument)
	}
	if req.TimeoutMs < 0 {
		return nil, fmt.Errorf("%w: timeoutMs is %d; use a positive number of milliseconds or 0 for no timeout", errdefs.ErrInvalidArgument, req.TimeoutMs)
	}
	dir, err := a.resolveCwd(req.Cwd)
	if err != nil {
		return nil, err
	}
	env, err := mergeEnv(os.Environ(), req.Env)
	if err != nil {
		return nil, err
	}
	c := &command{shell: a.cfg.Shell, script: req.Command, dir: dir, env: env, stdin: req.Stdin}
	// Beyond ~292 years the Duration overflows; such a timeout is none.
	if req.TimeoutMs > 0 && req.TimeoutMs <= math.MaxInt64/int64(time.Millisecond) {
		c.timeout = time.Duration(req.TimeoutMs) * time.Millisecond
	}
	return c, nil
}

// resolveCwd returns the directory a command runs in: cwd, relative to the
// default working directory unless absolute, or the default itself.
func (a *Agent) resolveCwd(cwd string) (string, error) {
	dir := a.cfg.DefaultCwd
	if cwd != "" {
		dir = cwd
		if !filepath.IsAbs(cwd) {
			dir = filepath.Join(a.cfg.DefaultCwd, cwd)
		}
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%w: working directory %q does not exist; create it or pass another cwd", errdefs.ErrInvalidArgument, dir)
	case err != nil:
		return "", fmt.Errorf("%w: working directory %q: %v", errdefs.ErrInvalidArgument, dir, err)
	case !fi.IsDir():
		return "", fmt.Errorf("%w: working directory %q is not a directory", errdefs.ErrInvalidArgument, dir)
	}
	return dir, nil
}

// mergeEnv returns base with the variables of extra added, replacing those
// of the same name. Keys are checked in sorted order so the error a request
// gets does not depend on map iteration.
func mergeEnv(base []string, extra map[string]string) ([]string, error) {
	if len(extra) == 0 {
		return base, nil
	}
	keys := make([]string, 0, len(extra))
	for k, v := range extra {
		keys = append(keys, k)
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("%w: env %q: value contains a NUL byte", errdefs.ErrInvalidArgument, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("%w: env key %q is not a valid variable name: it must be non-empty and contain no '=' or NUL", errdefs.ErrInvalidArgument, k)
		}
	}
	env := make([]string, 0, len(base)+len(keys))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := extra[k]; !ok {
			env = append(env, kv)
		}
	}
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return env, nil
}

// devNull is the standard input of commands that get none: they read
// end-of-file at once instead of waiting for input that never comes. One
// descriptor serves every command.
var devNull = sync.OnceValues(func() (*os.File, error) { return os.Open(os.DevNull) })

// run starts c in its own process group, waits for it and returns its
// output, keeping at most outputCap bytes per stream. When the timeout
// expires or ctx is cancelled, the whole group is killed and reaped before
// run returns (short of a process stuck in uninterruptible sleep for longer
// than killWait). Jobs a command leaves in the background when it exits by
// itself keep running; their later output is drained and discarded.
func (c *command) run(ctx context.Context, outputCap int64) (*api.ExecResult, error) {
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

	start := time.Now()
	p, err := startProcess(&startSpec{
		path:  c.shell,
		argv:  []string{"bash", "-c", c.script},
		env:   c.env,
		dir:   c.dir,
		files: []*os.File{stdinR, outW, errW},
	})
	if err != nil {
		closeAll()
		return nil, startError(c.shell, err)
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

	stdout, stderr := newCapture(outputCap), newCapture(outputCap)
	eof := make(chan struct{}, 2)
	go pump(outR, stdout, eof)
	go pump(errR, stderr, eof)

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
	waitEOF(eof, 2, pipeGrace)
	if stdinW != nil {
		stdinW.Close() // unblocks a writer stuck on input nobody reads
	}
	res := &api.ExecResult{DurationMs: duration.Milliseconds(), TimedOut: timedOut}
	res.Stdout, res.StdoutTruncated = stdout.detach()
	res.Stderr, res.StderrTruncated = stderr.detach()

	if cancelled {
		return nil, fmt.Errorf("%w: command killed because its request was cancelled (client gone or agent shutting down): %v",
			errdefs.ErrUnavailable, context.Cause(ctx))
	}
	switch {
	case timedOut:
		res.ExitCode = api.ExitCodeTimedOut
	case exited:
		res.ExitCode = exitCode(p.Status())
	}
	res.Success = res.ExitCode == 0 && !timedOut
	return res, nil
}

// waitEOF waits until n pumps have reported on eof, or for grace once one
// has to be waited for.
func waitEOF(eof <-chan struct{}, n int, grace time.Duration) {
	var t *time.Timer
	for ; n > 0; n-- {
		select {
		case <-eof:
			continue
		default:
		}
		if t == nil {
			t = time.NewTimer(grace)
			defer t.Stop()
		}
		select {
		case <-eof:
		case <-t.C:
			return
		}
	}
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

// pump copies f into c until end-of-file or a read error, then closes f and
// sends on eof.
func pump(f *os.File, c *capture, eof chan<- struct{}) {
	bp := pumpBufs.Get().(*[]byte)
	for {
		n, err := f.Read(*bp)
		if n > 0 {
			c.write((*bp)[:n])
		}
		if err != nil {
			break
		}
	}
	pumpBufs.Put(bp)
	f.Close()
	eof <- struct{}{}
}

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
