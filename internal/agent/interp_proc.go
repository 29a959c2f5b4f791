package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// An interpreter is a runner script (interp/runner.py, interp/runner.js)
// in its own process group. The agent writes commands to its fd 3 and reads
// events from its fd 4, one JSON object per line; its fds 1 and 2 are pipes
// too, for output that bypasses the runner (subprocesses, C code). The
// protocol is described at the top of runner.py.

const (
	// interpStartTimeout bounds the start of an interpreter, imports
	// included (typescript alone takes ~0.5 s of CPU).
	interpStartTimeout = 60 * time.Second
	// interruptGrace is how long code may take to stop after SIGINT before
	// its interpreter is killed.
	interruptGrace = 2 * time.Second
	// fenceWait bounds the wait for the end-of-run fences on fds 1 and 2,
	// which the runner wrote before it reported the run done.
	fenceWait = time.Second
	// drainWait bounds the wait for the last output of an interpreter
	// that exited: a process it left behind may hold its pipes open.
	drainWait = 200 * time.Millisecond
	// maxEventLine bounds one event line (a large image is a few MiB).
	maxEventLine = 256 << 20
)

// interpMsg is one protocol line in either direction.
type interpMsg struct {
	Type    string            `json:"type"`
	ID      int64             `json:"id,omitempty"`
	Code    string            `json:"code,omitempty"`
	Cwd     string            `json:"cwd,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Text    string            `json:"text,omitempty"`
	Result  *api.CodeResult   `json:"result,omitempty"`
	Error   *api.CodeError    `json:"error,omitempty"`
	Count   int               `json:"count,omitempty"`
	Fences  int               `json:"fences,omitempty"`
	Message string            `json:"message,omitempty"`
}

// runSink receives the output of one run. Calls are serialized by the
// interpreter.
type runSink interface {
	output(stream, text string) // api.CodeEventStdout or api.CodeEventStderr
	result(r *api.CodeResult)
	codeError(e *api.CodeError)
}

// interp is one running interpreter process.
type interp struct {
	lang  *language
	proc  *process
	cmdW  *os.File
	fence []byte

	ctl    chan interpMsg // control events: ready, unavailable, inited, done
	fences chan int       // fd (1 or 2) whose fence was read
	dead   chan struct{}  // closed once the process exited and its output is drained

	mu       sync.Mutex // guards the fields below; serializes sink calls
	sink     runSink
	runID    int64
	lastID   int64
	ready    bool
	startLog []byte // output before the runner was ready, for start errors
}

// startInterp starts lang's runner from dir with env and waits until it is
// ready. A runner that reports the language unavailable, or a missing
// interpreter binary, is an errdefs.ErrInterpreterNotAvailable.
func startInterp(ctx context.Context, lang *language, scriptDir string, env []string, dir string) (*interp, error) {
	bin, err := lang.lookPath()
	if err != nil {
		return nil, err
	}
	var token [12]byte
	rand.Read(token[:])
	fence := "\x1esbx-fence-" + hex.EncodeToString(token[:]) + "\x1e"

	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	outR, outW, err := pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		return nil, err
	}
	cmdR, cmdW, err := pipe()
	if err != nil {
		return nil, err
	}
	evR, evW, err := pipe()
	if err != nil {
		return nil, err
	}
	stdin, err := devNull()
	if err != nil {
		return nil, err
	}
	p, err := startProcess(&startSpec{
		path:  bin,
		argv:  lang.argv(bin, scriptDir),
		env:   append(env, "SBX_INTERP_FENCE="+fence),
		dir:   dir,
		files: []*os.File{stdin, outW, errW, cmdR, evW},
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", lang.name, startError(bin, err))
	}
	// The parent keeps its ends only; the deferred close takes the rest.
	files = []*os.File{outW, errW, cmdR, evW}
	ip := &interp{
		lang: lang, proc: p, cmdW: cmdW, fence: []byte(fence),
		ctl:    make(chan interpMsg, 4),
		fences: make(chan int, 4),
		dead:   make(chan struct{}),
	}
	var readers sync.WaitGroup
	readers.Add(3)
	go func() { defer readers.Done(); ip.readEvents(evR) }()
	go func() { defer readers.Done(); ip.pump(outR, 1) }()
	go func() { defer readers.Done(); ip.pump(errR, 2) }()
	go func() {
		<-p.Done()
		drained := make(chan struct{})
		go func() { readers.Wait(); close(drained) }()
		t := time.NewTimer(drainWait)
		select {
		case <-drained:
		case <-t.C:
			// A process the code left behind holds the pipes; closing
			// our ends ends the readers.
			evR.Close()
			outR.Close()
			errR.Close()
		}
		t.Stop()
		cmdW.Close()
		close(ip.dead)
	}()

	ctx, cancel := context.WithTimeout(ctx, interpStartTimeout)
	defer cancel()
	msg, err := ip.await(ctx, "ready", "unavailable")
	if err == nil && msg.Type == "unavailable" {
		err = fmt.Errorf("%w: %s contexts are not available in this sandbox: %s; %s",
			errdefs.ErrInterpreterNotAvailable, lang.name, msg.Message, lang.hint)
	}
	if err != nil {
		ip.kill()
		return nil, err
	}
	ip.mu.Lock()
	ip.ready, ip.startLog = true, nil
	ip.mu.Unlock()
	return ip, nil
}

// await waits for a control event of one of the types, the process's
// death or ctx.
func (ip *interp) await(ctx context.Context, types ...string) (interpMsg, error) {
	for {
		select {
		case m := <-ip.ctl:
			for _, t := range types {
				if m.Type == t {
					return m, nil
				}
			}
		case <-ip.dead:
			return interpMsg{}, fmt.Errorf("%s interpreter exited (%s)%s", ip.lang.name, describeExit(ip.proc.Status()), ip.startOutput())
		case <-ctx.Done():
			return interpMsg{}, fmt.Errorf("%w: waiting for the %s interpreter: %v", errdefs.ErrUnavailable, ip.lang.name, context.Cause(ctx))
		}
	}
}

// startOutput is what the interpreter wrote to stderr before it was ready,
// for the error that says why it did not start.
func (ip *interp) startOutput() string {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	s := strings.TrimSpace(string(ip.startLog))
	if s == "" {
		return ""
	}
	return ": " + s
}

// send writes one command line.
func (ip *interp) send(m interpMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = ip.cmdW.Write(append(b, '\n'))
	return err
}

// init applies a context's working directory and environment (the whole
// of it: variables not in env are removed) to a started interpreter.
func (ip *interp) init(ctx context.Context, cwd string, env map[string]string) error {
	if err := ip.send(interpMsg{Type: "init", Cwd: cwd, Env: env}); err != nil {
		return fmt.Errorf("%s interpreter: %w", ip.lang.name, err)
	}
	_, err := ip.await(ctx, "inited")
	return err
}

// alive reports whether the process is still running.
func (ip *interp) alive() bool {
	select {
	case <-ip.proc.Done():
		return false
	default:
		return true
	}
}

// kill kills the interpreter's process group and waits (briefly) until
// it is gone.
func (ip *interp) kill() {
	_ = ip.proc.signalGroup(syscall.SIGKILL)
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-ip.dead:
	case <-t.C:
	}
}

// interrupt sends SIGINT to the interpreter process alone: the runner turns
// it into KeyboardInterrupt (or a JavaScript error), and the code decides
// what happens to the processes it started. It takes the reaper's lock, as
// signalGroup does, so the pid cannot have been reused.
func (ip *interp) interrupt() {
	p := ip.proc
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if !p.reaped {
		_ = syscall.Kill(p.pid, syscall.SIGINT)
	}
}

// runOutcome is how a run ended.
type runOutcome struct {
	count    int  // the runner's execution count
	timedOut bool // the timeout expired and the run was interrupted
	// crashed is set when the interpreter died: by itself, or killed
	// because it ignored the interrupt. It is then unusable.
	crashed  bool
	exitDesc string
	// undelivered says the interpreter died before the code reached it:
	// nothing ran.
	undelivered bool
}

// run runs code and feeds its output to sink. It returns when the runner
// reports the run done, or the interpreter died. The timeout (0: none) and
// ctx interrupt the run; if the code ignores the interrupt for
// interruptGrace the interpreter is killed. A ctx error is returned only
// when ctx ended the run.
func (ip *interp) run(ctx context.Context, code string, timeout time.Duration, sink runSink) (runOutcome, error) {
	ip.mu.Lock()
	ip.lastID++
	id := ip.lastID
	ip.sink, ip.runID = sink, id
	ip.mu.Unlock()
	defer func() {
		ip.mu.Lock()
		ip.sink, ip.runID = nil, 0
		ip.mu.Unlock()
	}()
	// Fences left over from a run whose wait gave up must not end this one.
	for len(ip.fences) > 0 {
		<-ip.fences
	}
	if err := ip.send(interpMsg{Type: "run", ID: id, Code: code}); err != nil {
		// It died before the run, after the caller last looked.
		return runOutcome{crashed: true, undelivered: true}, nil
	}

	var out runOutcome
	var timeoutC, graceC <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timeoutC = t.C
	}
	grace := time.NewTimer(interruptGrace)
	grace.Stop()
	defer grace.Stop()
	ctxDone := ctx.Done()
	var ctxErr error
	interrupt := func() {
		ip.interrupt()
		if graceC == nil {
			grace.Reset(interruptGrace)
			graceC = grace.C
		}
	}
	started := false
	for {
		select {
		case m := <-ip.ctl:
			switch {
			case m.ID != id:
			case m.Type == "started":
				started = true
			case m.Type == "done":
				out.count = m.Count
				ip.awaitFences(m.Fences)
				return out, ctxErr
			}
		case <-ip.dead:
			out.crashed = true
			// Killed before the runner read the code (kill -9 is not
			// instant): nothing ran.
			out.undelivered = !started
			out.exitDesc = describeExit(ip.proc.Status())
			return out, ctxErr
		case <-timeoutC:
			timeoutC = nil
			out.timedOut = true
			interrupt()
		case <-ctxDone:
			ctxDone = nil
			ctxErr = context.Cause(ctx)
			interrupt()
		case <-graceC:
			graceC = nil
			ip.kill()
		}
	}
}

// awaitFences waits for the fences of the fds in mask (1|2) to be read.
func (ip *interp) awaitFences(mask int) {
	if mask == 0 {
		return
	}
	t := time.NewTimer(fenceWait)
	defer t.Stop()
	for mask != 0 {
		select {
		case fd := <-ip.fences:
			mask &^= fd
		case <-ip.dead:
			return
		case <-t.C:
			return
		}
	}
}

// deliver calls fn with the sink of run id (0: whatever run is current),
// if that run is still current.
func (ip *interp) deliver(id int64, fn func(runSink)) {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	if ip.sink != nil && (id == 0 || id == ip.runID) {
		fn(ip.sink)
	}
}

// readEvents reads the event channel until end-of-file.
func (ip *interp) readEvents(f *os.File) {
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(line)+len(chunk) > maxEventLine {
				// A runner gone mad; nothing sensible follows.
				ip.proc.signalGroup(syscall.SIGKILL)
				_, _ = io.Copy(io.Discard, br)
				return
			}
			line = append(line, chunk...)
			continue
		}
		if err != nil {
			return
		}
		if len(line) > 0 {
			line = append(line, chunk...)
			chunk, line = line, nil
		}
		var m interpMsg
		if err := json.Unmarshal(chunk, &m); err != nil {
			continue // not ours: code that wrote to fd 4 itself
		}
		switch m.Type {
		case "stdout", "stderr":
			ip.deliver(m.ID, func(s runSink) { s.output(m.Type, m.Text) })
		case "result":
			if m.Result != nil {
				ip.deliver(m.ID, func(s runSink) { s.result(m.Result) })
			}
		case "error":
			if m.Error != nil {
				ip.deliver(m.ID, func(s runSink) { s.codeError(m.Error) })
			}
		default:
			select {
			case ip.ctl <- m:
			default:
				// Nobody waits for it (a stale done); drop the oldest.
				select {
				case <-ip.ctl:
				default:
				}
				ip.ctl <- m
			}
		}
	}
}

// pump reads fd 1 or 2 of the interpreter until end-of-file: output of the
// current run goes to its sink, the fence the runner writes at the end of
// each run is reported on ip.fences, and output between runs is dropped.
func (ip *interp) pump(f *os.File, fd int) {
	defer f.Close()
	stream := api.CodeEventStdout
	if fd == 2 {
		stream = api.CodeEventStderr
	}
	emit := func(b []byte) {
		if len(b) == 0 {
			return
		}
		ip.mu.Lock()
		if !ip.ready {
			// Keep the tail for the error that says why it did not start.
			ip.startLog = append(ip.startLog, b...)
			if len(ip.startLog) > 4096 {
				ip.startLog = ip.startLog[len(ip.startLog)-4096:]
			}
		}
		if ip.sink != nil {
			ip.sink.output(stream, string(b))
		}
		ip.mu.Unlock()
	}
	buf := make([]byte, 32<<10)
	var pending []byte
	for {
		n, err := f.Read(buf)
		if n > 0 {
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.Index(pending, ip.fence)
				if i < 0 {
					break
				}
				emit(pending[:i])
				pending = pending[i+len(ip.fence):]
				select {
				case ip.fences <- fd:
				default:
				}
			}
			// Hold back what may be the start of a fence or of a UTF-8
			// sequence; the next read completes it.
			keep := max(fencePrefixLen(pending, ip.fence), partialRuneLen(pending))
			emit(pending[:len(pending)-keep])
			pending = append(pending[:0:0], pending[len(pending)-keep:]...)
		}
		if err != nil {
			emit(pending)
			return
		}
	}
}

// fencePrefixLen is the length of the longest suffix of b that is a proper
// prefix of fence.
func fencePrefixLen(b, fence []byte) int {
	for n := min(len(b), len(fence)-1); n > 0; n-- {
		if bytes.Equal(b[len(b)-n:], fence[:n]) {
			return n
		}
	}
	return 0
}

// partialRuneLen is the length of an incomplete UTF-8 sequence at the end
// of b.
func partialRuneLen(b []byte) int {
	for n := 1; n <= min(len(b), utf8.UTFMax-1); n++ {
		c := b[len(b)-n]
		if c < 0x80 {
			return 0 // ASCII: nothing pending
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-n:]) {
				return n
			}
			return 0
		}
	}
	return 0
}

// describeExit says how an interpreter process ended.
func describeExit(ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		return "killed by SIGKILL; if nothing sent it, the sandbox ran out of memory"
	case ws.Signaled():
		return "killed by " + ws.Signal().String()
	default:
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	}
}
