package server

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
	"github.com/sbx-dev/sbx/internal/store"
)

// The preview proxy. A preview request is checked against the exposures in
// memory (a URL whose token is unknown is 404, one whose exposure ended is
// 410, and neither reaches, let alone wakes, the sandbox), then holds a
// lease on the running sandbox for as long as it lasts (so it counts as
// activity) and is forwarded by an httputil.ReverseProxy whose transport
// reaches the port through a tunnel: a connection to the sandbox's agent
// socket, upgraded with "Upgrade: sbx-tunnel" to a byte stream that the
// agent splices to 127.0.0.1:port inside the sandbox (internal/agent,
// tunnel.go). The tunnel does not depend on the sandbox having any network
// beyond its loopback. Tunnels are pooled per sandbox port like any
// keep-alive connection.

// Preview URL forms, as the metrics and logs name them.
const (
	formHost = "host"
	formPort = "port"
	formPath = "path"
)

// previewIdleTimeout closes pooled tunnels before the usual keep-alive
// timeout of app servers (Node's is 5 s), so that a request is seldom sent
// on a connection the app is closing.
const previewIdleTimeout = 4 * time.Second

// tunnelUpgrade is the protocol name of the agent's tunnel endpoint.
const tunnelUpgrade = "sbx-tunnel"

// proxyTarget is where one preview request goes; it travels in the
// request's context to the proxy's Rewrite and its transport's dialer.
type proxyTarget struct {
	lease    *sandbox.Lease
	port     int
	path     string
	rawPath  string
	rawQuery string
	portForm bool // the dedicated-listener form, whose URL the app sees as its own
}

type targetKey struct{}

func (p *Previews) newProxy() (*http.Transport, http.Handler) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			t, _ := ctx.Value(targetKey{}).(*proxyTarget)
			if t == nil {
				return nil, fmt.Errorf("preview dial of %s without a target", addr)
			}
			return dialTunnel(ctx, t.lease, t.port)
		},
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     previewIdleTimeout,
		// Bodies and their encodings pass through untouched.
		DisableCompression: true,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(targetKey{}).(*proxyTarget)
			u := pr.Out.URL
			u.Scheme = "http"
			// The pool key: one pool of tunnels per sandbox port.
			u.Host = t.lease.ID() + ":" + strconv.Itoa(t.port)
			u.Path, u.RawPath, u.RawQuery = t.path, t.rawPath, t.rawQuery
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			if !t.portForm {
				pr.Out.Header.Set("X-Forwarded-Proto", p.cfg.PublicURL.Scheme)
			}
			// Cookies are scoped by host, not port: a browser sends the
			// token cookies of every port-form preview on this address
			// to each of them. No app sees any preview's token.
			dropPreviewCookies(pr.Out.Header)
		},
		Transport:    tr,
		ErrorHandler: p.proxyError,
		ErrorLog:     slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return tr, rp
}

// servePreview serves r if it is for a host-based or path-based preview
// URL and reports whether it did. Every request to the API listener passes
// here first, so a request that is not a preview costs a suffix check.
func (s *Server) servePreview(w http.ResponseWriter, r *http.Request) bool {
	p := s.prev
	if p == nil {
		return false
	}
	if id, port, token, ok := p.parseHost(r.Host); ok {
		p.serve(w, r, formHost, id, port, token, &proxyTarget{path: r.URL.Path, rawPath: r.URL.RawPath, rawQuery: r.URL.RawQuery})
		return true
	}
	if strings.HasPrefix(r.URL.Path, "/preview/") {
		p.servePath(w, r)
		return true
	}
	return false
}

// parseHost recognises {port}-{id}-{token}.{domain}[:port].
func (p *Previews) parseHost(host string) (id string, port int, token string, ok bool) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	label, found := strings.CutSuffix(host, "."+p.cfg.Domain)
	if !found || strings.Contains(label, ".") {
		return "", 0, "", false
	}
	return parseLabel(label)
}

// parseLabel splits {port}-{id}-{token}. Ids may contain '-', ports and
// tokens may not.
func parseLabel(label string) (id string, port int, token string, ok bool) {
	i, j := strings.IndexByte(label, '-'), strings.LastIndexByte(label, '-')
	if i < 1 || i > 5 || j <= i+1 || j == len(label)-1 {
		return "", 0, "", false
	}
	for k := 0; k < i; k++ {
		if label[k] < '0' || label[k] > '9' {
			return "", 0, "", false
		}
	}
	port, _ = strconv.Atoi(label[:i])
	id, token = label[i+1:j], label[j+1:]
	if api.ValidatePort(port) != nil || sandbox.ValidateID(id) != nil {
		return "", 0, "", false
	}
	for k := 0; k < len(token); k++ {
		if c := token[k]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return "", 0, "", false
		}
	}
	return id, port, token, true
}

// servePath serves /preview/{id}/{port}/{token}/rest as rest. The app sees
// paths without the prefix, so absolute links in its pages miss it.
func (p *Previews) servePath(w http.ResponseWriter, r *http.Request) {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/preview/"), "/", 4)
	if len(parts) < 3 {
		errdefs.Write(w, fmt.Errorf("%w: path-based preview URLs look like /preview/{id}/{port}/{token}/; use the URL that exposing the port returned",
			errdefs.ErrPreviewNotFound))
		return
	}
	port, err := strconv.Atoi(parts[1])
	if err != nil || sandbox.ValidateID(parts[0]) != nil {
		errdefs.Write(w, fmt.Errorf("%w: no exposed port matches this URL", errdefs.ErrPreviewNotFound))
		return
	}
	if len(parts) == 3 {
		// Relative links resolve against a directory only with the slash.
		loc := r.URL.EscapedPath() + "/"
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, loc, http.StatusPermanentRedirect)
		return
	}
	t := &proxyTarget{path: "/" + parts[3], rawQuery: r.URL.RawQuery}
	if r.URL.RawPath != "" {
		// The prefix has nothing to escape, so the raw rest is what
		// follows the same number of slashes.
		if raw := strings.SplitN(strings.TrimPrefix(r.URL.RawPath, "/preview/"), "/", 4); len(raw) == 4 {
			t.rawPath = "/" + raw[3]
		}
	}
	p.serve(w, r, formPath, parts[0], port, parts[2], t)
}

// resolve finds the exposure a URL names. Every stored token of the
// sandbox port is compared, in constant time, whatever matches.
func (p *Previews) resolve(id string, port int, token string) (*exposure, error) {
	tok := []byte(token)
	p.mu.RLock()
	var found *exposure
	for _, e := range p.bySbx[id][port] {
		if subtle.ConstantTimeCompare([]byte(e.token), tok) == 1 {
			found = e
		}
	}
	var state string
	var ended time.Time
	if found != nil {
		state, ended = found.state, found.endedAt
	}
	p.mu.RUnlock()
	switch {
	case found == nil:
		return nil, fmt.Errorf("%w: no exposed port matches this URL; check it, or expose the port (sbx expose ID PORT) and use the URL it prints",
			errdefs.ErrPreviewNotFound)
	case state == store.PortUnexposed:
		return nil, fmt.Errorf("%w: port %d of sandbox %s is no longer exposed; expose it again (while the sandbox runs) to reuse this URL",
			errdefs.ErrPreviewGone, port, id)
	case state == store.PortEnded:
		return nil, fmt.Errorf("%w: this URL ended when sandbox %s stopped (%s); start the app again and expose the port for a new URL",
			errdefs.ErrPreviewGone, id, ended.Format(time.RFC3339))
	}
	return found, nil
}

// serve proxies r to port of sandbox id, if token is valid.
func (p *Previews) serve(w http.ResponseWriter, r *http.Request, form, id string, port int, token string, t *proxyTarget) {
	t0 := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		d := time.Since(t0)
		if p.reqs != nil {
			p.reqs.WithLabelValues("preview:"+form, strconv.Itoa(sw.status)).Observe(d.Seconds())
		}
		// Never the path or host: they carry the token.
		p.log.Debug("preview request", "form", form, "id", id, "port", port, "method", r.Method,
			"status", sw.status, "ms", float64(d.Microseconds())/1000)
	}()
	e, err := p.resolve(id, port, token)
	if err != nil {
		errdefs.Write(sw, err)
		return
	}
	lease, err := p.mgr.AcquireRunning(r.Context(), id)
	if errors.Is(err, sandbox.ErrNotRunning) {
		// Stopping ends exposures; this request raced with it.
		err = fmt.Errorf("%w: sandbox %s has stopped; start the app again and expose the port for a new URL", errdefs.ErrPreviewGone, id)
	}
	if err != nil {
		errdefs.Write(sw, err)
		return
	}
	defer lease.Release()
	p.mu.RLock()
	state := e.state
	p.mu.RUnlock()
	if state != store.PortExposed {
		// Ended between resolve and acquire, perhaps by a stop and
		// restart: the sandbox running now is not the one exposed.
		_, err := p.resolve(id, port, token)
		errdefs.Write(sw, err)
		return
	}
	t.lease, t.port = lease, port
	p.proxy.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
}

// proxyError answers a request the proxy could not forward.
func (p *Previews) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	t := r.Context().Value(targetKey{}).(*proxyTarget)
	var ans *agentAnswer
	var ad *agentDialError
	switch {
	case errors.As(err, &ans):
		errdefs.Write(w, errdefs.FromAPI(ans.status, ans.body))
	case errors.As(err, &ad):
		errdefs.Write(w, t.lease.AgentFailed(r.Context(), ad.err))
	default:
		errdefs.Write(w, fmt.Errorf("%w: the server on port %d of sandbox %s did not answer: %v",
			errdefs.ErrPreviewUpstream, t.port, t.lease.ID(), err))
	}
}

// agentAnswer is the agent's refusal of a tunnel, such as
// PORT_NOT_LISTENING; it reaches the client unchanged.
type agentAnswer struct {
	status int
	body   api.Error
}

func (e *agentAnswer) Error() string { return e.body.Message }

// agentDialError is a failure to reach the agent itself.
type agentDialError struct{ err error }

func (e *agentDialError) Error() string { return "reaching the agent: " + e.err.Error() }
func (e *agentDialError) Unwrap() error { return e.err }

// dialTunnel opens a byte stream to port inside the sandbox of lease.
func dialTunnel(ctx context.Context, lease *sandbox.Lease, port int) (net.Conn, error) {
	c, err := lease.Dial(ctx)
	if err != nil {
		return nil, &agentDialError{err}
	}
	// The handshake obeys ctx; the stream afterwards has no deadline.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	conn, err := tunnelHandshake(c, port)
	if !stop() || err != nil {
		c.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	return conn, nil
}

func tunnelHandshake(c net.Conn, port int) (net.Conn, error) {
	req := "GET /tunnel?port=" + strconv.Itoa(port) + " HTTP/1.1\r\nHost: agent\r\nConnection: Upgrade\r\nUpgrade: " + tunnelUpgrade + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return nil, &agentDialError{err}
	}
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, &agentDialError{err}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if br.Buffered() > 0 {
			// Bytes the app sent at once; they come before the rest.
			return &bufferedConn{Conn: c, r: br}, nil
		}
		return c, nil
	}
	defer resp.Body.Close()
	var body api.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &body) != nil || body.Code == "" {
		return nil, &agentAnswer{status: http.StatusServiceUnavailable, body: api.Error{Code: api.CodeSandboxUnavailable,
			Message: fmt.Sprintf("the sandbox's agent refused the tunnel (%s); it may predate tunnels: stop the sandbox and retry", resp.Status)}}
	}
	return nil, &agentAnswer{status: resp.StatusCode, body: body}
}

// bufferedConn reads what the handshake's reader buffered first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Names of the port form's token: the query parameter of its first
// visit and the cookie (one per listener port) that keeps it.
const (
	previewTokenParam   = "sbx_preview_token"
	previewCookiePrefix = "sbx_preview_"
)

// dropPreviewCookies removes the preview token cookies from h and keeps
// every other cookie.
func dropPreviewCookies(h http.Header) {
	vals := h.Values("Cookie")
	if len(vals) == 0 {
		return
	}
	var kept []string
	for _, v := range vals {
		for part := range strings.SplitSeq(v, ";") {
			part = strings.TrimSpace(part)
			if part != "" && !strings.HasPrefix(part, previewCookiePrefix) {
				kept = append(kept, part)
			}
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
}

// portListener is an exposure's dedicated listener (the port form).
type portListener struct {
	srv  *http.Server
	port int
}

func (l *portListener) close() { l.srv.Close() }

// openListener gives e a dedicated listener on the preview address: on its
// stored port if it has one and it is free, else on a new port. Caller
// holds wmu.
func (p *Previews) openListener(ctx context.Context, e *exposure) error {
	if p.cfg.ListenHost == "" || e.ln != nil {
		return nil
	}
	p.mu.RLock()
	want := e.listenPort
	p.mu.RUnlock()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(p.cfg.ListenHost, strconv.Itoa(want)))
	if err != nil && want != 0 {
		p.log.Warn("preview port taken; the exposure's port URL changes", "id", e.id, "port", e.port, "listenPort", want, "err", err)
		ln, err = lc.Listen(ctx, "tcp", net.JoinHostPort(p.cfg.ListenHost, "0"))
	}
	if err != nil {
		return err
	}
	l := &portListener{port: ln.Addr().(*net.TCPAddr).Port}
	l.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.servePort(w, r, e, l.port) }),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	go l.srv.Serve(ln)
	e.ln = l
	if l.port != want {
		p.mu.Lock()
		e.listenPort = l.port
		p.mu.Unlock()
		if want != 0 && p.st != nil {
			if err := p.setState(ctx, e, e.state, e.name, e.endedAt); err != nil {
				return err
			}
		}
	}
	return nil
}

// closeListener closes e's dedicated listener. Caller holds wmu.
func (p *Previews) closeListener(e *exposure) {
	if e.ln != nil {
		e.ln.close()
		e.ln = nil
	}
}

// servePort serves the dedicated listener of e. The token arrives once in
// the query (?sbx_preview_token=…); it is then kept in a cookie and the browser sent
// to the same URL without it, so the app never sees it and its absolute
// links (/static/app.js) work.
func (p *Previews) servePort(w http.ResponseWriter, r *http.Request, e *exposure, listenPort int) {
	cookie := previewCookiePrefix + strconv.Itoa(listenPort)
	match := func(tok string) bool { return subtle.ConstantTimeCompare([]byte(tok), []byte(e.token)) == 1 }
	rawQuery := r.URL.RawQuery
	if tok, rest, found := takeQueryParam(rawQuery, previewTokenParam); found {
		rawQuery = rest
		if !match(tok) {
			errdefs.Write(w, fmt.Errorf("%w: the token in this URL is not this preview's; use the URL that exposing the port returned",
				errdefs.ErrPreviewNotFound))
			return
		}
		http.SetCookie(w, &http.Cookie{Name: cookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			loc := r.URL.EscapedPath()
			if rawQuery != "" {
				loc += "?" + rawQuery
			}
			http.Redirect(w, r, loc, http.StatusSeeOther)
			return
		}
	} else if c, err := r.Cookie(cookie); err != nil || !match(c.Value) {
		errdefs.Write(w, fmt.Errorf("%w: this preview needs its token: open the URL with ?%s=… that exposing the port returned",
			errdefs.ErrPreviewNotFound, previewTokenParam))
		return
	}
	p.serve(w, r, formPort, e.id, e.port, e.token, &proxyTarget{path: r.URL.Path, rawPath: r.URL.RawPath, rawQuery: rawQuery, portForm: true})
}

// takeQueryParam removes every name=value pair from a raw query and
// returns the last value. The rest keeps the app's own pairs byte for
// byte, in order.
func takeQueryParam(raw, name string) (val, rest string, found bool) {
	if !strings.Contains(raw, name+"=") {
		return "", raw, false
	}
	var kept []string
	for part := range strings.SplitSeq(raw, "&") {
		k, v, _ := strings.Cut(part, "=")
		if k != name {
			kept = append(kept, part)
			continue
		}
		found = true
		if u, err := url.QueryUnescape(v); err == nil {
			val = u
		} else {
			val = v
		}
	}
	return val, strings.Join(kept, "&"), found
}

// ParsePublicURL checks a public URL of the daemon (--public-url):
// scheme://host[:port], nothing else.
func ParsePublicURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("public URL %q: use scheme://host[:port] such as http://127.0.0.1:7070", raw)
	}
	u.Path = ""
	return u, nil
}
