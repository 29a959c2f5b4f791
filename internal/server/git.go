package server

import (
	"net/http"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
)

// gitRoutes are the git routes, served by the agent. Credentials travel in
// the JSON body only, never in the path or query that the daemon logs.
func (s *Server) gitRoutes() []route {
	return []route{
		{"POST", "/v1/sandboxes/{id}/git/checkout", true, s.handleGitCheckout, opDoc{
			summary: "Clone a repository into the sandbox (default /workspace/<repo name>), optionally one branch or tag, optionally shallow. " +
				"Credentials (in the URL's userinfo, or username/token) are used once and never logged or left in the clone's .git/config. " +
				"Errors: 502 GIT_UNREACHABLE, 404 GIT_REPO_NOT_FOUND, 403 GIT_AUTH_FAILED, 404 GIT_BRANCH_NOT_FOUND, 409 TARGET_NOT_EMPTY.",
			request: api.GitCheckoutRequest{}, response: api.GitCheckoutResult{}}},
	}
}

func (s *Server) handleGitCheckout(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	var req api.GitCheckoutRequest
	body, err := readValid(w, r, &req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	s.forward(w, r, id, "/git/checkout", body)
}
