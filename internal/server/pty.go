package server

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

func (s *Server) ptyRoutes() []route {
	return []route{
		{"GET", "/v1/sandboxes/{id}/pty", true, s.handlePTY, opDoc{
			summary: "Open a terminal: upgrades to a WebSocket. Binary frames are terminal bytes both ways; text frames are JSON control " +
				`messages: {"type":"resize","cols":N,"rows":N} from the client; ready{pid,session,cols,rows}, exit{code} and error{code,message} from the server. ` +
				"The terminal belongs to the session and outlives the connection: reconnecting replays its recent output, and several clients may attach at once. " +
				"426 UPGRADE_REQUIRED without a WebSocket handshake.",
			upgrade: "websocket",
			query: []param{
				{"cols", "integer", "Terminal width, 1-1000 (with rows); default 80 for a new terminal, unchanged for an existing one."},
				{"rows", "integer", "Terminal height, 1-1000 (with cols); default 24."},
				{"session", "string", "Session whose terminal to open; default \"default\"."},
			}}},
	}
}

// handlePTY validates the request, then proxies the WebSocket to the
// agent. The lease is held for as long as the connection lasts, so an open
// terminal keeps the sandbox from idling out.
func (s *Server) handlePTY(w http.ResponseWriter, r *http.Request) {
	id, ok := sandboxID(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var dims [2]int
	for i, name := range []string{"cols", "rows"} {
		if v := q.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				errdefs.Write(w, fmt.Errorf("%w: %s=%q: use a number from 1 to 1000", errdefs.ErrInvalidArgument, name, v))
				return
			}
			dims[i] = n
		}
	}
	if (dims[0] == 0) != (dims[1] == 0) {
		errdefs.Write(w, fmt.Errorf("%w: give both cols and rows, or neither", errdefs.ErrInvalidArgument))
		return
	}
	if sid := q.Get("session"); sid != "" {
		if err := api.ValidateSessionID(sid); err != nil {
			errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
			return
		}
	}
	if !headerHas(r.Header, "Connection", "upgrade") || !headerHas(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		errdefs.Write(w, fmt.Errorf("%w: this is a WebSocket endpoint; connect with a WebSocket client (Connection: Upgrade, Upgrade: websocket), e.g. `sbx shell %s`",
			errdefs.ErrUpgradeRequired, id))
		return
	}
	lease, err := s.cfg.Manager.Acquire(r.Context(), id)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	defer lease.Release()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.URL.Path, pr.Out.URL.RawPath = "http", "agent", "/pty", ""
			pr.Out.Host = "agent"
			pr.Out.Header.Del("Authorization")
		},
		Transport: lease.Agent().Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return
			}
			errdefs.Write(w, lease.AgentFailed(r.Context(), err))
		},
	}
	rp.ServeHTTP(w, r)
}

// headerHas reports whether a comma-separated header holds token.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
