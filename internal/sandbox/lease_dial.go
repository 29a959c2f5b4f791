package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ErrNotRunning is returned (wrapped) by AcquireRunning for a sandbox that
// is stopped or absent.
var ErrNotRunning = errors.New("sandbox is not running")

// AcquireRunning returns a lease on sandbox id if it is running. Unlike
// Acquire it never creates or starts a sandbox: traffic that must not wake
// one (preview URLs) uses it.
func (m *Manager) AcquireRunning(ctx context.Context, id string) (*Lease, error) {
	m.mu.Lock()
	e := m.entries[id]
	m.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("sandbox %s: %w", id, ErrNotRunning)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.deleted || e.inst == nil {
		return nil, fmt.Errorf("sandbox %s: %w", id, ErrNotRunning)
	}
	e.inflight.Add(1)
	e.lastActive.Store(time.Now().UnixNano())
	return &Lease{m: m, e: e, agent: e.agent}, nil
}

// Dial opens a raw connection to the sandbox's agent socket, for protocols
// that take the connection over after an HTTP upgrade (port tunnels). The
// caller closes it; it does not keep the lease.
func (l *Lease) Dial(ctx context.Context) (net.Conn, error) {
	t, ok := l.agent.Transport.(*http.Transport)
	if !ok || t.DialContext == nil {
		return nil, errors.New("the agent client of sandbox " + l.e.id + " cannot dial")
	}
	return t.DialContext(ctx, "unix", "agent")
}
