package api

import (
	"errors"
	"fmt"
	"strings"
)

// EnvPatch is the body of PATCH /v1/sandboxes/{id}/env: each key is set to
// its value, or unset when the value is null. The change applies to every
// later command in every session, background process and terminal.
type EnvPatch map[string]*string

// Validate checks names and values. Names must be shell identifiers so
// that every session's shell can export them.
func (p EnvPatch) Validate() error {
	if len(p) == 0 {
		return errors.New(`env patch is empty; send an object like {"KEY":"value","OLD":null}`)
	}
	for k, v := range p {
		if !IsShellName(k) {
			return fmt.Errorf("environment variable name %q cannot be exported by a shell; use letters, digits and '_', not starting with a digit", k)
		}
		if v != nil && strings.ContainsRune(*v, 0) {
			return fmt.Errorf("environment variable %s: value must not contain NUL", k)
		}
	}
	return nil
}

// SandboxEnv is the answer to PATCH /v1/sandboxes/{id}/env: the environment
// new commands start with, after the patch.
type SandboxEnv struct {
	Env map[string]string `json:"env"`
}
