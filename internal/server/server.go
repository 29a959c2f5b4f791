// Package server is sbxd's HTTP API: authentication, the lifecycle routes it
// serves itself, and forwarding of sandbox-side routes to each sandbox's
// agent.
package server

import (
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/backup"
	"github.com/sbx-dev/sbx/internal/bucketmount"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
)

// Config configures a Server.
type Config struct {
	Manager *sandbox.Manager
	// Token is the bearer token every /v1 route and /metrics require. An
	// empty token disables authentication; the daemon only allows that on
	// a loopback address.
	Token   string
	Logger  *slog.Logger
	Version string
	// Previews serves exposed ports (ports.go); nil disables them.
	Previews *Previews
	// Backups serves backups (backup.go); nil disables them.
	Backups *backup.Service
	// Mounts serves bucket mounts (mount.go); nil disables them.
	Mounts *bucketmount.Manager
}

// Server is the sbxd HTTP handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *prometheus.Registry
	reqs    *prometheus.HistogramVec
	prev    *Previews
}

// route is one API route with its documentation; the OpenAPI document is
// generated from the route table, so it cannot drift from the code.
type route struct {
	method, pattern string
	auth            bool
	h               http.HandlerFunc
	doc             opDoc
}

// New returns a Server with every route registered.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), metrics: prometheus.NewRegistry()}
	s.reqs = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sbx_http_request_duration_seconds",
		Help:    "API request latency by route and status.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	}, []string{"route", "code"})
	s.metrics.MustRegister(s.reqs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics.MustRegister(cfg.Manager.Collectors()...)
	s.initPreviews()

	for _, rt := range s.routes() {
		h := s.instrument(rt.pattern, rt.h)
		if rt.auth {
			h = s.authenticate(h)
		}
		s.mux.Handle(rt.method+" "+rt.pattern, h)
	}
	return s
}

// routes is the whole route table. Each feature contributes its routes from
// its own file.
func (s *Server) routes() []route {
	rs := []route{
		{"GET", "/healthz", false, s.handleHealth, opDoc{
			summary: "Liveness of the daemon (no authentication).", response: api.Health{}}},
		{"GET", "/metrics", true, promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}).ServeHTTP, opDoc{
			summary: "Prometheus metrics.", stream: "text/plain"}},
		{"GET", "/v1/openapi.json", true, s.handleOpenAPI, opDoc{summary: "This document."}},
	}
	rs = append(rs, s.lifecycleRoutes()...)
	rs = append(rs, s.execRoutes()...)
	rs = append(rs, s.portRoutes()...)
	rs = append(rs, s.gitRoutes()...)
	rs = append(rs, s.codeRoutes()...)
	rs = append(rs, s.filesRoutes()...)
	rs = append(rs, s.backupRoutes()...)
	rs = append(rs, s.mountRoutes()...)
	return rs
}

func (s *Server) lifecycleRoutes() []route {
	return []route{
		{"GET", "/v1/sandboxes", true, s.handleList, opDoc{summary: "List sandboxes.", response: api.SandboxList{}}},
		{"PUT", "/v1/sandboxes/{id}", true, s.handleCreate, opDoc{
			summary: "Create (and start) a sandbox, or return it if it exists with the same options (200). 201 when created; 409 CONFLICT if it exists with different options.",
			request: api.CreateSandboxRequest{}, response: api.Sandbox{}, status: http.StatusCreated,
			also: []alt{{http.StatusOK, "It already existed with the same options."}}}},
		{"GET", "/v1/sandboxes/{id}", true, s.handleGet, opDoc{
			summary: "Get a sandbox. Never creates or wakes it; 404 SANDBOX_NOT_FOUND if absent.", response: api.Sandbox{}}},
		{"DELETE", "/v1/sandboxes/{id}", true, s.handleDestroy, opDoc{
			summary: "Destroy a sandbox and everything it owns. Idempotent. The file system of a persistent sandbox is saved first and kept " +
				"for the next sandbox created with the same id and persistent: true (if saving fails, nothing is destroyed); purge=true discards it instead.",
			status: http.StatusNoContent, query: []param{{"purge", "boolean", "true to also delete the stored file system of a persistent sandbox."}}}},
		{"POST", "/v1/sandboxes/{id}/stop", true, s.handleStop, opDoc{
			summary: "Stop a sandbox now, as the idle reaper would. Its id and options stay; the next request starts it again.", response: api.Sandbox{}}},
	}
}

// ServeHTTP routes r. Unknown paths and methods get JSON errors, like
// every other failure.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The mux would answer an unclean path with a redirect to its cleaned
	// form, which clients follow with the same method: DELETE of
	// /v1/sandboxes/a/files/../../b would destroy sandbox b. Refuse.
	if p := r.URL.EscapedPath(); strings.HasPrefix(p, "/v1/") && path.Clean(p) != p && path.Clean(p)+"/" != p {
		if err := uncleanFilePath(p); err != nil {
			errdefs.Write(w, err) // the file path is what is wrong (files.go)
			return
		}
		errdefs.Write(w, fmt.Errorf("%w: path %q is not clean (it has '.', '..' or '//' segments); send the path you mean",
			errdefs.ErrInvalidArgument, p))
		return
	}
	if s.servePreview(w, r) {
		return // a preview URL, not the API (preview.go)
	}
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// The mux's own 404/405 answers are plain text; keep its status
		// and Allow header but speak JSON.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if rec.status == http.StatusMethodNotAllowed {
			errdefs.Write(w, fmt.Errorf("%w: %s is not allowed on %s; allowed: %s",
				errdefs.ErrMethodNotAllowed, r.Method, r.URL.Path, rec.header.Get("Allow")))
			return
		}
		errdefs.Write(w, fmt.Errorf("%w: no route for %s %s; see /v1/openapi.json", errdefs.ErrNotFound, r.Method, r.URL.Path))
		return
	}
	s.mux.ServeHTTP(w, r)
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(code int)        { r.status = code }

func (s *Server) authenticate(next http.HandlerFunc) http.HandlerFunc {
	if s.cfg.Token == "" {
		return next
	}
	want := []byte("Bearer " + s.cfg.Token)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			msg := "missing bearer token; send 'Authorization: Bearer <token>' (the token is in <data-dir>/token)"
			if len(got) > 0 {
				msg = "wrong bearer token; use the one in <data-dir>/token"
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="sbx"`)
			errdefs.Write(w, fmt.Errorf("%w: %s", errdefs.ErrUnauthorized, msg))
			return
		}
		next(w, r)
	}
}

// instrument logs each request and records its latency.
func (s *Server) instrument(pattern string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next(sw, r)
		d := time.Since(t0)
		s.reqs.WithLabelValues(pattern, fmt.Sprint(sw.status)).Observe(d.Seconds())
		level := slog.LevelDebug
		if sw.status >= 500 {
			level = slog.LevelWarn
		}
		s.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path,
			"status", sw.status, "ms", float64(d.Microseconds())/1000)
	}
}

// statusWriter remembers the status and keeps streaming possible.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ReadFrom keeps the server's own ReadFrom reachable, which splices from a
// socket into the client's TCP connection (download.go).
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(w.ResponseWriter, r)
}

// Unwrap lets http.ResponseController reach the underlying writer
// (hijacking for WebSockets, deadlines for long streams).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	errdefs.WriteJSON(w, http.StatusOK, api.Health{Status: "ok", Version: s.cfg.Version})
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	list, err := s.cfg.Manager.List(r.Context())
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, api.SandboxList{Sandboxes: list})
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	var req api.CreateSandboxRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	sb, created, err := s.cfg.Manager.Create(r.Context(), id, req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	errdefs.WriteJSON(w, status, sb)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	sb, err := s.cfg.Manager.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, sb)
}

func (s *Server) handleStop(w http.ResponseWriter, r *http.Request) {
	sb, err := s.cfg.Manager.Stop(r.Context(), r.PathValue("id"))
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, sb)
}

func (s *Server) handleDestroy(w http.ResponseWriter, r *http.Request) {
	var opts sandbox.DestroyOptions
	if v := r.URL.Query().Get("purge"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errdefs.Write(w, fmt.Errorf("%w: query parameter purge=%q is not a boolean; use true or false", errdefs.ErrInvalidArgument, v))
			return
		}
		opts.Purge = b
	}
	if err := s.cfg.Manager.DestroyWith(r.Context(), r.PathValue("id"), opts); err != nil {
		errdefs.Write(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// wantsStream reports whether the client asked for server-sent events.
func wantsStream(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}
