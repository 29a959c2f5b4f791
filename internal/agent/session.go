package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// A session is a persistent, non-interactive bash reading command lines
// from a pipe on its standard input. The user's command is evaluated at the
// top level of that shell, so cd, export, aliases, functions and `declare`
// all persist; its output goes to FIFOs made for the call and its standard
// input is /dev/null or a FIFO fed with the request's stdin. After the
// command, the line reports its exit status through descriptor 4.
//
// A timeout or cancellation must end the command without ending the shell,
// whose state is the session. The agent sends the shell signal 41
// (SIGRTMIN+7), whose trap arms a DEBUG trap that skips every further
// command of the line and breaks out of its loops, and interrupts then
// kills the command's processes, so that the shell gets back to the end of
// the line at once. Only a shell that still does not come back within
// killWait is killed (the session's next command gets a fresh one).

// abortSignal is the signal that makes a session shell abandon its line.
const abortSignal = syscall.Signal(41)

// shellInit is the first line every session shell reads. The helpers are
// named __sbx_*; commands named so are the only ones the abort trap lets
// run.
const shellInit = `__sbx_abort() { [[ $- == *T* ]] && __sbx_T=1; builtin shopt -q extdebug && __sbx_X=1; builtin shopt -s extdebug; builtin set -T; ` +
	`builtin trap '[[ $BASH_COMMAND == __sbx_* || ${FUNCNAME[0]} == __sbx_* ]] || { builtin break 999 2>/dev/null; false; }' DEBUG; };` +
	`__sbx_reset() { builtin trap - DEBUG; [[ -n $__sbx_T ]] || builtin set +T; [[ -n $__sbx_X ]] || builtin shopt -u extdebug; builtin unset __sbx_T __sbx_X; };` +
	`__sbx_rc() { return "${1:-0}"; };` +
	`__sbx_end() { __sbx_last=$1; __sbx_reset; builtin eval "$3"; builtin printf '%s %s\n' "$2" "$__sbx_last" >&4; };` +
	`builtin trap __sbx_abort 41;builtin shopt -s expand_aliases` + "\n"

func (a *Agent) registerSessions() {
	a.mux.HandleFunc("POST /sessions", a.handleCreateSession)
	a.mux.HandleFunc("GET /sessions", a.handleListSessions)
	a.mux.HandleFunc("DELETE /sessions/{sid}", a.handleDeleteSession)
}

func (a *Agent) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	var req api.CreateSessionRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := req.Validate(); err != nil {
		errdefs.Write(w, invalid(err))
		return
	}
	s, err := a.sessions.create(req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	// Start the shell now, so that a problem shows here and the first
	// command does not pay for the start.
	if err := s.warm(); err != nil {
		a.sessions.remove(s.id)
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusCreated, s.view())
}

func (a *Agent) handleListSessions(w http.ResponseWriter, r *http.Request) {
	errdefs.WriteJSON(w, http.StatusOK, api.SessionList{Sessions: a.sessions.list()})
}

func (a *Agent) handleDeleteSession(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("sid")
	if err := api.ValidateSessionID(sid); err != nil {
		errdefs.Write(w, invalid(err))
		return
	}
	if err := a.sessions.remove(sid); err != nil {
		errdefs.Write(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sessionTable holds the sessions of the sandbox. The default session is
// made on first use.
type sessionTable struct {
	a  *Agent
	mu sync.Mutex
	m  map[string]*session
	n  atomic.Uint64 // scope numbers
}

func (t *sessionTable) newSession(id, cwd string, env map[string]string) *session {
	if cwd == "" {
		cwd = t.a.cfg.DefaultCwd
	}
	return &session{a: t.a, id: id, cwd: cwd, env: env, createdAt: time.Now().UTC(),
		scope: "s" + strconv.FormatUint(t.n.Add(1), 10)}
}

// get returns session id; the default session always exists.
func (t *sessionTable) get(id string) (*session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.m[id]; s != nil {
		return s, nil
	}
	if id == api.DefaultSession {
		s := t.newSession(id, "", nil)
		t.m[id] = s
		return s, nil
	}
	return nil, fmt.Errorf("%w: no session %q in this sandbox; create it with POST /sessions or use %q",
		errdefs.ErrSessionNotFound, id, api.DefaultSession)
}

func (t *sessionTable) create(req api.CreateSessionRequest) (*session, error) {
	if req.Cwd != "" {
		if err := checkDir(req.Cwd); err != nil {
			return nil, err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if req.ID == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		req.ID = "session-" + hex.EncodeToString(b)
	}
	if t.m[req.ID] != nil {
		return nil, fmt.Errorf("%w: session %q already exists; delete it first or pick another id", errdefs.ErrConflict, req.ID)
	}
	s := t.newSession(req.ID, req.Cwd, maps.Clone(req.Env))
	t.m[req.ID] = s
	return s, nil
}

// remove ends session id: its shell, its terminal and every process
// started in it. Removing the default session resets it.
func (t *sessionTable) remove(id string) error {
	t.mu.Lock()
	s := t.m[id]
	if s == nil && id != api.DefaultSession {
		t.mu.Unlock()
		return fmt.Errorf("%w: no session %q in this sandbox", errdefs.ErrSessionNotFound, id)
	}
	delete(t.m, id)
	t.mu.Unlock()
	if s != nil {
		s.close()
	}
	return nil
}

func (t *sessionTable) list() []api.Session {
	t.mu.Lock()
	ss := slices.Collect(maps.Values(t.m))
	t.mu.Unlock()
	if !slices.ContainsFunc(ss, func(s *session) bool { return s.id == api.DefaultSession }) {
		if s, err := t.get(api.DefaultSession); err == nil {
			ss = append(ss, s)
		}
	}
	out := make([]api.Session, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.view())
	}
	slices.SortFunc(out, func(x, y api.Session) int { return strings.Compare(x.ID, y.ID) })
	return out
}

// session is one persistent shell and what belongs to it.
type session struct {
	a         *Agent
	id        string
	scope     string // tag scope of everything started in the session
	cwd       string
	env       map[string]string
	createdAt time.Time
	calls     atomic.Uint64

	lock fifoLock // one command at a time, in arrival order

	mu     sync.Mutex
	sh     *shell // nil before the first command and after the shell ended
	busy   bool
	term   *terminal
	closed bool
}

// shell is a running session shell.
type shell struct {
	p      *process
	ctl    *os.File           // the shell's standard input
	status chan shellStatus   // from descriptor 4; closed at end-of-file
	dir    string             // where the call FIFOs go
	envVer uint64             // version of the sandbox env it has applied
	env    map[string]*string // the sandbox env overlay it has applied
}

type shellStatus struct {
	call uint64
	code int
}

func (s *session) view() api.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := api.Session{ID: s.id, Cwd: s.cwd, Env: s.env, CreatedAt: s.createdAt, Busy: s.busy, Terminal: s.term != nil}
	if s.sh != nil {
		v.Pid = s.sh.p.pid
	}
	return v
}

func (s *session) warm() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.shellLocked()
	return err
}

// shellLocked returns the running shell, starting a fresh one if there is
// none or it has ended. Caller holds s.mu.
func (s *session) shellLocked() (*shell, error) {
	if s.closed {
		return nil, fmt.Errorf("%w: session %q was deleted", errdefs.ErrSessionNotFound, s.id)
	}
	if s.sh != nil {
		select {
		case <-s.sh.p.Done():
			s.sh.release()
			s.sh = nil
		default:
			return s.sh, nil
		}
	}
	sh, err := s.startShell()
	if err != nil {
		return nil, err
	}
	s.sh = sh
	return sh, nil
}

func (s *session) startShell() (*shell, error) {
	a := s.a
	dir := filepath.Join(a.runDir, s.scope)
	if err := a.makeRunDir(); err != nil {
		return nil, fmt.Errorf("session directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("session directory: %w", err)
	}
	null, err := devNull()
	if err != nil {
		return nil, err
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stR, stW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	base, overlay, ver := a.env.state()
	cwd := s.cwd
	if checkDir(cwd) != nil {
		cwd = "/" // the session's directory was removed since
	}
	p, err := startProcess(&startSpec{
		path:  a.cfg.Shell,
		argv:  []string{"bash", "--norc", "--noprofile", "-s"},
		env:   mergeEnv(base, s.env, a.tagEnv(s.scope)),
		dir:   cwd,
		files: []*os.File{ctlR, null, null, null, stW},
	})
	ctlR.Close()
	stW.Close()
	if err != nil {
		ctlW.Close()
		stR.Close()
		return nil, startError(a.cfg.Shell, err)
	}
	sh := &shell{p: p, ctl: ctlW, status: make(chan shellStatus, 16), dir: dir, envVer: ver, env: overlay}
	go sh.readStatus(stR)
	if _, err := ctlW.WriteString(shellInit); err != nil {
		sh.kill()
		return nil, fmt.Errorf("session shell did not start: %w", err)
	}
	return sh, nil
}

// readStatus forwards the status lines the shell writes on descriptor 4.
func (sh *shell) readStatus(f *os.File) {
	defer close(sh.status)
	defer f.Close()
	br := bufio.NewReader(f)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		id, code, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		n, err1 := strconv.ParseUint(id, 10, 64)
		c, err2 := strconv.Atoi(code)
		if err1 == nil && err2 == nil {
			sh.status <- shellStatus{call: n, code: c}
		}
	}
}

// kill ends the shell and the processes in its group.
func (sh *shell) kill() {
	_ = sh.p.signalGroup(syscall.SIGKILL)
	sh.release()
}

// release closes the agent's end of the shell's input.
func (sh *shell) release() { sh.ctl.Close() }

// close ends the session: its shell, its terminal and every process started
// in it.
func (s *session) close() {
	s.mu.Lock()
	s.closed = true
	sh, term := s.sh, s.term
	s.sh, s.term = nil, nil
	s.mu.Unlock()
	s.a.procs.markSessionKilled(s.id)
	var roots func() []int
	if sh != nil {
		pid := sh.p.pid
		roots = func() []int { return []int{pid} }
		_ = sh.p.signalGroup(syscall.SIGKILL)
	}
	if term != nil {
		term.shutdown()
	}
	s.a.killScope(s.scope, roots, syscall.SIGKILL, 0)
	if sh != nil {
		sh.release()
	}
	_ = os.RemoveAll(filepath.Join(s.a.runDir, s.scope))
}

// run runs c in the session after the commands that came before it.
func (s *session) run(ctx context.Context, c *command, sink outputSink, started func(pid int)) (*outcome, error) {
	if err := s.lock.acquire(ctx); err != nil {
		return nil, fmt.Errorf("%w: request cancelled while waiting for the session's previous command: %v", errdefs.ErrUnavailable, err)
	}
	defer s.lock.release()
	s.mu.Lock()
	sh, err := s.shellLocked()
	if err == nil {
		s.busy = true
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	defer func() {
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
	}()
	return s.runIn(ctx, sh, c, sink, started)
}

func (s *session) runIn(ctx context.Context, sh *shell, c *command, sink outputSink, started func(pid int)) (*outcome, error) {
	n := s.calls.Add(1)
	ns := strconv.FormatUint(n, 10)
	callScope := s.scope + ".c" + ns

	var cleanup []func()
	defer func() {
		for _, f := range slices.Backward(cleanup) {
			f()
		}
	}()
	outs := [2]string{filepath.Join(sh.dir, "o"+ns), filepath.Join(sh.dir, "e"+ns)}
	var readers, holds [2]*os.File
	for i, path := range outs {
		r, hold, err := openFIFO(path)
		if err != nil {
			for j := range i {
				readers[j].Close()
				holds[j].Close()
			}
			return nil, fmt.Errorf("session output: %w", err)
		}
		cleanup = append(cleanup, func() { os.Remove(path) })
		readers[i], holds[i] = r, hold
	}
	closeHolds := func() {
		for i, h := range holds {
			if h != nil {
				h.Close()
				holds[i] = nil
			}
		}
	}
	cleanup = append(cleanup, closeHolds)
	stdinPath := ""
	if c.stdin != nil {
		stdinPath = filepath.Join(sh.dir, "i"+ns)
		if err := syscall.Mkfifo(stdinPath, 0o600); err != nil {
			readers[stdout].Close()
			readers[stderr].Close()
			return nil, fmt.Errorf("session input: %w", err)
		}
		stop := feedFIFO(stdinPath, *c.stdin)
		cleanup = append(cleanup, func() { stop(); os.Remove(stdinPath) })
	}

	line := s.line(sh, ns, callScope, c, outs, stdinPath)
	// The shell's children now are earlier calls' jobs; those that come
	// are this call's.
	before := childrenOf(sh.p.pid)
	start := time.Now()
	pumps := startPumps(readers[stdout], readers[stderr], sink)
	if started != nil {
		started(sh.p.pid)
	}
	// If the shell is gone the write fails; its end is reported below.
	_, _ = sh.ctl.WriteString(line)

	var timeout <-chan time.Time
	if c.timeout > 0 {
		t := time.NewTimer(c.timeout)
		defer t.Stop()
		timeout = t.C
	}
	var (
		code                int
		got, dead           bool
		timedOut, cancelled bool
	)
wait:
	for {
		select {
		case st, ok := <-sh.status:
			if !ok {
				dead = true
				break wait
			}
			if st.call == n {
				code, got = st.code, true
				break wait
			}
		case <-sh.p.Done():
			dead = true
			break wait
		case <-timeout:
			timedOut = true
			break wait
		case <-ctx.Done():
			cancelled = true
			break wait
		}
	}
	if dead {
		// A status may have been written just before the shell died.
		code, got = drainStatus(sh, n)
	}
	if timedOut || cancelled {
		code, got, dead = s.interrupt(sh, n, callScope, before)
	}
	duration := time.Since(start)
	if dead {
		s.mu.Lock()
		if s.sh == sh {
			s.sh = nil
		}
		s.mu.Unlock()
		sh.kill()
	}
	// The shell has closed its ends of the FIFOs; once ours are closed
	// too, end-of-file comes as soon as background jobs let go.
	closeHolds()
	pumps.wait(pipeGrace)
	sink.detach()

	switch {
	case cancelled:
		return nil, fmt.Errorf("%w: command killed because its request was cancelled (client gone or agent shutting down): %v",
			errdefs.ErrUnavailable, context.Cause(ctx))
	case timedOut:
		return &outcome{exitCode: api.ExitCodeTimedOut, timedOut: true, duration: duration}, nil
	case !got:
		select {
		case <-sh.p.Done():
		case <-time.After(killWait):
		}
		st := sh.p.Status()
		return nil, fmt.Errorf("%w: session %q ended during this command: its shell exited with code %d (the command ran `exit`, or the shell was killed); the session's next command starts a fresh shell",
			errdefs.ErrSessionTerminated, s.id, exitCode(st))
	}
	return &outcome{exitCode: code, duration: duration}, nil
}

// drainStatus looks for call n's status among those the dead shell wrote.
func drainStatus(sh *shell, n uint64) (int, bool) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		select {
		case st, ok := <-sh.status:
			if !ok {
				return 0, false
			}
			if st.call == n {
				return st.code, true
			}
		case <-t.C:
			return 0, false
		}
	}
}

// interrupt stops call n: the shell abandons the rest of the line, the
// call's processes get SIGINT, as from ^C, and SIGKILL if they outlive it.
// If the shell does not get back to the end of the line within killWait, it
// is killed and dead is true. Either way no process of the call is left.
func (s *session) interrupt(sh *shell, n uint64, callScope string, before []int) (code int, got, dead bool) {
	a := s.a
	// Subshells the call forked carry the shell's own tag, not the
	// call's: they are the shell's children that were not there before.
	roots := func() []int {
		return slices.DeleteFunc(childrenOf(sh.p.pid), func(pid int) bool { return slices.Contains(before, pid) })
	}
	waitStatus := func(d time.Duration) (int, bool, bool) {
		t := time.NewTimer(d)
		defer t.Stop()
		for {
			select {
			case st, ok := <-sh.status:
				if !ok {
					return 0, false, true
				}
				if st.call == n {
					return st.code, true, false
				}
			case <-sh.p.Done():
				c, ok := drainStatus(sh, n)
				return c, ok, true
			case <-t.C:
				return 0, false, false
			}
		}
	}
	_ = sh.p.signal(abortSignal)
	for _, pid := range a.scopeMembers([]string{callScope}, roots()...) {
		_ = syscall.Kill(pid, syscall.SIGINT)
	}
	code, got, dead = waitStatus(100 * time.Millisecond)
	deadline := time.Now().Add(killWait)
	for !got && !dead && time.Now().Before(deadline) {
		a.killScope(callScope, roots, syscall.SIGKILL, 0)
		code, got, dead = waitStatus(20 * time.Millisecond)
	}
	if !got && !dead {
		sh.kill()
		<-sh.p.Done()
		dead = true
	}
	a.killScope(callScope, roots, syscall.SIGKILL, 0) // its background jobs too
	return code, got, dead
}

// line renders call n as one line for the shell. What the agent adds uses
// builtins and its own helpers only, so the user's functions and aliases
// cannot change it; the user's command is a single-quoted string for eval,
// so no text in it can break out of the line.
func (s *session) line(sh *shell, n, callScope string, c *command, outs [2]string, stdinPath string) string {
	var b, restore strings.Builder
	b.WriteString("__sbx_reset;")
	// Catch up with changes to the sandbox env; these persist.
	if v := s.a.env.currentVersion(); v != sh.envVer {
		overlay, ver := s.a.env.snapshot()
		for _, k := range slices.Sorted(maps.Keys(overlay)) {
			nv, ov := overlay[k], sh.env[k]
			if hasKey(sh.env, k) && (ov == nil) == (nv == nil) && (ov == nil || *ov == *nv) {
				continue // unchanged since this shell last caught up
			}
			if nv == nil {
				fmt.Fprintf(&b, "builtin unset %s;", k)
			} else {
				fmt.Fprintf(&b, "builtin export %s=%s;", k, shQuote(*nv))
			}
		}
		sh.env, sh.envVer = overlay, ver
	}
	// Per-call cwd and env are undone after the command.
	if c.dir != "" {
		b.WriteString("__sbx_p=$PWD;")
		restore.WriteString(`builtin cd -- "$__sbx_p" 2>/dev/null;`)
	}
	for i, k := range slices.Sorted(maps.Keys(c.extra)) {
		fmt.Fprintf(&b, "__sbx_h%d=${%s+x} __sbx_v%d=${%s-};builtin export %s=%s;", i, k, i, k, k, shQuote(c.extra[k]))
		fmt.Fprintf(&restore, `if [[ -n $__sbx_h%d ]]; then %s=$__sbx_v%d; else builtin unset %s; fi;builtin unset __sbx_h%d __sbx_v%d;`, i, k, i, k, i, i)
	}
	fmt.Fprintf(&restore, "builtin export %s", s.a.tagEnv(s.scope))
	fmt.Fprintf(&b, "builtin export %s;__sbx_rc \"$__sbx_last\";{ ", s.a.tagEnv(callScope))
	if c.dir != "" {
		fmt.Fprintf(&b, "builtin cd -- %s && ", shQuote(c.dir))
	}
	fmt.Fprintf(&b, "builtin eval %s\n}", shQuote(c.script))
	if stdinPath == "" {
		b.WriteString(" </dev/null")
	} else {
		b.WriteString(" <" + shQuote(stdinPath))
	}
	fmt.Fprintf(&b, " >%s 2>%s 4>&-;__sbx_end $? %s %s\n", shQuote(outs[0]), shQuote(outs[1]), n, shQuote(restore.String()))
	return b.String()
}

func hasKey(m map[string]*string, k string) bool { _, ok := m[k]; return ok }

// shQuote quotes s for bash as one word.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// snapshot returns the session shell's working directory and exported
// environment, in order after the session's earlier commands.
func (s *session) snapshot(ctx context.Context) (string, []string, error) {
	const script = `builtin printf '%s\0' "$PWD";for __sbx_n in $(builtin compgen -e);do builtin printf '%s=%s\0' "$__sbx_n" "${!__sbx_n}";done;builtin unset __sbx_n`
	sink := &captureSink{c: [2]*capture{newCapture(16 << 20), newCapture(1 << 16)}}
	o, err := s.run(ctx, &command{script: script}, sink, nil)
	if err != nil {
		return "", nil, err
	}
	out, _ := sink.c[stdout].detach()
	if o.exitCode != 0 || out == "" {
		return "", nil, fmt.Errorf("reading the environment of session %q failed (exit %d)", s.id, o.exitCode)
	}
	parts := strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
	env := parts[1:]
	env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, tagVar+"=") })
	return parts[0], env, nil
}

// openFIFO makes a FIFO at path and opens its read end for the agent, plus
// a write end that keeps the reader from seeing end-of-file before the
// shell has opened the FIFO; the caller closes it once the shell is done.
func openFIFO(path string) (r, hold *os.File, err error) {
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		return nil, nil, err
	}
	r, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		os.Remove(path)
		return nil, nil, err
	}
	hold, err = os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		r.Close()
		os.Remove(path)
		return nil, nil, err
	}
	return r, hold, nil
}

// feedFIFO writes data into the FIFO at path once a reader opens it. stop
// abandons what is left: it unblocks a writer waiting for a reader that
// never came or for one that stopped reading.
func feedFIFO(path, data string) (stop func()) {
	done := make(chan struct{})
	var mu sync.Mutex
	var w *os.File
	go func() {
		defer close(done)
		f, err := os.OpenFile(path, os.O_WRONLY, 0) // waits for the reader
		if err != nil {
			return
		}
		mu.Lock()
		w = f
		mu.Unlock()
		_, _ = f.WriteString(data) // an error means nobody reads any more
		f.Close()
	}()
	return func() {
		select {
		case <-done:
			return
		default:
		}
		mu.Lock()
		if w != nil {
			w.Close() // interrupts the write
		}
		mu.Unlock()
		// Completes an open still waiting for a reader.
		if r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			defer r.Close()
		}
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	}
}

// fifoLock is a mutex that hands itself to waiters in arrival order.
type fifoLock struct {
	mu      sync.Mutex
	held    bool
	waiters []chan struct{}
}

func (l *fifoLock) acquire(ctx context.Context) error {
	l.mu.Lock()
	if !l.held {
		l.held = true
		l.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		if i := slices.Index(l.waiters, ch); i >= 0 {
			l.waiters = slices.Delete(l.waiters, i, i+1)
			l.mu.Unlock()
			return ctx.Err()
		}
		l.mu.Unlock()
		l.release() // it was handed over meanwhile
		return ctx.Err()
	}
}

func (l *fifoLock) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waiters) == 0 {
		l.held = false
		return
	}
	ch := l.waiters[0]
	l.waiters = l.waiters[1:]
	close(ch)
}
