// Package agent is the sandbox side of sbx: the HTTP API that sbx-agent
// serves on a unix socket from inside each sandbox, running as its PID 1.
// Each operation lives in its own file (exec.go, …); the routes are wired in
// this one.
package agent

import (
	"net/http"
	"os/exec"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// Version is reported by GET /health.
var Version = "dev"

// Config tunes the agent.
type Config struct {
	// DefaultCwd is the working directory of commands that name none.
	DefaultCwd string
	// OutputCap is the most bytes kept per output stream of a
	// non-streaming exec; the rest is discarded and the result flagged.
	OutputCap int64
	// Shell is the bash that runs commands; empty means bash found on
	// $PATH, else /bin/bash.
	Shell string
	// FileRoot is the directory that the file routes call "/"; empty
	// means "/", the sandbox's root. Tests point it at a temporary dir.
	FileRoot string
	// CodePool is how many started interpreters per language wait for new
	// code contexts, filled after the language's first use; 0 means 1,
	// negative means none (see interp.go).
	CodePool int
	// CodeDir is where the code interpreter's runner scripts are written;
	// empty means /run/sbx/interp.
	CodeDir string

	// ExecConfig tunes sessions, background processes and terminals.
	ExecConfig
}

// Agent serves the sandbox-side API.
type Agent struct {
	cfg Config
	mux *http.ServeMux

	// execState holds sessions, background processes and terminals.
	execState
}

// New returns an agent with its routes registered. It starts the process's
// child reaper (see reap_linux.go); from then on nothing else in the process
// may wait for child processes.
func New(cfg Config) *Agent {
	if cfg.DefaultCwd == "" {
		cfg.DefaultCwd = "/workspace"
	}
	if cfg.OutputCap <= 0 {
		cfg.OutputCap = 16 << 20
	}
	if cfg.Shell == "" {
		cfg.Shell = "/bin/bash"
		if p, err := exec.LookPath("bash"); err == nil {
			cfg.Shell = p
		}
	}
	// Start reaping at once: as PID 1 the agent inherits every orphan of
	// the sandbox, whether or not it has run a command yet.
	theReaper()
	a := &Agent{cfg: cfg, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /health", a.handleHealth)
	a.registerTunnel()
	a.registerGit()
	a.registerExec()
	a.registerFiles()
	a.registerCode()
	a.registerBackup()
	return a
}

func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	errdefs.WriteJSON(w, http.StatusOK, api.Health{Status: "ok", Version: Version})
}
