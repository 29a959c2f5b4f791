package server

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
)

func (s *Server) sessionRoutes() []route {
	return []route{
		{"POST", "/v1/sandboxes/{id}/sessions", true, s.handleCreateSession, opDoc{
			summary: "Create a session: a persistent bash in which cd, export, aliases and functions carry over between commands. " +
				"Sessions share the filesystem, not cwd or env; commands in one session run in order, sessions run in parallel. The session \"default\" always exists.",
			request: api.CreateSessionRequest{}, response: api.Session{}, status: http.StatusCreated}},
		{"GET", "/v1/sandboxes/{id}/sessions", true, s.handleForwardGet("/sessions"), opDoc{
			summary: "List the sessions.", response: api.SessionList{}}},
		{"DELETE", "/v1/sandboxes/{id}/sessions/{sid}", true, s.handleDeleteSession, opDoc{
			summary: "Delete a session and kill every process started in it (commands, background processes, its terminal). Deleting \"default\" resets it.",
			status:  http.StatusNoContent}},
	}
}

// sandboxID validates the {id} path parameter.
func sandboxID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return "", false
	}
	return id, true
}

// forwardJSON reads and validates a JSON body of type T, then forwards it
// to the agent at path.
func forwardJSON[T any, PT interface {
	*T
	validator
}](s *Server, w http.ResponseWriter, r *http.Request, path string) {
	id, ok := sandboxID(w, r)
	if !ok {
		return
	}
	var v T
	body, err := readValid(w, r, PT(&v))
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	s.forward(w, r, id, path, body)
}

// handleForwardGet forwards a bodiless request to path.
func (s *Server) handleForwardGet(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if id, ok := sandboxID(w, r); ok {
			s.forward(w, r, id, path, []byte{})
		}
	}
}

func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	forwardJSON[api.CreateSessionRequest](s, w, r, "/sessions")
}

func (s *Server) handleDeleteSession(w http.ResponseWriter, r *http.Request) {
	id, ok := sandboxID(w, r)
	if !ok {
		return
	}
	sid := r.PathValue("sid")
	if err := api.ValidateSessionID(sid); err != nil {
		errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
		return
	}
	s.forward(w, r, id, "/sessions/"+url.PathEscape(sid), []byte{})
}

func (s *Server) handlePatchEnv(w http.ResponseWriter, r *http.Request) {
	id, ok := sandboxID(w, r)
	if !ok {
		return
	}
	var p api.EnvPatch
	body, err := readValid(w, r, &p)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	s.forward(sw, r, id, "/env", body)
	if sw.status == http.StatusOK {
		// Remember it, so a sandbox woken from a stop has it too.
		if err := s.cfg.Manager.PatchEnv(r.Context(), id, p); err != nil {
			s.log.Error("storing sandbox env", "id", id, "err", err)
		}
	}
}
