package agent

import (
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// sandboxEnv is the environment every new command starts from: the
// agent's own, changed by PATCH /env. Sessions started before a change
// catch up before their next command (see session.go).
type sandboxEnv struct {
	mu      sync.Mutex
	base    []string
	overlay map[string]*string // nil value: unset
	version uint64
	merged  []string // base with overlay applied, for version
}

func newSandboxEnv() *sandboxEnv {
	// An agent started under another one (tests in a sandbox) must not
	// pass its own tag on: the first of two entries would win.
	base := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, tagVar+"=") })
	e := &sandboxEnv{base: base, overlay: map[string]*string{}}
	e.merged = e.base
	return e
}

// environ returns the environment of a new command. The slice is shared:
// callers must not modify it.
func (e *sandboxEnv) environ() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.merged
}

// state returns the environment of a new command with the overlay and
// version it reflects.
func (e *sandboxEnv) state() ([]string, map[string]*string, uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.merged, maps.Clone(e.overlay), e.version
}

// snapshot returns a copy of the overlay and its version.
func (e *sandboxEnv) snapshot() (map[string]*string, uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.overlay), e.version
}

// currentVersion is the version of the overlay.
func (e *sandboxEnv) currentVersion() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.version
}

// apply records a patch.
func (e *sandboxEnv) apply(p api.EnvPatch) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, v := range p {
		if v != nil {
			s := *v
			v = &s
		}
		e.overlay[k] = v
	}
	e.version++
	env := make([]string, 0, len(e.base)+len(e.overlay))
	for _, kv := range e.base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := e.overlay[k]; !ok {
			env = append(env, kv)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(e.overlay)) {
		if v := e.overlay[k]; v != nil {
			env = append(env, k+"="+*v)
		}
	}
	e.merged = env
	return env
}

func (a *Agent) registerEnv() {
	a.mux.HandleFunc("PATCH /env", a.handlePatchEnv)
}

// handlePatchEnv serves PATCH /env: {"K":"v","K2":null} sets K and unsets
// K2 for every later command in every session.
func (a *Agent) handlePatchEnv(w http.ResponseWriter, r *http.Request) {
	var p api.EnvPatch
	if err := errdefs.DecodeJSON(r, &p); err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := p.Validate(); err != nil {
		errdefs.Write(w, invalid(err))
		return
	}
	env := a.env.apply(p)
	out := api.SandboxEnv{Env: make(map[string]string, len(env))}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		out.Env[k] = v
	}
	errdefs.WriteJSON(w, http.StatusOK, out)
}
