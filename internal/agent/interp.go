package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// The code interpreter: stateful Python, JavaScript and TypeScript contexts,
// each one long-lived interpreter process (see interp_proc.go), fed code by
// POST /code and answering with notebook-style rich results.

//go:embed interp/runner.py interp/runner.js
var runnerScripts embed.FS

const (
	// defaultCodeDir is where the runner scripts are written when the
	// agent has no run directory.
	defaultCodeDir = "/run/sbx-agent/interp"
	// maxContexts bounds the contexts of one sandbox; each is a process.
	maxContexts = 64
	// defaultContextPrefix names the context a run without a context id
	// uses: "default-python" and so on.
	defaultContextPrefix = "default-"
)

// language says how to start the runner of one language.
type language struct {
	name   string
	bin    string // interpreter on $PATH
	script string // runner file in interp/
	args   []string
	hint   string // how to get the language, for INTERPRETER_NOT_AVAILABLE
}

var languages = map[string]*language{
	api.LanguagePython: {
		name: api.LanguagePython, bin: "python3", script: "runner.py",
		hint: `python contexts need python3 with IPython: create the sandbox with "image": "python", or install IPython in it (pip install ipython)`,
	},
	api.LanguageJavaScript: {
		name: api.LanguageJavaScript, bin: "node", script: "runner.js", args: []string{api.LanguageJavaScript},
		hint: "javascript contexts need node 16 or later on $PATH",
	},
	api.LanguageTypeScript: {
		name: api.LanguageTypeScript, bin: "node", script: "runner.js", args: []string{api.LanguageTypeScript},
		hint: `typescript contexts need node and the typescript package: create the sandbox with "image": "python", or run npm install -g typescript in it`,
	},
}

// lookPath finds the language's interpreter on the agent's $PATH.
func (l *language) lookPath() (string, error) {
	p, err := exec.LookPath(l.bin)
	if err != nil {
		return "", fmt.Errorf("%w: %s contexts are not available in this sandbox: %s is not installed in its image; %s",
			errdefs.ErrInterpreterNotAvailable, l.name, l.bin, l.hint)
	}
	return p, nil
}

func (l *language) argv(bin, scriptDir string) []string {
	argv := []string{bin}
	if l.bin == "node" {
		// For the REPL's top-level await rewriting, and for import()
		// from code run by the vm module; see runner.js.
		argv = append(argv, "--expose-internals", "--experimental-vm-modules")
	}
	argv = append(argv, filepath.Join(scriptDir, l.script))
	return append(argv, l.args...)
}

// codeManager owns the contexts of the agent and the pools of started
// interpreters that new contexts take from.
type codeManager struct {
	cfg codeConfig
	log *slog.Logger

	scriptsMu sync.Mutex // serializes writing the runner scripts

	// life ends with close; it cancels the starts of pool interpreters,
	// which fillers tracks.
	life    context.Context
	end     context.CancelFunc
	fillers sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	contexts map[string]*codeContext
	pools    map[string]*interpPool
	closed   bool
}

// codeConfig configures a codeManager.
type codeConfig struct {
	defaultCwd string
	// pool is how many idle interpreters each language keeps started
	// (after its first use); 0 or less: none.
	pool int
	// dir receives the runner scripts.
	dir string
	// environ returns the sandbox's environment, which a new context
	// starts from (PATCH /env changes it).
	environ func() []string
	// outputCap bounds the logs of a non-streaming run, in bytes.
	outputCap int64
}

// interpPool holds started, idle interpreters of one language. It is
// filled after the language's first use, not at agent start: interpreters
// cost memory and start-up CPU that most sandboxes never need.
type interpPool struct {
	idle    []*interp
	filling bool
}

func newCodeManager(cfg codeConfig) *codeManager {
	m := &codeManager{
		cfg:      cfg,
		log:      slog.Default().With("component", "code"),
		contexts: make(map[string]*codeContext),
		pools:    make(map[string]*interpPool),
	}
	m.life, m.end = context.WithCancel(context.Background())
	return m
}

// registerCode adds the code interpreter's routes. It needs the state
// registerExec sets up.
func (a *Agent) registerCode() {
	cfg := codeConfig{
		defaultCwd: a.cfg.DefaultCwd, pool: a.cfg.CodePool, dir: a.cfg.CodeDir,
		environ: a.env.environ, outputCap: a.cfg.OutputCap,
	}
	switch {
	case cfg.pool == 0:
		cfg.pool = 1
	case cfg.pool < 0:
		cfg.pool = 0
	}
	if cfg.dir == "" && a.runDir != "" {
		cfg.dir = filepath.Join(a.runDir, "interp")
	}
	if cfg.dir == "" {
		cfg.dir = defaultCodeDir
	}
	newCodeManager(cfg).register(a.mux)
}

func (m *codeManager) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /contexts", m.handleCreate)
	mux.HandleFunc("GET /contexts", m.handleList)
	mux.HandleFunc("GET /contexts/{cid}", m.handleGet)
	mux.HandleFunc("DELETE /contexts/{cid}", m.handleDelete)
	mux.HandleFunc("POST /code", m.handleRun)
}

// close kills every interpreter. The manager accepts nothing afterwards.
func (m *codeManager) close() {
	m.end()
	m.mu.Lock()
	m.closed = true
	var ips []*interp
	for _, c := range m.contexts {
		if ip := c.detach(); ip != nil {
			ips = append(ips, ip)
		}
	}
	for _, p := range m.pools {
		ips = append(ips, p.idle...)
		p.idle = nil
	}
	m.contexts = map[string]*codeContext{}
	m.mu.Unlock()
	for _, ip := range ips {
		ip.kill()
	}
	m.fillers.Wait()
}

// writeScripts makes sure the runner scripts are in m.cfg.dir, unchanged: the
// sandbox's root may have removed or edited them.
func (m *codeManager) writeScripts() error {
	m.scriptsMu.Lock()
	defer m.scriptsMu.Unlock()
	if err := os.MkdirAll(m.cfg.dir, 0o700); err != nil {
		return fmt.Errorf("code interpreter: %w", err)
	}
	for _, name := range []string{"runner.py", "runner.js"} {
		want, _ := runnerScripts.ReadFile("interp/" + name)
		path := filepath.Join(m.cfg.dir, name)
		if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, want, 0o600); err != nil {
			return fmt.Errorf("code interpreter: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("code interpreter: %w", err)
		}
	}
	return nil
}

// start starts an interpreter of lang in the default working directory.
func (m *codeManager) start(ctx context.Context, lang *language) (*interp, error) {
	if err := m.writeScripts(); err != nil {
		return nil, err
	}
	return startInterp(ctx, lang, m.cfg.dir, m.cfg.environ(), m.cfg.defaultCwd)
}

// take returns a started interpreter of lang set up with cwd and env (the
// whole environment), from the pool when it has one, and has the pool
// refilled.
func (m *codeManager) take(ctx context.Context, lang *language, cwd string, env map[string]string) (*interp, error) {
	var ip *interp
	m.mu.Lock()
	p := m.pools[lang.name]
	if p == nil {
		p = &interpPool{}
		m.pools[lang.name] = p
	}
	for ip == nil && len(p.idle) > 0 {
		ip, p.idle = p.idle[0], p.idle[1:]
		if !ip.alive() {
			go ip.kill()
			ip = nil
		}
	}
	m.mu.Unlock()
	if ip == nil {
		var err error
		if ip, err = m.start(ctx, lang); err != nil {
			return nil, err
		}
	}
	err := ip.init(ctx, cwd, env)
	// Refill after the init: starting a process now would compete with it.
	m.refill(lang)
	if err != nil {
		ip.kill()
		return nil, err
	}
	return ip, nil
}

// refill starts interpreters of lang in the background until its pool
// holds cfg.pool of them.
func (m *codeManager) refill(lang *language) {
	m.mu.Lock()
	p := m.pools[lang.name]
	if m.cfg.pool <= 0 || p.filling || m.closed || len(p.idle) >= m.cfg.pool {
		m.mu.Unlock()
		return
	}
	p.filling = true
	m.fillers.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.fillers.Done()
		defer func() {
			m.mu.Lock()
			p.filling = false
			m.mu.Unlock()
		}()
		for {
			ip, err := m.start(m.life, lang)
			if err != nil {
				if m.life.Err() == nil {
					m.log.Warn("pre-starting an interpreter failed", "language", lang.name, "err", err)
				}
				return
			}
			m.mu.Lock()
			if m.closed {
				m.mu.Unlock()
				ip.kill()
				return
			}
			p.idle = append(p.idle, ip)
			full := len(p.idle) >= m.cfg.pool
			m.mu.Unlock()
			if full {
				return
			}
		}
	}()
}

// codeContext is one context: a language, a working directory and an
// environment, and the interpreter that currently runs its code.
type codeContext struct {
	info api.CodeContext
	lang *language
	cwd  string
	env  map[string]string
	// sem serializes runs and interpreter (re)starts.
	sem chan struct{}

	mu      sync.Mutex // guards the fields below
	ip      *interp    // nil: none started, or the last one died
	deleted bool
	// used says an interpreter has run code here, so a new one loses
	// state; lost says the next run must report it.
	used, lost bool
	count      int // the last execution count
}

// detach removes and returns the context's interpreter and marks the
// context deleted.
func (c *codeContext) detach() *interp {
	c.mu.Lock()
	defer c.mu.Unlock()
	ip := c.ip
	c.ip, c.deleted = nil, true
	return ip
}

// acquire waits for the context's turn.
func (c *codeContext) acquire(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: request ended while waiting for an earlier run in context %s: %v",
			errdefs.ErrUnavailable, c.info.ID, context.Cause(ctx))
	}
}

func (c *codeContext) release() { <-c.sem }

// ensure returns the context's live interpreter, starting one if there is
// none, and whether state was lost on the way. The caller holds sem.
func (m *codeManager) ensure(ctx context.Context, c *codeContext) (*interp, bool, error) {
	c.mu.Lock()
	ip, deleted := c.ip, c.deleted
	c.mu.Unlock()
	if deleted {
		return nil, false, contextNotFound(c.info.ID)
	}
	if ip != nil && ip.alive() {
		return ip, false, nil
	}
	if ip != nil {
		go ip.kill() // reap the rest of its process group
	}
	ip, err := m.take(ctx, c.lang, c.cwd, c.env)
	if err != nil {
		return nil, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleted {
		go ip.kill()
		return nil, false, contextNotFound(c.info.ID)
	}
	lost := c.used || c.lost
	c.ip, c.used, c.lost, c.count = ip, false, false, 0
	return ip, lost, nil
}

func contextNotFound(id string) error {
	return fmt.Errorf("%w: no code context %q in this sandbox (contexts end when the sandbox stops; create one with POST /contexts)",
		errdefs.ErrContextNotFound, id)
}

func (m *codeManager) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req api.CreateCodeContextRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := req.Validate(); err != nil {
		errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
		return
	}
	c, err := m.newContext(newContextID(), req.Language, req.Cwd, req.Env)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	// Start the interpreter now: an unavailable language fails here, and
	// the first run does not wait for the start.
	c.sem <- struct{}{}
	_, _, err = m.ensure(r.Context(), c)
	c.release()
	if err != nil {
		m.remove(c)
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusCreated, c.info)
}

// newContext validates the settings of a context and registers it, without
// starting its interpreter.
func (m *codeManager) newContext(id, lang, cwd string, env map[string]string) (*codeContext, error) {
	l := languages[lang]
	if l == nil {
		return nil, fmt.Errorf("%w: language %q is not supported; use one of %s",
			errdefs.ErrInvalidArgument, lang, strings.Join(api.Languages, ", "))
	}
	dir := m.cfg.defaultCwd
	if cwd != "" {
		dir = cwd
		if !filepath.IsAbs(cwd) {
			dir = filepath.Join(m.cfg.defaultCwd, cwd)
		}
	}
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	if err := api.ValidateEnv(env); err != nil {
		return nil, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	// The context's environment is the sandbox's now plus its own; later
	// changes to the sandbox's do not reach a running interpreter.
	full := make(map[string]string)
	for _, kv := range m.cfg.environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			full[k] = v
		}
	}
	maps.Copy(full, env)
	c := &codeContext{
		info: api.CodeContext{ID: id, Language: lang, Cwd: dir, CreatedAt: time.Now().UTC()},
		lang: l, cwd: dir, env: full,
		sem: make(chan struct{}, 1),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("%w: the agent is shutting down", errdefs.ErrUnavailable)
	}
	if len(m.contexts) >= maxContexts {
		return nil, fmt.Errorf("%w: this sandbox has %d code contexts, the most it may have; delete unused ones",
			errdefs.ErrCapacity, len(m.contexts))
	}
	if _, ok := m.contexts[id]; ok {
		return nil, fmt.Errorf("%w: code context %q exists", errdefs.ErrConflict, id)
	}
	m.contexts[id] = c
	return c, nil
}

func newContextID() string {
	var b [8]byte
	rand.Read(b[:])
	return "ctx-" + hex.EncodeToString(b[:])
}

// remove unregisters c and kills its interpreter.
func (m *codeManager) remove(c *codeContext) {
	m.mu.Lock()
	if m.contexts[c.info.ID] == c {
		delete(m.contexts, c.info.ID)
	}
	m.mu.Unlock()
	if ip := c.detach(); ip != nil {
		ip.kill()
	}
}

func (m *codeManager) lookup(id string) (*codeContext, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.contexts[id]
	if c == nil {
		return nil, contextNotFound(id)
	}
	return c, nil
}

func (m *codeManager) handleList(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	list := api.CodeContextList{Contexts: make([]api.CodeContext, 0, len(m.contexts))}
	for _, c := range m.contexts {
		list.Contexts = append(list.Contexts, c.info)
	}
	m.mu.Unlock()
	slices.SortFunc(list.Contexts, func(a, b api.CodeContext) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	errdefs.WriteJSON(w, http.StatusOK, list)
}

func (m *codeManager) handleGet(w http.ResponseWriter, r *http.Request) {
	c, err := m.lookup(r.PathValue("cid"))
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, c.info)
}

func (m *codeManager) handleDelete(w http.ResponseWriter, r *http.Request) {
	c, err := m.lookup(r.PathValue("cid"))
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	m.remove(c)
	w.WriteHeader(http.StatusNoContent)
}

// runContext returns the context a run request names, or the default
// context of its language, created on first use.
func (m *codeManager) runContext(req *api.RunCodeRequest) (*codeContext, error) {
	if req.Context != "" {
		c, err := m.lookup(req.Context)
		if err != nil {
			return nil, err
		}
		if req.Language != "" && req.Language != c.info.Language {
			return nil, fmt.Errorf("%w: context %s runs %s, not %s; drop language or pick another context",
				errdefs.ErrInvalidArgument, c.info.ID, c.info.Language, req.Language)
		}
		return c, nil
	}
	lang := req.Language
	if lang == "" {
		lang = api.LanguagePython
	}
	id := defaultContextPrefix + lang
	if c, err := m.lookup(id); err == nil {
		return c, nil
	}
	c, err := m.newContext(id, lang, "", nil)
	if errors.Is(err, errdefs.ErrConflict) {
		return m.lookup(id) // created by a concurrent run
	}
	return c, err
}

func (m *codeManager) handleRun(w http.ResponseWriter, r *http.Request) {
	var req api.RunCodeRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := req.Validate(); err != nil {
		errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
		return
	}
	c, err := m.runContext(&req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	var timeout time.Duration
	if req.TimeoutMs > 0 && req.TimeoutMs <= int64(1<<63-1)/int64(time.Millisecond) {
		timeout = time.Duration(req.TimeoutMs) * time.Millisecond
	}
	if acceptsEventStream(r) {
		s := &sseSink{w: w, rc: http.NewResponseController(w)}
		done, err := m.run(r.Context(), c, req.Code, timeout, s, s.begin)
		if err != nil {
			if !s.begun {
				errdefs.Write(w, err)
				return
			}
			_, apiErr := errdefs.Classify(err)
			s.event(api.CodeEventError, apiErr)
			return
		}
		s.event(api.CodeEventComplete, done)
		return
	}
	col := &collectSink{limit: int(min(m.cfg.outputCap, 1<<30))}
	done, err := m.run(r.Context(), c, req.Code, timeout, col, func() {})
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	res := api.RunCodeResult{
		Results: col.results, Logs: col.logs, Error: col.err,
		Context: done.Context, ExecutionCount: done.ExecutionCount, StateLost: done.StateLost,
		TimedOut: done.TimedOut, DurationMs: done.DurationMs,
	}
	if res.Results == nil {
		res.Results = []api.CodeResult{}
	}
	if res.Logs.Stdout == nil {
		res.Logs.Stdout = []string{}
	}
	if res.Logs.Stderr == nil {
		res.Logs.Stderr = []string{}
	}
	errdefs.WriteJSON(w, http.StatusOK, res)
}

// run runs code in c once it is c's turn, calling begin just before the
// code starts: errors returned before then were not reported to sink.
func (m *codeManager) run(ctx context.Context, c *codeContext, code string, timeout time.Duration, sink runSink, begin func()) (api.CodeComplete, error) {
	done := api.CodeComplete{Context: c.info.ID}
	if err := c.acquire(ctx); err != nil {
		return done, err
	}
	defer c.release()
	ip, lost, err := m.ensure(ctx, c)
	if err != nil {
		return done, err
	}
	begin()
	start := time.Now()
	out, err := ip.run(ctx, code, timeout, sink)
	if out.undelivered {
		// It died while idle (killed, out of memory) and the reaper had
		// not told yet: start a fresh one, as ensure would have.
		ip.kill()
		c.mu.Lock()
		if c.ip == ip {
			c.ip, c.lost = nil, true
		}
		c.mu.Unlock()
		if ip, lost, err = m.ensure(ctx, c); err != nil {
			return done, err
		}
		out, err = ip.run(ctx, code, timeout, sink)
	}
	done.DurationMs = time.Since(start).Milliseconds()
	done.StateLost = lost
	done.TimedOut = out.timedOut

	c.mu.Lock()
	c.used = true
	if out.crashed {
		done.ExecutionCount = c.count + 1
		deleted := c.deleted
		if out.exitDesc == "" {
			out.exitDesc = describeExit(ip.proc.Status())
		}
		if c.ip == ip {
			c.ip, c.lost = nil, true
		}
		c.mu.Unlock()
		ip.kill() // the rest of its process group
		msg := fmt.Sprintf("the %s interpreter died while running this code (%s); its variables, imports and functions are lost, and the next run in this context starts a fresh interpreter and reports stateLost",
			c.lang.name, out.exitDesc)
		switch {
		case deleted:
			msg = "the context was deleted while this code ran"
		case out.timedOut:
			msg = fmt.Sprintf("the code did not stop within %s of being interrupted at its timeout, so the %s interpreter was killed; its state is lost, and the next run in this context starts a fresh interpreter and reports stateLost",
				interruptGrace, c.lang.name)
		}
		sink.codeError(&api.CodeError{Name: api.ErrorNameInterpreterCrashed, Message: msg, Traceback: []string{}})
	} else {
		c.count = out.count
		done.ExecutionCount = out.count
		c.mu.Unlock()
	}
	if err != nil {
		return done, fmt.Errorf("%w: code interrupted because its request was cancelled (client gone or agent shutting down): %v",
			errdefs.ErrUnavailable, err)
	}
	return done, nil
}

// acceptsEventStream reports whether the client asked for server-sent
// events.
func acceptsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
		}
	}
	return false
}

// collectSink gathers a run's output for the non-streaming response,
// keeping at most limit bytes of logs.
type collectSink struct {
	limit   int
	size    int
	results []api.CodeResult
	logs    api.CodeLogs
	err     *api.CodeError
}

func (s *collectSink) output(stream, text string) {
	if room := s.limit - s.size; len(text) > room {
		text = text[:max(room, 0)]
		s.logs.Truncated = true
	}
	if text == "" {
		return
	}
	s.size += len(text)
	if stream == api.CodeEventStderr {
		s.logs.Stderr = append(s.logs.Stderr, text)
	} else {
		s.logs.Stdout = append(s.logs.Stdout, text)
	}
}

func (s *collectSink) result(r *api.CodeResult) { s.results = append(s.results, *r) }

func (s *collectSink) codeError(e *api.CodeError) {
	if s.err == nil { // the first error is the one that stopped the code
		s.err = e
	}
}

// sseSink streams a run as server-sent events. Write errors are ignored:
// a client that went away cancels the request, which interrupts the run.
type sseSink struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	begun bool
	buf   bytes.Buffer
}

func (s *sseSink) begin() {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	_ = s.rc.Flush()
	s.begun = true
}

func (s *sseSink) event(name string, v any) {
	if !s.begun {
		s.begin()
	}
	s.buf.Reset()
	s.buf.WriteString("event: ")
	s.buf.WriteString(name)
	s.buf.WriteString("\ndata: ")
	_ = json.NewEncoder(&s.buf).Encode(v) // ends with the newline of the data line
	s.buf.WriteByte('\n')
	_, _ = s.w.Write(s.buf.Bytes())
	_ = s.rc.Flush()
}

func (s *sseSink) output(stream, text string) { s.event(stream, api.CodeOutput{Text: text}) }
func (s *sseSink) result(r *api.CodeResult)   { s.event(api.CodeEventResult, r) }
func (s *sseSink) codeError(e *api.CodeError) { s.event(api.CodeEventError, e) }
