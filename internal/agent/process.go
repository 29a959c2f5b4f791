package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// Background processes run `bash -c` in a process group of their own with
// their output kept in bounded logs. Their records live in the agent, so
// they outlive the requests that started them, reconnects of clients and
// restarts of sbxd.

func (a *Agent) registerProcesses() {
	a.mux.HandleFunc("POST /processes", a.handleStartProcess)
	a.mux.HandleFunc("GET /processes", a.handleListProcesses)
	a.mux.HandleFunc("DELETE /processes", a.handleKillAll)
	a.mux.HandleFunc("GET /processes/{pid}", a.handleGetProcess)
	a.mux.HandleFunc("DELETE /processes/{pid}", a.handleKillProcess)
	a.mux.HandleFunc("GET /processes/{pid}/logs", a.handleProcessLogs)
	a.mux.HandleFunc("POST /processes/{pid}/wait", a.handleWait)
}

// processTable holds the background processes of the sandbox.
type processTable struct {
	a     *Agent
	n     atomic.Uint64
	mu    sync.Mutex
	procs []*bgProcess // in start order
}

func newProcessTable(a *Agent) *processTable { return &processTable{a: a} }

// bgProcess is one background process.
type bgProcess struct {
	t         *processTable
	id        string
	command   string
	session   string
	cwd       string
	scope     string
	startedAt time.Time
	logs      *logBuffer
	done      chan struct{} // closed once it has ended and its record is final

	mu       sync.Mutex
	p        *process
	status   string
	exitCode int
	endedAt  time.Time
	errMsg   string
	killing  bool // a kill was requested: its end is "killed"
}

func (b *bgProcess) view() api.Process {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := api.Process{ID: b.id, Command: b.command, Session: b.session, Cwd: b.cwd, Status: b.status,
		StartedAt: b.startedAt, Error: b.errMsg}
	if b.p != nil {
		v.Pid = b.p.pid
	}
	if !b.endedAt.IsZero() {
		code, t := b.exitCode, b.endedAt
		v.ExitCode, v.EndedAt = &code, &t
	}
	return v
}

func (b *bgProcess) running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status == api.ProcessStarting || b.status == api.ProcessRunning
}

func (a *Agent) handleStartProcess(w http.ResponseWriter, r *http.Request) {
	var req api.StartProcessRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := req.Validate(); err != nil {
		errdefs.Write(w, invalid(err))
		return
	}
	b, err := a.procs.start(r.Context(), &req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusCreated, b.view())
}

// start starts a background process for req, already validated.
func (t *processTable) start(ctx context.Context, req *api.StartProcessRequest) (*bgProcess, error) {
	a := t.a
	n := strconv.FormatUint(t.n.Add(1), 10)
	var (
		env   []string
		cwd   = req.Cwd
		scope = "p" + n
	)
	if req.Session != "" {
		s, err := a.sessions.get(req.Session)
		if err != nil {
			return nil, err
		}
		scwd, senv, err := s.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		if cwd == "" {
			cwd = scwd
		}
		env = mergeEnv(senv, req.Env)
		scope = s.scope + ".p" + n
	} else {
		if cwd == "" {
			cwd = a.cfg.DefaultCwd
		}
		env = mergeEnv(a.env.environ(), req.Env)
	}
	if err := checkDir(cwd); err != nil {
		return nil, err
	}
	b := &bgProcess{t: t, id: req.ID, command: req.Command, session: req.Session, cwd: cwd, scope: scope,
		startedAt: time.Now().UTC(), logs: newLogBuffer(a.cfg.ProcessLogCap), done: make(chan struct{}),
		status: api.ProcessStarting}
	if err := t.add(b, n); err != nil {
		return nil, err
	}

	null, err := devNull()
	if err != nil {
		return nil, t.failed(b, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, t.failed(b, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, t.failed(b, err)
	}
	p, err := startProcess(&startSpec{
		path:  a.cfg.Shell,
		argv:  []string{"bash", "-c", req.Command},
		env:   append(env, a.tagEnv(scope)),
		dir:   cwd,
		files: []*os.File{null, outW, errW},
	})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, t.failed(b, startError(a.cfg.Shell, err))
	}
	b.mu.Lock()
	b.p, b.status = p, api.ProcessRunning
	b.mu.Unlock()
	go b.watch(startPumps(outR, errR, b.logs))
	return b, nil
}

// add records b under its id, generating one if needed. An id in use by a
// running process is a conflict; the record of an ended one is replaced.
func (t *processTable) add(b *bgProcess, n string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b.id == "" {
		b.id = "proc-" + n
	}
	for i, o := range t.procs {
		if o.id != b.id {
			continue
		}
		if o.running() {
			return fmt.Errorf("%w: process %q is still running; kill it first or pick another id", errdefs.ErrConflict, b.id)
		}
		t.procs = slices.Delete(t.procs, i, i+1)
		break
	}
	t.procs = append(t.procs, b)
	return nil
}

// failed records that b could not start and returns err.
func (t *processTable) failed(b *bgProcess, err error) error {
	b.mu.Lock()
	b.status, b.errMsg, b.exitCode, b.endedAt = api.ProcessFailed, err.Error(), 127, time.Now().UTC()
	b.mu.Unlock()
	b.logs.end(api.ProcessExitEvent{ExitCode: 127, Status: api.ProcessFailed})
	close(b.done)
	return err
}

// watch records the end of the process once it has exited and its output
// has reached end-of-file (or pipeGrace has passed: jobs it left behind
// may hold the pipes; their output is still logged).
func (b *bgProcess) watch(pumps *outputPumps) {
	<-b.p.Done()
	pumps.wait(pipeGrace)
	code := exitCode(b.p.Status())
	b.mu.Lock()
	b.exitCode, b.endedAt = code, time.Now().UTC()
	switch {
	case b.killing:
		b.status = api.ProcessKilled
	case code == 0:
		b.status = api.ProcessCompleted
	default:
		b.status = api.ProcessFailed
	}
	status := b.status
	b.mu.Unlock()
	b.logs.end(api.ProcessExitEvent{ExitCode: code, Status: status})
	close(b.done)
	b.t.trim()
}

// trim forgets the oldest ended processes beyond the configured number.
func (t *processTable) trim() {
	t.mu.Lock()
	defer t.mu.Unlock()
	ended := 0
	for _, p := range t.procs {
		if !p.running() {
			ended++
		}
	}
	for i := 0; ended > t.a.cfg.MaxEndedProcesses && i < len(t.procs); {
		if t.procs[i].running() {
			i++
			continue
		}
		t.procs = slices.Delete(t.procs, i, i+1)
		ended--
	}
}

// lookup finds a process by id, or by pid when ref is a number.
func (t *processTable) lookup(ref string) (*bgProcess, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.procs {
		if p.id == ref {
			return p, nil
		}
	}
	if pid, err := strconv.Atoi(ref); err == nil {
		for _, p := range slices.Backward(t.procs) {
			p.mu.Lock()
			match := p.p != nil && p.p.pid == pid
			p.mu.Unlock()
			if match {
				return p, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: no background process %q (by id or pid); list them with GET /processes", errdefs.ErrProcessNotFound, ref)
}

func (t *processTable) all() []*bgProcess {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.procs)
}

// markSessionKilled records that the processes of session sid are being
// killed with it.
func (t *processTable) markSessionKilled(sid string) {
	for _, p := range t.all() {
		if p.session == sid {
			p.mu.Lock()
			p.killing = p.status == api.ProcessRunning || p.killing
			p.mu.Unlock()
		}
	}
}

// killProcs signals the whole trees of procs with sig, escalates to
// SIGKILL after grace, and waits for them to end. Ended processes have
// what they left behind killed. One scan of /proc serves all of them, so
// killing a thousand processes costs no more scans than killing one.
func (t *processTable) killProcs(procs []*bgProcess, sig syscall.Signal, grace time.Duration) {
	var scopes []string
	var leaders []*process
	for _, b := range procs {
		b.mu.Lock()
		if b.status == api.ProcessRunning {
			b.killing = true
		}
		p := b.p
		b.mu.Unlock()
		scopes = append(scopes, b.scope)
		if p != nil {
			leaders = append(leaders, p)
			_ = p.signalGroup(sig)
		}
	}
	// Their descendants too, in case one cleared its environment.
	roots := func() []int {
		var r []int
		for _, p := range leaders {
			if !p.exited() {
				r = append(r, p.pid)
			}
		}
		return r
	}
	t.a.killScopes(scopes, roots, sig, grace)
	for _, p := range leaders {
		_ = p.signalGroup(syscall.SIGKILL)
	}
	deadline := time.NewTimer(killWait)
	defer deadline.Stop()
	for _, b := range procs {
		select {
		case <-b.done:
		case <-deadline.C:
			return
		}
	}
}

func (a *Agent) handleListProcesses(w http.ResponseWriter, r *http.Request) {
	list := api.ProcessList{Processes: []api.Process{}}
	for _, p := range a.procs.all() {
		list.Processes = append(list.Processes, p.view())
	}
	errdefs.WriteJSON(w, http.StatusOK, list)
}

// lookupProcess resolves the {pid} path parameter.
func (a *Agent) lookupProcess(r *http.Request) (*bgProcess, error) {
	ref := r.PathValue("pid")
	if err := api.ValidateProcessRef(ref); err != nil {
		return nil, invalid(err)
	}
	return a.procs.lookup(ref)
}

func (a *Agent) handleGetProcess(w http.ResponseWriter, r *http.Request) {
	b, err := a.lookupProcess(r)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, b.view())
}

// killParams reads ?signal= (default TERM) and ?graceMs=.
func (a *Agent) killParams(r *http.Request) (syscall.Signal, time.Duration, error) {
	q := r.URL.Query()
	n, err := api.ParseSignal(q.Get("signal"))
	if err != nil {
		return 0, 0, invalid(err)
	}
	sig := syscall.Signal(n)
	grace := a.cfg.KillGrace
	if g := q.Get("graceMs"); g != "" {
		ms, err := strconv.ParseInt(g, 10, 64)
		if err != nil || ms < 0 || ms > 3_600_000 {
			return 0, 0, fmt.Errorf("%w: graceMs %q: use milliseconds from 0 to 3600000", errdefs.ErrInvalidArgument, g)
		}
		grace = time.Duration(ms) * time.Millisecond
	}
	return sig, grace, nil
}

func (a *Agent) handleKillProcess(w http.ResponseWriter, r *http.Request) {
	b, err := a.lookupProcess(r)
	if err == nil {
		var sig syscall.Signal
		var grace time.Duration
		if sig, grace, err = a.killParams(r); err == nil {
			a.procs.killProcs([]*bgProcess{b}, sig, grace)
		}
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, b.view())
}

func (a *Agent) handleKillAll(w http.ResponseWriter, r *http.Request) {
	sig, grace, err := a.killParams(r)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	running := slices.DeleteFunc(a.procs.all(), func(b *bgProcess) bool { return !b.running() })
	a.procs.killProcs(running, sig, grace)
	errdefs.WriteJSON(w, http.StatusOK, api.KillAllResult{Killed: len(running)})
}

func (a *Agent) handleProcessLogs(w http.ResponseWriter, r *http.Request) {
	b, err := a.lookupProcess(r)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	switch f := r.URL.Query().Get("follow"); f {
	case "", "0", "false":
		errdefs.WriteJSON(w, http.StatusOK, b.logs.snapshot())
		return
	case "1", "true":
	default:
		errdefs.Write(w, fmt.Errorf("%w: follow=%q: use follow=1 to stream the log", errdefs.ErrInvalidArgument, f))
		return
	}
	sse := newEventStream(w)
	stop := make(chan struct{})
	defer close(stop)
	go sse.keepAlive(a.cfg.KeepAlive, stop)
	var cur logCursor
	for {
		items, ended, exit, changed := b.logs.next(&cur)
		for _, it := range items {
			var ok bool
			if it.data == nil {
				ok = sse.send(api.EventDropped, api.DroppedEvent{Stream: streamNames[it.stream], Bytes: it.dropped})
			} else {
				ok = sse.send(streamNames[it.stream], outputEvent(it.data))
			}
			if !ok {
				return
			}
		}
		if ended {
			sse.send(api.EventExit, exit)
			return
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}
