package api

import (
	"errors"
	"fmt"
	"strings"
)

// ValidateEnv checks environment variable names: non-empty, without '=' or
// NUL. Values may be anything but NUL.
func ValidateEnv(env map[string]string) error {
	for k, v := range env {
		if k == "" {
			return errors.New("environment variable names must not be empty")
		}
		if strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("environment variable name %q must not contain '=' or NUL", k)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("environment variable %s: value must not contain NUL", k)
		}
	}
	return nil
}

// Validate checks an exec request before anything runs. Both sbxd and the
// agent call it, so a bad request never starts a sandbox.
func (r *ExecRequest) Validate() error {
	if strings.TrimSpace(r.Command) == "" {
		return errors.New("command is empty; pass a shell command such as \"ls -la\"")
	}
	if strings.ContainsRune(r.Command, 0) {
		return errors.New("command must not contain NUL bytes")
	}
	if r.TimeoutMs < 0 {
		return fmt.Errorf("timeoutMs must be 0 (no timeout) or positive, not %d", r.TimeoutMs)
	}
	if r.Cwd != "" && !strings.HasPrefix(r.Cwd, "/") {
		return fmt.Errorf("cwd %q must be an absolute path", r.Cwd)
	}
	if r.Session != "" {
		if err := ValidateSessionID(r.Session); err != nil {
			return err
		}
	}
	return ValidateEnv(r.Env)
}
