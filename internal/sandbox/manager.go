// Package sandbox is the identity and routing layer of sbxd: it maps a
// sandbox id to exactly one running sandbox, creating it on first use,
// stopping it when idle, and re-adopting it after a daemon restart.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/backend"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/store"
)

// ImageResolver finds the root filesystem of a built image.
type ImageResolver interface {
	// Path returns the rootfs directory of the named image, or an error
	// wrapping errdefs.ErrImageNotFound.
	Path(name string) (string, error)
}

// Config configures a Manager.
type Config struct {
	Backend backend.Backend
	Store   *store.Store
	Images  ImageResolver
	Logger  *slog.Logger
	// FS keeps the file systems of persistent sandboxes; nil refuses
	// them (persist.go).
	FS FSStore

	// DefaultImage is used when a sandbox names none ("default").
	DefaultImage string
	// DefaultSleepAfter is the idle time before a stop (10m).
	DefaultSleepAfter time.Duration
	// MaxRunning caps the running sandboxes on this host (0: no cap).
	MaxRunning int
	// ReapInterval is how often idle sandboxes are looked for (5s).
	ReapInterval time.Duration
	// StartTimeout bounds one backend start (30s).
	StartTimeout time.Duration
	// Agent tunes the agent of every sandbox started (output caps,
	// interpreter pool); the zero value keeps the agent's defaults.
	Agent backend.AgentOptions
	// OnStop, if set, is called after a sandbox stops for any reason
	// (idle, request, death, destroy), with the sandbox's lock held: it
	// must not call back into the Manager for that sandbox.
	OnStop func(id string)
}

// Manager owns the sandboxes of this host. It is safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry
	running int // entries with a live instance; guarded by mu

	stopReaper context.CancelFunc
	reaperDone chan struct{}
}

// entry is the in-memory state of one sandbox id. Its mutex serialises
// lifecycle changes of that id, which is how concurrent first requests
// create exactly one sandbox.
type entry struct {
	id string

	mu      sync.Mutex
	loaded  bool          // rec was read from the store (or is new)
	exists  bool          // rec is a real row
	rec     store.Sandbox // guarded by mu
	inst    *backend.Instance
	agent   *http.Client
	deleted bool

	inflight   atomic.Int32
	lastActive atomic.Int64 // unix nanoseconds
}

// New returns a Manager. Call Recover before serving and Close when done.
func New(cfg Config) *Manager {
	if cfg.DefaultImage == "" {
		cfg.DefaultImage = "default"
	}
	if cfg.DefaultSleepAfter <= 0 {
		cfg.DefaultSleepAfter = 10 * time.Minute
	}
	if cfg.ReapInterval <= 0 {
		cfg.ReapInterval = 5 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{cfg: cfg, log: cfg.Logger, entries: map[string]*entry{}}
}

func (m *Manager) entry(id string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[id]
	if e == nil {
		e = &entry{id: id}
		m.entries[id] = e
	}
	return e
}

// load reads the entry's row once. Caller holds e.mu.
func (m *Manager) load(ctx context.Context, e *entry) error {
	if e.loaded {
		return nil
	}
	rec, err := m.cfg.Store.Get(ctx, e.id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.exists = false
	case err != nil:
		return err
	default:
		e.rec, e.exists = rec, true
		e.lastActive.Store(rec.LastActiveAt.UnixNano())
	}
	e.loaded = true
	return nil
}

// normalize validates options and fills in defaults.
func (m *Manager) normalize(opts api.CreateSandboxRequest) (api.CreateSandboxRequest, error) {
	if opts.Image == "" {
		opts.Image = m.cfg.DefaultImage
	}
	if opts.InstanceType == "" {
		opts.InstanceType = DefaultInstanceType
	}
	if _, err := LookupInstanceType(opts.InstanceType); err != nil {
		return opts, err
	}
	if opts.SleepAfter < 0 {
		return opts, fmt.Errorf("%w: sleepAfter must not be negative", errdefs.ErrInvalidArgument)
	}
	if opts.SleepAfter == 0 {
		opts.SleepAfter = api.Duration(m.cfg.DefaultSleepAfter)
	}
	// The sandbox's env reaches every session's bash too, which can only
	// export shell names (as PATCH /env requires).
	if err := api.ValidateEnv(opts.Env); err != nil {
		return opts, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	if err := api.ValidateShellNames(opts.Env); err != nil {
		return opts, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	if err := opts.Network.Validate(); err != nil {
		return opts, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	opts.Network = opts.Network.Normalized()
	if opts.Persistent {
		if err := m.checkPersistent(); err != nil {
			return opts, err
		}
	}
	if _, err := m.cfg.Images.Path(opts.Image); err != nil {
		return opts, err
	}
	return opts, nil
}

// Create creates sandbox id with opts and starts it, or returns the
// existing one if its options agree. created reports which.
func (m *Manager) Create(ctx context.Context, id string, opts api.CreateSandboxRequest) (sb api.Sandbox, created bool, err error) {
	if err := ValidateID(id); err != nil {
		return api.Sandbox{}, false, err
	}
	explicit := opts
	if opts, err = m.normalize(opts); err != nil {
		return api.Sandbox{}, false, err
	}
	e := m.entry(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := m.load(ctx, e); err != nil {
		return api.Sandbox{}, false, err
	}
	if e.exists {
		if err := conflicts(explicit, e.rec.Options); err != nil {
			return api.Sandbox{}, false, err
		}
	} else {
		now := time.Now().UTC()
		e.rec = store.Sandbox{ID: id, Status: api.StatusStopped, Options: opts, CreatedAt: now, LastActiveAt: now}
		created = true
	}
	if err := m.ensureRunning(ctx, e); err != nil {
		return api.Sandbox{}, false, err
	}
	return e.view(), created, nil
}

// conflicts reports an error if an explicitly requested option differs from
// the stored one.
func conflicts(want api.CreateSandboxRequest, have api.CreateSandboxRequest) error {
	diff := func(field string) error {
		return fmt.Errorf("%w: sandbox already exists with a different %s; destroy it first or omit the option",
			errdefs.ErrConflict, field)
	}
	switch {
	case want.Image != "" && want.Image != have.Image:
		return diff("image")
	case want.InstanceType != "" && want.InstanceType != have.InstanceType:
		return diff("instanceType")
	case want.SleepAfter != 0 && want.SleepAfter != have.SleepAfter:
		return diff("sleepAfter")
	case want.KeepAlive && !have.KeepAlive:
		return diff("keepAlive")
	case want.Env != nil && !maps.Equal(want.Env, have.Env):
		return diff("env")
	case want.Network != nil && !want.Network.Equal(have.Network):
		return diff("network")
	case want.Persistent && !have.Persistent:
		return diff("persistent")
	}
	return nil
}

// ensureRunning starts e if it has no live instance. Caller holds e.mu.
func (m *Manager) ensureRunning(ctx context.Context, e *entry) error {
	if e.inst != nil {
		return nil
	}
	it, err := LookupInstanceType(e.rec.Options.InstanceType)
	if err != nil {
		return err
	}
	rootfs, err := m.cfg.Images.Path(e.rec.Options.Image)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.cfg.MaxRunning > 0 && m.running >= m.cfg.MaxRunning {
		m.mu.Unlock()
		return fmt.Errorf("%w: this host already runs its limit of %d sandboxes; stop or destroy idle ones (sbx ls, sbx stop) or raise --max-sandboxes",
			errdefs.ErrCapacity, m.cfg.MaxRunning)
	}
	m.running++ // reserve the slot while starting
	m.mu.Unlock()

	env := make([]string, 0, len(e.rec.Options.Env))
	for _, k := range sortedKeys(e.rec.Options.Env) {
		env = append(env, k+"="+e.rec.Options.Env[k])
	}
	// The start must not be abandoned half-way because one of the callers
	// waiting for it went away; it has its own deadline instead.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.StartTimeout)
	defer cancel()
	t0 := time.Now()
	nw := e.rec.Options.Network.Normalized()
	spec := backend.Spec{ID: e.id, Rootfs: rootfs, Resources: it.Resources, Env: env,
		Network: backend.Network{None: nw.IsNone(), Allow: nw.Allow, Deny: nw.Deny}, Agent: m.cfg.Agent}
	upper, err := m.openUpper(sctx, e)
	if err == nil && upper != nil {
		spec.Upper = upper
		defer upper.Close()
	}
	var inst *backend.Instance
	if err == nil {
		inst, err = m.cfg.Backend.Start(sctx, spec)
		if err != nil {
			err = startErr(e, fmt.Errorf("%w: starting sandbox %s failed: %w", errdefs.ErrUnavailable, e.id, err))
		}
	}
	if err != nil {
		m.mu.Lock()
		m.running--
		m.mu.Unlock()
		return err
	}
	m.attach(e, inst)
	now := time.Now().UTC()
	e.rec.Status = api.StatusRunning
	e.rec.LastActiveAt = now
	e.lastActive.Store(now.UnixNano())
	if err := m.cfg.Store.Put(ctx, e.rec); err != nil {
		// Without a row the sandbox would be an orphan after a restart.
		m.detach(context.WithoutCancel(ctx), e)
		return err
	}
	e.exists = true
	m.log.Info("sandbox started", "id", e.id, "image", e.rec.Options.Image,
		"instanceType", e.rec.Options.InstanceType, "ms", time.Since(t0).Milliseconds())
	sandboxStarts.Inc()
	return nil
}

// attach records a live instance. Caller holds e.mu and has counted it in
// m.running.
func (m *Manager) attach(e *entry, inst *backend.Instance) {
	e.inst = inst
	sock := inst.AgentSocket
	e.agent = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return backend.DialAgent(ctx, sock)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// detach destroys the instance of e, if any. Caller holds e.mu.
func (m *Manager) detach(ctx context.Context, e *entry) error {
	if e.inst == nil {
		return nil
	}
	if t, ok := e.agent.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	err := m.cfg.Backend.Destroy(ctx, e.id)
	if err != nil {
		return fmt.Errorf("destroying sandbox %s: %w", e.id, err)
	}
	e.inst, e.agent = nil, nil
	m.mu.Lock()
	m.running--
	m.mu.Unlock()
	return nil
}

// view renders e for the API. Caller holds e.mu.
func (e *entry) view() api.Sandbox {
	status := api.StatusStopped
	if e.inst != nil {
		status = api.StatusRunning
	}
	last := time.Unix(0, e.lastActive.Load()).UTC()
	if last.Before(e.rec.LastActiveAt) {
		last = e.rec.LastActiveAt
	}
	return api.Sandbox{
		ID: e.id, Status: status, Image: e.rec.Options.Image, InstanceType: e.rec.Options.InstanceType,
		Env: e.rec.Options.Env, SleepAfter: e.rec.Options.SleepAfter, KeepAlive: e.rec.Options.KeepAlive,
		Network: e.rec.Options.Network.Normalized(), Persistent: e.rec.Options.Persistent,
		CreatedAt: e.rec.CreatedAt, LastActiveAt: last,
	}
}

// Get returns a sandbox without creating or waking it.
func (m *Manager) Get(ctx context.Context, id string) (api.Sandbox, error) {
	if err := ValidateID(id); err != nil {
		return api.Sandbox{}, err
	}
	e := m.entry(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := m.load(ctx, e); err != nil {
		return api.Sandbox{}, err
	}
	if !e.exists {
		return api.Sandbox{}, fmt.Errorf("%w: no sandbox named %q; create it with PUT /v1/sandboxes/%s or any exec",
			errdefs.ErrSandboxNotFound, id, id)
	}
	return e.view(), nil
}

// List returns every known sandbox ordered by id.
func (m *Manager) List(ctx context.Context) ([]api.Sandbox, error) {
	recs, err := m.cfg.Store.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Sandbox, 0, len(recs))
	for _, r := range recs {
		sb, err := m.Get(ctx, r.ID)
		if errors.Is(err, errdefs.ErrSandboxNotFound) {
			continue // destroyed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sb)
	}
	return out, nil
}

// Stop stops a running sandbox: its processes and (unless persistent) its
// files are gone, but the id and options stay and the next request starts
// it again. Stopping a stopped sandbox is not an error.
func (m *Manager) Stop(ctx context.Context, id string) (api.Sandbox, error) {
	if err := ValidateID(id); err != nil {
		return api.Sandbox{}, err
	}
	e := m.entry(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := m.load(ctx, e); err != nil {
		return api.Sandbox{}, err
	}
	if !e.exists {
		return api.Sandbox{}, fmt.Errorf("%w: no sandbox named %q", errdefs.ErrSandboxNotFound, id)
	}
	if err := m.stopLocked(ctx, e, "request"); err != nil {
		return api.Sandbox{}, err
	}
	return e.view(), nil
}

func (m *Manager) stopLocked(ctx context.Context, e *entry, reason string) error {
	if e.inst == nil {
		return nil
	}
	if err := m.saveUpper(ctx, e); err != nil {
		return err
	}
	if err := m.detach(context.WithoutCancel(ctx), e); err != nil {
		return err
	}
	e.rec.Status = api.StatusStopped
	e.rec.LastActiveAt = time.Unix(0, e.lastActive.Load()).UTC()
	m.log.Info("sandbox stopped", "id", e.id, "reason", reason)
	sandboxStops.WithLabelValues(reason).Inc()
	if m.cfg.OnStop != nil {
		m.cfg.OnStop(e.id)
	}
	return m.cfg.Store.Put(context.WithoutCancel(ctx), e.rec)
}

// Destroy removes a sandbox and everything it owns. Destroying an absent
// sandbox is not an error.
func (m *Manager) Destroy(ctx context.Context, id string) error {
	return m.DestroyWith(ctx, id, DestroyOptions{})
}

// DestroyWith is Destroy with options. The file system of a running
// persistent sandbox is saved first unless opts.Purge; if that fails,
// nothing is destroyed.
func (m *Manager) DestroyWith(ctx context.Context, id string, opts DestroyOptions) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	e := m.entry(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	if err := m.load(ctx, e); err != nil {
		return err
	}
	if !opts.Purge {
		if err := m.saveUpper(ctx, e); err != nil {
			return fmt.Errorf("%w (destroy with ?purge=true to discard its files)", err)
		}
	}
	if e.inst != nil {
		if err := m.detach(ctx, e); err != nil {
			return err
		}
	} else if err := m.cfg.Backend.Destroy(ctx, id); err != nil {
		// Leftovers of a crashed start or an earlier daemon.
		return fmt.Errorf("destroying sandbox %s: %w", id, err)
	}
	if opts.Purge && m.cfg.FS != nil {
		if err := m.cfg.FS.DeleteFS(ctx, id); err != nil {
			return err
		}
	}
	if m.cfg.OnStop != nil {
		m.cfg.OnStop(id)
	}
	if err := m.cfg.Store.Delete(ctx, id); err != nil {
		return err
	}
	if e.exists {
		m.log.Info("sandbox destroyed", "id", id)
	}
	e.exists, e.loaded, e.deleted = false, true, true
	e.rec = store.Sandbox{}
	m.mu.Lock()
	if m.entries[id] == e {
		delete(m.entries, id)
	}
	m.mu.Unlock()
	return nil
}

// Lease is a hold on a running sandbox for the duration of one request.
// While any lease is held the sandbox is not stopped for idleness.
type Lease struct {
	m     *Manager
	e     *entry
	agent *http.Client
	done  atomic.Bool
}

// Acquire returns a lease on sandbox id, creating it with default options
// or starting it if needed.
func (m *Manager) Acquire(ctx context.Context, id string) (*Lease, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	for {
		e := m.entry(id)
		e.mu.Lock()
		if e.deleted {
			// Lost a race with Destroy; the next entry is fresh.
			e.mu.Unlock()
			continue
		}
		if e.inst == nil {
			if err := m.load(ctx, e); err != nil {
				e.mu.Unlock()
				return nil, err
			}
			if !e.exists {
				opts, err := m.normalize(api.CreateSandboxRequest{})
				if err != nil {
					e.mu.Unlock()
					return nil, err
				}
				now := time.Now().UTC()
				e.rec = store.Sandbox{ID: id, Status: api.StatusStopped, Options: opts, CreatedAt: now, LastActiveAt: now}
			}
			if err := m.ensureRunning(ctx, e); err != nil {
				e.mu.Unlock()
				return nil, err
			}
		}
		e.inflight.Add(1)
		e.lastActive.Store(time.Now().UnixNano())
		l := &Lease{m: m, e: e, agent: e.agent}
		e.mu.Unlock()
		return l, nil
	}
}

// Agent is the HTTP client that reaches the sandbox's agent. Request URLs
// need a host, which is ignored: use "http://agent/PATH".
func (l *Lease) Agent() *http.Client { return l.agent }

// ID is the sandbox id.
func (l *Lease) ID() string { return l.e.id }

// Release ends the lease and records activity. It is safe to call twice.
func (l *Lease) Release() {
	if l.done.Swap(true) {
		return
	}
	l.e.lastActive.Store(time.Now().UnixNano())
	l.e.inflight.Add(-1)
}

// AgentFailed tells the manager that talking to the agent failed with err.
// If the sandbox turns out to be dead it is cleaned up so that the next
// request starts a fresh one. It returns an error for the caller to report.
func (l *Lease) AgentFailed(ctx context.Context, err error) error {
	m, e := l.m, l.e
	st, serr := m.cfg.Backend.Status(context.WithoutCancel(ctx), e.id)
	if serr == nil && st == backend.StateRunning {
		return fmt.Errorf("%w: the agent of sandbox %s did not answer: %v", errdefs.ErrUnavailable, e.id, err)
	}
	e.mu.Lock()
	if e.agent == l.agent && e.inst != nil {
		m.log.Warn("sandbox died", "id", e.id, "err", err)
		if derr := m.stopLocked(ctx, e, "died"); derr != nil {
			m.log.Error("cleaning up dead sandbox", "id", e.id, "err", derr)
		}
	}
	e.mu.Unlock()
	return fmt.Errorf("%w: sandbox %s stopped while handling the request (it may have run out of memory); retry to start it again",
		errdefs.ErrUnavailable, e.id)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// PatchEnv records an environment change (nil values unset) in the
// sandbox's stored options, so that the sandbox gets it again when it
// wakes from a stop. The running agent is told separately.
func (m *Manager) PatchEnv(ctx context.Context, id string, patch map[string]*string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	e := m.entry(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := m.load(ctx, e); err != nil {
		return err
	}
	if !e.exists {
		return fmt.Errorf("%w: no sandbox named %q", errdefs.ErrSandboxNotFound, id)
	}
	env := maps.Clone(e.rec.Options.Env)
	if env == nil {
		env = map[string]string{}
	}
	for k, v := range patch {
		if v == nil {
			delete(env, k)
		} else {
			env[k] = *v
		}
	}
	rec := e.rec
	rec.Options.Env = env
	if err := m.cfg.Store.Put(ctx, rec); err != nil {
		return err
	}
	e.rec = rec
	return nil
}
