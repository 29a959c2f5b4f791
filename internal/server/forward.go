package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
)

// maxJSONBody bounds JSON request bodies the daemon inspects.
const maxJSONBody = 64 << 20

// readJSON reads and strictly decodes a JSON body, returning its bytes for
// forwarding.
func readJSON(w http.ResponseWriter, r *http.Request, v any) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		return nil, fmt.Errorf("%w: reading request body: %v", errdefs.ErrInvalidArgument, err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := errdefs.DecodeJSON(r, v); err != nil {
		return nil, err
	}
	return body, nil
}

// execRoutes are the routes of command execution: exec, the sandbox env,
// sessions, background processes and terminals.
// validator is a request body that checks itself before anything runs.
type validator interface{ Validate() error }

// readValid reads a strict JSON body into v and validates it; every problem
// is an ErrInvalidArgument saying what to fix. It returns the body for
// forwarding.
func readValid(w http.ResponseWriter, r *http.Request, v validator) ([]byte, error) {
	body, err := readJSON(w, r, v)
	if err != nil {
		return nil, err
	}
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	return body, nil
}

func (s *Server) execRoutes() []route {
	rs := []route{
		{"POST", "/v1/sandboxes/{id}/exec", true, s.handleExec, opDoc{
			summary: "Run `bash -c command` in the sandbox, creating or waking it first. A non-zero exit code is a result, not an error. " +
				"With session, the command runs in that session's persistent shell (SESSION_NOT_FOUND, SESSION_TERMINATED if it ran `exit`). " +
				"With Accept: text/event-stream the answer is a stream of events start{pid}, stdout{data,base64?}, stderr{data,base64?}, " +
				"then complete{exitCode,success,durationMs,timedOut} once the command really exited, or error{code,message} if its fate is unknown.",
			request: api.ExecRequest{}, response: api.ExecResult{}, sse: "Accept: text/event-stream"}},
		{"PATCH", "/v1/sandboxes/{id}/env", true, s.handlePatchEnv, opDoc{
			summary: `Set ("K":"v") and unset ("K":null) environment variables for every later command, in every session, background process and terminal. Names must be shell identifiers.`,
			request: api.EnvPatch{}, response: api.SandboxEnv{}}},
	}
	rs = append(rs, s.sessionRoutes()...)
	rs = append(rs, s.processRoutes()...)
	rs = append(rs, s.ptyRoutes()...)
	return rs
}

func (s *Server) handleExec(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	var req api.ExecRequest
	body, err := readValid(w, r, &req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	s.forward(w, r, id, "/exec", body)
}

// hopHeaders are not forwarded to the agent.
var hopHeaders = map[string]bool{
	"Authorization": true, "Connection": true, "Keep-Alive": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Proxy-Authorization": true,
}

// agentRequest is r addressed to the agent at path, with r's query and its
// end-to-end headers, and body.
func agentRequest(r *http.Request, path string, body io.Reader) (*http.Request, error) {
	target := "http://agent" + path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, target, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range r.Header {
		if !hopHeaders[k] {
			out.Header[k] = vs
		}
	}
	return out, nil
}

// forward sends r (with body) to the agent of sandbox id at path and streams
// the answer back. Agent failures become SANDBOX_UNAVAILABLE errors, sent as
// an SSE error event when a stream had already begun.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, id, path string, body []byte) {
	lease, err := s.cfg.Manager.Acquire(r.Context(), id)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	defer lease.Release()

	var rd io.Reader = r.Body
	if body != nil {
		rd = bytes.NewReader(body)
	}
	out, err := agentRequest(r, path, rd)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	if body != nil {
		out.ContentLength = int64(len(body))
	} else {
		out.ContentLength = r.ContentLength
	}
	resp, err := lease.Agent().Do(out)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away; nobody to answer
		}
		errdefs.Write(w, lease.AgentFailed(r.Context(), err))
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		if !hopHeaders[k] {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	streaming := resp.Header.Get("Content-Type") == "text/event-stream"
	if err := copyFlushing(w, resp.Body, streaming); err != nil && !errors.Is(err, errClientGone) && r.Context().Err() == nil {
		if streaming {
			// Tell the client at once; finding out whether the sandbox
			// died, and cleaning it up, can take a while.
			b, _ := json.Marshal(api.Error{Code: api.CodeSandboxUnavailable, Message: fmt.Sprintf(
				"lost the connection to sandbox %s mid-stream (its agent or the sandbox died: %v); what was running has no known outcome", id, err)})
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
			http.NewResponseController(w).Flush()
		}
		cause := lease.AgentFailed(r.Context(), err)
		s.log.Warn("forwarding from agent failed", "id", id, "path", path, "err", err, "cause", cause)
	}
}

var errClientGone = errors.New("client went away")

// copyFlushing copies src to w; when streaming, every chunk is flushed at
// once so events reach the client as they happen.
func copyFlushing(w http.ResponseWriter, src io.Reader, streaming bool) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return errClientGone
			}
			if streaming {
				if ferr := rc.Flush(); ferr != nil {
					return errClientGone
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
