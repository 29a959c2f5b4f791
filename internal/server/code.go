package server

import (
	"fmt"
	"net/http"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
)

// codeRoutes are the code interpreter's: contexts and runs, served by the
// agent.
func (s *Server) codeRoutes() []route {
	return []route{
		{"POST", "/v1/sandboxes/{id}/contexts", true, s.handleCreateContext, opDoc{
			summary: "Create a code context: a long-lived python, javascript or typescript interpreter whose variables, imports and functions persist across runs. " +
				"400 INTERPRETER_NOT_AVAILABLE when the sandbox's image lacks the language (python needs IPython: use the \"python\" image).",
			request: api.CreateCodeContextRequest{}, response: api.CodeContext{}, status: http.StatusCreated}},
		{"GET", "/v1/sandboxes/{id}/contexts", true, s.handleListContexts, opDoc{
			summary: "List the sandbox's code contexts.", response: api.CodeContextList{}}},
		{"GET", "/v1/sandboxes/{id}/contexts/{cid}", true, s.handleContext, opDoc{
			summary: "Get a code context; 404 CONTEXT_NOT_FOUND if absent.", response: api.CodeContext{}}},
		{"DELETE", "/v1/sandboxes/{id}/contexts/{cid}", true, s.handleContext, opDoc{
			summary: "Delete a code context and stop its interpreter; 404 CONTEXT_NOT_FOUND if absent.", status: http.StatusNoContent}},
		{"POST", "/v1/sandboxes/{id}/code", true, s.handleRunCode, opDoc{
			summary: "Run code in a context (or the language's default context) and return its results, output and error. " +
				"With `Accept: text/event-stream` the same arrives as events while it runs: stdout, stderr, result, error, then complete.",
			request: api.RunCodeRequest{}, response: api.RunCodeResult{}, sse: "Accept: text/event-stream"}},
	}
}

func (s *Server) handleCreateContext(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	var req api.CreateCodeContextRequest
	body, err := readValid(w, r, &req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	s.forward(w, r, id, "/contexts", body)
}

func (s *Server) handleListContexts(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	s.forward(w, r, id, "/contexts", nil)
}

// handleContext serves GET and DELETE of one context.
func (s *Server) handleContext(w http.ResponseWriter, r *http.Request) {
	id, cid := r.PathValue("id"), r.PathValue("cid")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := api.ValidateContextID(cid); err != nil {
		errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
		return
	}
	s.forward(w, r, id, "/contexts/"+cid, nil)
}

func (s *Server) handleRunCode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	var req api.RunCodeRequest
	body, err := readValid(w, r, &req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	s.forward(w, r, id, "/code", body)
}
