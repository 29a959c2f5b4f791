package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

var (
	signalParam = param{"signal", "string", "First signal sent to the process tree: TERM (default), INT, HUP, QUIT, USR1, USR2, KILL or a number. Whatever is left after graceMs is SIGKILLed."}
	graceParam  = param{"graceMs", "integer", "How long the tree may take to exit before SIGKILL; default 5000."}
)

func (s *Server) processRoutes() []route {
	return []route{
		{"POST", "/v1/sandboxes/{id}/processes", true, s.handleStartProcess, opDoc{
			summary: "Start a background process (`bash -c command`). Its record and logs live in the sandbox's agent: they outlive client " +
				"connections and daemon restarts. Routes take its id or its pid as {pid}.",
			request: api.StartProcessRequest{}, response: api.Process{}, status: http.StatusCreated}},
		{"GET", "/v1/sandboxes/{id}/processes", true, s.handleForwardGet("/processes"), opDoc{
			summary: "List background processes, running and ended, in start order.", response: api.ProcessList{}}},
		{"DELETE", "/v1/sandboxes/{id}/processes", true, s.handleKillProcess, opDoc{
			summary:  "Kill every running background process (whole trees, as DELETE .../processes/{pid}). Returns how many.",
			response: api.KillAllResult{}, query: []param{signalParam, graceParam}}},
		{"GET", "/v1/sandboxes/{id}/processes/{pid}", true, s.handleProcess(""), opDoc{
			summary:  "Get a background process by id or pid: status starting, running, completed, failed or killed, exitCode and endedAt once ended.",
			response: api.Process{}}},
		{"DELETE", "/v1/sandboxes/{id}/processes/{pid}", true, s.handleKillProcess, opDoc{
			summary: "Kill a background process and its whole tree, however detached: signal, then SIGKILL after graceMs. " +
				"Returns the ended record. On an ended process it kills what it left behind.",
			response: api.Process{}, query: []param{signalParam, graceParam}}},
		{"GET", "/v1/sandboxes/{id}/processes/{pid}/logs", true, s.handleProcess("/logs"), opDoc{
			summary: "The process's stdout and stderr, kept in bounded buffers (oldest bytes dropped, counted in *DroppedBytes). " +
				"With follow=1: a stream of events from the beginning, then live: dropped{stream,bytes}, stdout{data}, stderr{data}, and exit{exitCode,status} at the end.",
			response: api.ProcessLogs{}, sse: "follow=1", query: []param{{"follow", "boolean", "1 to stream the log as server-sent events until the process ends."}}}},
		{"POST", "/v1/sandboxes/{id}/processes/{pid}/wait", true, s.handleWait, opDoc{
			summary: "Block until the process is ready by one condition: a log line matching a regular expression, a port accepting TCP, " +
				"an HTTP path on a port answering with a status in a range, or its exit. PROCESS_EXITED (409) if it ends first; WAIT_TIMEOUT (408) when time runs out.",
			request: api.WaitRequest{}, response: api.WaitResult{}}},
	}
}

// processPath validates {id} and {pid} and returns the agent path for the
// process with suffix.
func processPath(w http.ResponseWriter, r *http.Request, suffix string) (string, string, bool) {
	id, ok := sandboxID(w, r)
	if !ok {
		return "", "", false
	}
	ref := r.PathValue("pid")
	if ref == "" {
		return id, "/processes", true
	}
	if err := api.ValidateProcessRef(ref); err != nil {
		errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
		return "", "", false
	}
	return id, "/processes/" + url.PathEscape(ref) + suffix, true
}

func (s *Server) handleStartProcess(w http.ResponseWriter, r *http.Request) {
	forwardJSON[api.StartProcessRequest](s, w, r, "/processes")
}

func (s *Server) handleProcess(suffix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, path, ok := processPath(w, r, suffix)
		if !ok {
			return
		}
		if f := r.URL.Query().Get("follow"); f != "" && f != "0" && f != "1" && f != "true" && f != "false" {
			errdefs.Write(w, fmt.Errorf("%w: follow=%q: use follow=1 to stream the log", errdefs.ErrInvalidArgument, f))
			return
		}
		s.forward(w, r, id, path, []byte{})
	}
}

func (s *Server) handleKillProcess(w http.ResponseWriter, r *http.Request) {
	id, path, ok := processPath(w, r, "")
	if !ok {
		return
	}
	q := r.URL.Query()
	if _, err := api.ParseSignal(q.Get("signal")); err != nil {
		errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
		return
	}
	if g := q.Get("graceMs"); g != "" {
		if ms, err := strconv.ParseInt(g, 10, 64); err != nil || ms < 0 || ms > 3_600_000 {
			errdefs.Write(w, fmt.Errorf("%w: graceMs %q: use milliseconds from 0 to 3600000", errdefs.ErrInvalidArgument, g))
			return
		}
	}
	s.forward(w, r, id, path, []byte{})
}

func (s *Server) handleWait(w http.ResponseWriter, r *http.Request) {
	_, path, ok := processPath(w, r, "/wait")
	if !ok {
		return
	}
	forwardJSON[api.WaitRequest](s, w, r, path)
}
