package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"

	"github.com/sbx-dev/sbx/api"
)

// CreateSession creates a session: a persistent bash in which cd, export,
// aliases and functions carry over between commands. req may be nil.
func (s *Sandbox) CreateSession(ctx context.Context, req *api.CreateSessionRequest) (*Session, error) {
	if req == nil {
		req = &api.CreateSessionRequest{}
	}
	var v api.Session
	if err := s.c.do(ctx, http.MethodPost, s.path("/sessions"), req, &v); err != nil {
		return nil, err
	}
	return &Session{sb: s, ID: v.ID, Info: v}, nil
}

// Sessions lists the sandbox's sessions.
func (s *Sandbox) Sessions(ctx context.Context) ([]api.Session, error) {
	var l api.SessionList
	if err := s.c.do(ctx, http.MethodGet, s.path("/sessions"), nil, &l); err != nil {
		return nil, err
	}
	return l.Sessions, nil
}

// DeleteSession ends session sid and kills every process started in it.
// Deleting api.DefaultSession resets it.
func (s *Sandbox) DeleteSession(ctx context.Context, sid string) error {
	return s.c.do(ctx, http.MethodDelete, s.path("/sessions/"+url.PathEscape(sid)), nil, nil)
}

// SetEnv sets (non-nil value) and unsets (nil) variables for every later
// command in every session. It returns the environment new commands get.
func (s *Sandbox) SetEnv(ctx context.Context, patch api.EnvPatch) (map[string]string, error) {
	var v api.SandboxEnv
	if err := s.c.do(ctx, http.MethodPatch, s.path("/env"), patch, &v); err != nil {
		return nil, err
	}
	return v.Env, nil
}

// Session is a handle on one session. Nothing is sent until a method is
// called; api.DefaultSession always exists.
type Session struct {
	sb   *Sandbox
	ID   string
	Info api.Session // as created; zero for handles from Sandbox.Session
}

// Session returns a handle on session sid.
func (s *Sandbox) Session(sid string) *Session { return &Session{sb: s, ID: sid} }

// Exec runs command in the session.
func (s *Session) Exec(ctx context.Context, command string, opts ...ExecOption) (*api.ExecResult, error) {
	return s.sb.Exec(ctx, command, append(opts, WithSession(s.ID))...)
}

// ExecStream runs command in the session, streaming its events.
func (s *Session) ExecStream(ctx context.Context, command string, opts ...ExecOption) iter.Seq2[ExecEvent, error] {
	return s.sb.ExecStream(ctx, command, append(opts, WithSession(s.ID))...)
}

// Delete ends the session.
func (s *Session) Delete(ctx context.Context) error { return s.sb.DeleteSession(ctx, s.ID) }
