package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
	"github.com/sbx-dev/sbx/internal/store"
)

// Exposed ports: a sandbox port made reachable from outside through preview
// URLs (preview.go serves them). Exposures are kept in the store, so they
// survive daemon restarts, and mirrored in memory, so that serving a
// preview request costs no database read.
//
// Lifecycle of one exposure (a row keyed by sandbox, port and token):
//
//	exposed ──DELETE──▶ unexposed ──POST again──▶ exposed (same token, same URLs)
//	   └──────────┬─────────┘
//	        sandbox stops
//	              ▼
//	            ended: its URLs answer 410 until forgotten (Retention;
//	                   the dedicated listener only for PortLinger)
//
// A sandbox that stops loses its processes, so every exposure of it ends;
// the next run exposes afresh with new tokens.

const (
	// previewTokenLen is the length of generated tokens: 16 base32
	// characters, 80 random bits.
	previewTokenLen = 16
	// maxPortsPerSandbox bounds live exposures (and dedicated listeners)
	// per sandbox.
	maxPortsPerSandbox = 64
	// defaultRetention is how long ended exposures answer 410.
	defaultRetention = 7 * 24 * time.Hour
	// defaultPortLinger is how long a dedicated listener outlives its
	// sandbox's stop, answering 410.
	defaultPortLinger = 15 * time.Minute
)

// PreviewConfig configures exposed ports and their preview URLs.
type PreviewConfig struct {
	// Domain is the parent domain of host-based URLs,
	// {port}-{id}-{token}.{Domain}; default "localhost", which browsers
	// resolve to the loopback address by themselves.
	Domain string
	// PublicURL is how browsers reach the daemon's API listener: the base
	// of path-based URLs, and the scheme and port of host-based ones.
	PublicURL *url.URL
	// ListenHost is the address on which each exposure gets a dedicated
	// listener (port form); empty disables them.
	ListenHost string
	// ReservedPorts may not be exposed: the daemon's own ports.
	ReservedPorts []int
	// Retention is how long ended exposures are remembered (7 days).
	Retention time.Duration
	// PortLinger is how long the dedicated listener of an exposure whose
	// sandbox stopped stays open, answering 410 like the other forms
	// (15 minutes); after that its port refuses connections. Listeners
	// are ports of the host, so they are not kept as long as Retention.
	PortLinger time.Duration
}

// Previews keeps the exposed ports of every sandbox and serves their
// preview URLs. Create it with NewPreviews before the sandbox manager, give
// SandboxStopped to the manager as its OnStop hook, and pass it to New in
// Config.Previews. It is safe for concurrent use.
type Previews struct {
	cfg PreviewConfig
	st  *store.Store
	log *slog.Logger
	mgr *sandbox.Manager // set by Server.initPreviews

	transport *http.Transport
	proxy     http.Handler
	reqs      *prometheus.HistogramVec // the server's, set by initPreviews

	// wmu serialises changes: store writes, listeners and epochs. It is
	// taken before mu, and inside a sandbox's lock (SandboxStopped).
	wmu sync.Mutex
	// mu guards the maps and the mutable fields of exposures for readers.
	mu    sync.RWMutex
	bySbx map[string]map[int][]*exposure // every remembered exposure, oldest first
	// epoch counts the stops of each sandbox, so that an exposure made
	// while the sandbox stopped is not recorded as live.
	epoch  map[string]uint64
	closed bool
	// loaded: the maps mirror the store, so a sandbox with no live
	// exposure in them has none stored either. Guarded by wmu.
	loaded    bool
	lastPrune time.Time // guarded by wmu
}

// exposure is one row of the ports table and its dedicated listener.
type exposure struct {
	id    string
	port  int
	token string
	// Guarded by Previews.mu (written under wmu too).
	name       string
	state      string
	listenPort int
	createdAt  time.Time
	endedAt    time.Time
	// ln is the dedicated listener; guarded by wmu.
	ln *portListener
}

// NewPreviews returns the exposed-port registry. It reads nothing until the
// server starts it; SandboxStopped works at once.
func NewPreviews(st *store.Store, cfg PreviewConfig, log *slog.Logger) *Previews {
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	cfg.Domain = strings.ToLower(strings.Trim(cfg.Domain, "."))
	if cfg.PublicURL == nil {
		cfg.PublicURL = &url.URL{Scheme: "http", Host: "127.0.0.1:7070"}
	}
	if cfg.Retention <= 0 {
		cfg.Retention = defaultRetention
	}
	if cfg.PortLinger <= 0 {
		cfg.PortLinger = defaultPortLinger
	}
	if log == nil {
		log = slog.Default()
	}
	p := &Previews{cfg: cfg, st: st, log: log, bySbx: map[string]map[int][]*exposure{}, epoch: map[string]uint64{}}
	p.transport, p.proxy = p.newProxy()
	return p
}

// initPreviews attaches the registry to the server and loads it.
func (s *Server) initPreviews() {
	s.prev = s.cfg.Previews
	if s.prev == nil {
		return
	}
	s.prev.mgr, s.prev.reqs = s.cfg.Manager, s.reqs
	if err := s.prev.load(context.Background()); err != nil {
		s.log.Error("loading exposed ports; preview URLs of earlier exposures answer 404", "err", err)
	}
}

// load reads the stored exposures, ends those whose sandbox no longer runs
// (it stopped while the daemon was down), forgets old ones and reopens the
// dedicated listeners of the rest.
func (p *Previews) load(ctx context.Context) error {
	if p.st == nil {
		return nil
	}
	// Which sandboxes run is asked first, without wmu: the manager calls
	// SandboxStopped with a sandbox's lock held, so wmu is never held
	// while waiting for one. A sandbox that stops meanwhile has ended its
	// exposures in the store before the second read below.
	rows, err := p.st.ListPorts(ctx)
	if err != nil {
		return err
	}
	running := map[string]bool{}
	for _, r := range rows {
		if _, seen := running[r.SandboxID]; !seen && r.State != store.PortEnded {
			sb, err := p.mgr.Get(ctx, r.SandboxID)
			running[r.SandboxID] = err == nil && sb.Status == api.StatusRunning
		}
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	now := time.Now().UTC()
	if err := p.st.PrunePorts(ctx, now.Add(-p.cfg.Retention)); err != nil {
		return err
	}
	if rows, err = p.st.ListPorts(ctx); err != nil {
		return err
	}
	ended := map[string]bool{}
	for _, r := range rows {
		if r.State != store.PortEnded && !running[r.SandboxID] && !ended[r.SandboxID] {
			if _, err := p.st.EndPorts(ctx, r.SandboxID, now); err != nil {
				return err
			}
			ended[r.SandboxID] = true
		}
	}
	p.mu.Lock()
	var live []*exposure
	for _, r := range rows {
		e := &exposure{id: r.SandboxID, port: r.Port, token: r.Token, name: r.Name, state: r.State,
			listenPort: r.ListenPort, createdAt: r.CreatedAt, endedAt: r.EndedAt}
		if e.state != store.PortEnded && !running[e.id] {
			e.state, e.endedAt = store.PortEnded, now
		}
		p.add(e)
		if e.state != store.PortEnded || now.Sub(e.endedAt) < p.cfg.PortLinger {
			live = append(live, e)
		}
	}
	p.mu.Unlock()
	for _, e := range live {
		if err := p.openListener(ctx, e); err != nil {
			p.log.Warn("reopening preview listener", "id", e.id, "port", e.port, "err", err)
		} else if e.state == store.PortEnded {
			p.lingerLocked(e, e.endedAt.Add(p.cfg.PortLinger).Sub(now))
		}
	}
	p.loaded, p.lastPrune = true, now
	return nil
}

// add indexes e. Caller holds mu.
func (p *Previews) add(e *exposure) {
	ports := p.bySbx[e.id]
	if ports == nil {
		ports = map[int][]*exposure{}
		p.bySbx[e.id] = ports
	}
	ports[e.port] = append(ports[e.port], e)
}

// liveLocked returns the exposed or unexposed exposure of a sandbox port.
// Caller holds mu.
func (p *Previews) liveLocked(id string, port int) *exposure {
	for _, e := range p.bySbx[id][port] {
		if e.state != store.PortEnded {
			return e
		}
	}
	return nil
}

// SandboxStopped ends every exposure of sandbox id: its processes are gone,
// and its URLs answer 410 from now on. The manager calls it (OnStop) with
// the sandbox's lock held.
func (p *Previews) SandboxStopped(id string) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	now := time.Now().UTC()
	p.mu.Lock()
	p.epoch[id]++
	live := false
	for _, list := range p.bySbx[id] {
		for _, e := range list {
			live = live || e.state != store.PortEnded
		}
	}
	p.mu.Unlock()
	if !live && p.loaded {
		return // most stops: nothing was exposed
	}
	if p.st != nil {
		if _, err := p.st.EndPorts(context.Background(), id, now); err != nil {
			// The memory state below still ends them; a daemon restart
			// ends them again while loading.
			p.log.Error("ending exposed ports", "id", id, "err", err)
		}
	}
	var open []*exposure
	p.mu.Lock()
	for _, list := range p.bySbx[id] {
		for _, e := range list {
			if e.state != store.PortEnded {
				e.state, e.endedAt = store.PortEnded, now
			}
			if e.ln != nil {
				open = append(open, e)
			}
		}
	}
	p.mu.Unlock()
	for _, e := range open {
		p.lingerLocked(e, p.cfg.PortLinger)
	}
	p.forgetOld(now)
}

// lingerLocked closes the dedicated listener of ended exposure e after d,
// unless e has come back to life (re-exposed with its token) or got
// another listener by then. Until then it answers 410. Caller holds wmu.
func (p *Previews) lingerLocked(e *exposure, d time.Duration) {
	ln := e.ln
	time.AfterFunc(d, func() {
		p.wmu.Lock()
		defer p.wmu.Unlock()
		if e.ln == ln && e.state == store.PortEnded {
			ln.close()
			e.ln = nil
		}
	})
}

// forgetOld drops exposures that ended more than Retention ago, at most
// once an hour. Caller holds wmu.
func (p *Previews) forgetOld(now time.Time) {
	if now.Sub(p.lastPrune) < time.Hour {
		return
	}
	p.lastPrune = now
	cutoff := now.Add(-p.cfg.Retention)
	p.mu.Lock()
	for id, ports := range p.bySbx {
		for port, list := range ports {
			list = slices.DeleteFunc(list, func(e *exposure) bool {
				return e.state == store.PortEnded && e.endedAt.Before(cutoff)
			})
			if len(list) == 0 {
				delete(ports, port)
			} else {
				ports[port] = list
			}
		}
		if len(ports) == 0 {
			delete(p.bySbx, id)
		}
	}
	p.mu.Unlock()
	if p.st != nil {
		if err := p.st.PrunePorts(context.Background(), cutoff); err != nil {
			p.log.Warn("forgetting old exposed ports", "err", err)
		}
	}
}

// Close closes every dedicated listener. Exposures stay stored; the next
// daemon reopens them.
func (p *Previews) Close() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	p.closed = true
	var lns []*portListener
	for _, ports := range p.bySbx {
		for _, list := range ports {
			for _, e := range list {
				if e.ln != nil {
					lns = append(lns, e.ln)
					e.ln = nil
				}
			}
		}
	}
	p.mu.Unlock()
	for _, ln := range lns {
		ln.close()
	}
	p.transport.CloseIdleConnections()
}

// newToken returns a random token: lower-case base32, valid in a host name.
func newToken() string {
	return strings.ToLower(rand.Text()[:previewTokenLen])
}

// checkPort refuses ports sbx itself serves on.
func (p *Previews) checkPort(port int) error {
	if slices.Contains(p.cfg.ReservedPorts, port) {
		return fmt.Errorf("%w: port %d is reserved: sbxd serves its API on it, so its URLs would be ambiguous; serve the app on another port",
			errdefs.ErrInvalidArgument, port)
	}
	return nil
}

// expose exposes a port of sandbox id, creating or waking the sandbox, and
// returns its URLs. Exposing a port again returns the same URLs.
func (p *Previews) expose(ctx context.Context, id string, req api.ExposePortRequest) (api.ExposedPort, error) {
	if err := p.checkPort(req.Port); err != nil {
		return api.ExposedPort{}, err
	}
	for range 3 {
		p.mu.RLock()
		epoch := p.epoch[id]
		p.mu.RUnlock()
		lease, err := p.mgr.Acquire(ctx, id)
		if err != nil {
			return api.ExposedPort{}, err
		}
		e, err := p.record(ctx, id, req, epoch)
		lease.Release()
		if errors.Is(err, errStoppedMeanwhile) {
			continue
		}
		if err != nil {
			return api.ExposedPort{}, err
		}
		return p.view(e), nil
	}
	return api.ExposedPort{}, fmt.Errorf("%w: sandbox %s stopped while the port was being exposed; retry", errdefs.ErrUnavailable, id)
}

var errStoppedMeanwhile = errors.New("sandbox stopped meanwhile")

// record makes the exposure live, unless the sandbox has stopped since
// epoch was read (its processes, and so the port, are gone).
func (p *Previews) record(ctx context.Context, id string, req api.ExposePortRequest, epoch uint64) (*exposure, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.RLock()
	stopped, closed := p.epoch[id] != epoch, p.closed
	cur := p.liveLocked(id, req.Port)
	live := 0
	for _, list := range p.bySbx[id] {
		for _, e := range list {
			if e.state == store.PortExposed {
				live++
			}
		}
	}
	var old *exposure // an ended exposure with the caller's token, to revive
	if req.Token != "" {
		for _, e := range p.bySbx[id][req.Port] {
			if e.token == req.Token && e.state == store.PortEnded {
				old = e
			}
		}
	}
	p.mu.RUnlock()
	switch {
	case closed:
		return nil, fmt.Errorf("%w: the daemon is shutting down", errdefs.ErrUnavailable)
	case stopped:
		return nil, errStoppedMeanwhile
	}
	now := time.Now().UTC()
	if cur != nil && req.Token != "" && req.Token != cur.token {
		if cur.state == store.PortExposed {
			return nil, fmt.Errorf("%w: port %d of sandbox %s is already exposed with another token; unexpose it first to change the token",
				errdefs.ErrConflict, req.Port, id)
		}
		// Unexposed: its URL gives way to the one asked for.
		if err := p.setState(ctx, cur, store.PortEnded, cur.name, now); err != nil {
			return nil, err
		}
		p.closeListener(cur)
		cur = nil
	}
	if cur == nil && live >= maxPortsPerSandbox {
		return nil, fmt.Errorf("%w: sandbox %s already exposes %d ports, the most allowed; unexpose some first",
			errdefs.ErrCapacity, id, live)
	}
	name := req.Name
	if cur != nil {
		if name == "" {
			name = cur.name
		}
		if err := p.setState(ctx, cur, store.PortExposed, name, time.Time{}); err != nil {
			return nil, err
		}
		if err := p.openListener(ctx, cur); err != nil {
			p.log.Warn("opening preview listener", "id", id, "port", req.Port, "err", err)
		}
		return cur, nil
	}
	e := old
	if e == nil {
		token := req.Token
		if token == "" {
			token = newToken()
		}
		e = &exposure{id: id, port: req.Port, token: token, createdAt: now}
	}
	if err := p.openListener(ctx, e); err != nil {
		p.log.Warn("opening preview listener; the port form of the URL is not available", "id", id, "port", req.Port, "err", err)
	}
	if err := p.setState(ctx, e, store.PortExposed, name, time.Time{}); err != nil {
		p.closeListener(e)
		return nil, err
	}
	if old == nil {
		p.mu.Lock()
		p.add(e)
		p.mu.Unlock()
	}
	return e, nil
}

// setState stores e with a new state and name, then updates memory.
// Caller holds wmu.
func (p *Previews) setState(ctx context.Context, e *exposure, state, name string, ended time.Time) error {
	p.mu.RLock()
	row := store.Port{SandboxID: e.id, Port: e.port, Token: e.token, Name: name, ListenPort: e.listenPort,
		State: state, CreatedAt: e.createdAt, EndedAt: ended}
	p.mu.RUnlock()
	if p.st != nil {
		if err := p.st.PutPort(context.WithoutCancel(ctx), row); err != nil {
			return err
		}
	}
	p.mu.Lock()
	e.state, e.name, e.endedAt = state, name, ended
	p.mu.Unlock()
	return nil
}

// unexpose stops serving a port's URLs (they answer 410) but keeps them
// for when the port is exposed again while the sandbox runs. Unexposing a
// port that is not exposed is not an error.
func (p *Previews) unexpose(ctx context.Context, id string, port int) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.RLock()
	cur := p.liveLocked(id, port)
	p.mu.RUnlock()
	if cur == nil || cur.state != store.PortExposed {
		return nil
	}
	return p.setState(ctx, cur, store.PortUnexposed, cur.name, time.Now().UTC())
}

// list returns the exposed ports of sandbox id, by port.
func (p *Previews) list(id string) []api.ExposedPort {
	p.mu.RLock()
	var es []*exposure
	for _, list := range p.bySbx[id] {
		for _, e := range list {
			if e.state == store.PortExposed {
				es = append(es, e)
			}
		}
	}
	p.mu.RUnlock()
	slices.SortFunc(es, func(a, b *exposure) int { return a.port - b.port })
	out := make([]api.ExposedPort, 0, len(es))
	for _, e := range es {
		out = append(out, p.view(e))
	}
	return out
}

// view renders an exposure with its URLs.
func (p *Previews) view(e *exposure) api.ExposedPort {
	p.mu.RLock()
	name, listenPort, created := e.name, e.listenPort, e.createdAt
	p.mu.RUnlock()
	pub := p.cfg.PublicURL
	label := hostLabel(e.port, e.id, e.token)
	host := label + "." + p.cfg.Domain
	if port := pub.Port(); port != "" {
		host = net.JoinHostPort(host, port)
	}
	urls := api.PreviewURLs{
		Host: pub.Scheme + "://" + host + "/",
		Path: strings.TrimRight(pub.String(), "/") + "/preview/" + e.id + "/" + strconv.Itoa(e.port) + "/" + e.token + "/",
	}
	if listenPort != 0 {
		h := p.cfg.ListenHost
		if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
			h = pub.Hostname() // listening everywhere: the public name reaches it
		}
		urls.Port = "http://" + net.JoinHostPort(h, strconv.Itoa(listenPort)) + "/?" + previewTokenParam + "=" + e.token
	}
	out := api.ExposedPort{Port: e.port, Name: name, URLs: urls, URL: urls.Host, ExposedAt: created}
	if len(label) > 63 && urls.Port != "" {
		// DNS labels hold 63 characters; long sandbox ids make the host
		// form unresolvable through real DNS.
		out.URL = urls.Port
	}
	return out
}

// hostLabel is the first label of a host-based URL.
func hostLabel(port int, id, token string) string {
	return strconv.Itoa(port) + "-" + id + "-" + token
}

// portRoutes are the exposed-port routes, served by the daemon.
func (s *Server) portRoutes() []route {
	return []route{
		{"POST", "/v1/sandboxes/{id}/ports", true, s.handleExpose, opDoc{
			summary: "Expose a port of the sandbox (creating or waking it) at preview URLs: host-based {port}-{id}-{token}.{previewDomain} " +
				"(primary), a dedicated listener on the preview address (first visit with ?sbx_preview_token= sets a cookie; absolute links work), and " +
				"path-based /preview/{id}/{port}/{token}/ (absolute links in the app break there). Exposing a port again returns the same URLs " +
				"while the sandbox runs; when it stops, its URLs answer 410. 409 CONFLICT if the port is exposed with another token.",
			request: api.ExposePortRequest{}, response: api.ExposedPort{}}},
		{"GET", "/v1/sandboxes/{id}/ports", true, s.handleListPorts, opDoc{
			summary: "List the sandbox's exposed ports. Never creates or wakes it.", response: api.ExposedPortList{}}},
		{"DELETE", "/v1/sandboxes/{id}/ports/{port}", true, s.handleUnexpose, opDoc{
			summary: "Unexpose a port: its URLs answer 410 until it is exposed again. Idempotent; never creates or wakes the sandbox.",
			status:  http.StatusNoContent}},
	}
}

var errNoPreviews = fmt.Errorf("%w: exposed ports are not configured on this daemon", errdefs.ErrUnavailable)

func (s *Server) handleExpose(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	var req api.ExposePortRequest
	_, err := readValid(w, r, &req)
	if err == nil && s.prev == nil {
		err = errNoPreviews
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	ep, err := s.prev.expose(r.Context(), id, req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, ep)
}

func (s *Server) handleListPorts(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.cfg.Manager.Get(r.Context(), id); err != nil {
		errdefs.Write(w, err)
		return
	}
	var ports []api.ExposedPort
	if s.prev != nil {
		ports = s.prev.list(id)
	}
	if ports == nil {
		ports = []api.ExposedPort{}
	}
	errdefs.WriteJSON(w, http.StatusOK, api.ExposedPortList{Ports: ports})
}

func (s *Server) handleUnexpose(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	port, err := strconv.Atoi(r.PathValue("port"))
	if err != nil {
		err = fmt.Errorf("%w: port %q is not a number", errdefs.ErrInvalidArgument, r.PathValue("port"))
	} else if verr := api.ValidatePort(port); verr != nil {
		err = fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, verr)
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	if s.prev != nil {
		if err := s.prev.unexpose(r.Context(), id, port); err != nil {
			errdefs.Write(w, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
