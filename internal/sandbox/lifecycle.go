package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/backend"
)

// Recover reconciles the store with what the backend still runs after a
// daemon (re)start: running sandboxes whose agent answers are re-adopted,
// dead ones are cleaned up and marked stopped, and backend leftovers with no
// row are destroyed. It then starts the idle reaper.
func (m *Manager) Recover(ctx context.Context) error {
	recs, err := m.cfg.Store.List(ctx)
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(recs))
	for _, rec := range recs {
		known[rec.ID] = true
		e := m.entry(rec.ID)
		e.mu.Lock()
		e.rec, e.exists, e.loaded = rec, true, true
		e.lastActive.Store(rec.LastActiveAt.UnixNano())
		if rec.Status == api.StatusRunning {
			if err := m.adopt(ctx, e); err != nil {
				m.log.Warn("sandbox not re-adopted; cleaning up", "id", rec.ID, "err", err)
				if derr := m.cfg.Backend.Destroy(ctx, rec.ID); derr != nil {
					m.log.Error("cleaning up sandbox", "id", rec.ID, "err", derr)
				}
				e.rec.Status = api.StatusStopped
				if perr := m.cfg.Store.Put(ctx, e.rec); perr != nil {
					e.mu.Unlock()
					return perr
				}
			} else {
				m.log.Info("sandbox re-adopted", "id", rec.ID)
			}
		} else if err := m.cfg.Backend.Destroy(ctx, rec.ID); err != nil {
			// A stopped sandbox should have no resources; remove strays.
			m.log.Error("cleaning up stopped sandbox", "id", rec.ID, "err", err)
		}
		e.mu.Unlock()
	}
	ids, err := m.cfg.Backend.List(ctx)
	if err != nil {
		return fmt.Errorf("listing backend sandboxes: %w", err)
	}
	for _, id := range ids {
		if !known[id] {
			m.log.Warn("destroying orphaned sandbox with no record", "id", id)
			if err := m.cfg.Backend.Destroy(ctx, id); err != nil {
				m.log.Error("destroying orphan", "id", id, "err", err)
			}
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	m.stopReaper = cancel
	m.reaperDone = make(chan struct{})
	go m.reaper(rctx)
	return nil
}

// adopt attaches the backend's running instance of e if its agent answers.
// Caller holds e.mu.
func (m *Manager) adopt(ctx context.Context, e *entry) error {
	inst, err := m.cfg.Backend.Adopt(ctx, e.id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.running++
	m.mu.Unlock()
	m.attach(e, inst)
	hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := checkHealth(hctx, e.agent); err != nil {
		e.inst, e.agent = nil, nil
		m.mu.Lock()
		m.running--
		m.mu.Unlock()
		return err
	}
	return nil
}

func checkHealth(ctx context.Context, c *http.Client) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/health", nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h api.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.Status != "ok" {
		return errors.New("agent health check failed")
	}
	return nil
}

func (m *Manager) reaper(ctx context.Context) {
	defer close(m.reaperDone)
	t := time.NewTicker(m.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.reapOnce(ctx)
		}
	}
}

// reapOnce stops idle sandboxes, notices dead ones and saves activity.
func (m *Manager) reapOnce(ctx context.Context) {
	m.mu.Lock()
	entries := make([]*entry, 0, len(m.entries))
	for _, e := range m.entries {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	now := time.Now()
	for _, e := range entries {
		e.mu.Lock()
		if e.inst == nil {
			e.mu.Unlock()
			continue
		}
		last := time.Unix(0, e.lastActive.Load())
		idle := now.Sub(last)
		switch st, err := m.cfg.Backend.Status(ctx, e.id); {
		case err == nil && st != backend.StateRunning:
			m.log.Warn("sandbox died", "id", e.id, "state", st)
			if err := m.stopLocked(ctx, e, "died"); err != nil {
				m.log.Error("cleaning up dead sandbox", "id", e.id, "err", err)
			}
		case !e.rec.Options.KeepAlive && e.inflight.Load() == 0 && idle >= time.Duration(e.rec.Options.SleepAfter):
			if err := m.stopLocked(ctx, e, "idle"); err != nil {
				m.log.Error("stopping idle sandbox", "id", e.id, "err", err)
			}
		case last.After(e.rec.LastActiveAt):
			if err := m.cfg.Store.Touch(ctx, e.id, last); err == nil {
				e.rec.LastActiveAt = last.UTC()
			}
		}
		e.mu.Unlock()
	}
}

// Close stops the reaper and saves activity times. Sandboxes keep running;
// the next daemon re-adopts them.
func (m *Manager) Close() {
	if m.stopReaper != nil {
		m.stopReaper()
		<-m.reaperDone
	}
	m.mu.Lock()
	entries := make([]*entry, 0, len(m.entries))
	for _, e := range m.entries {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	for _, e := range entries {
		e.mu.Lock()
		if e.exists {
			_ = m.cfg.Store.Touch(context.Background(), e.id, time.Unix(0, e.lastActive.Load()))
		}
		e.mu.Unlock()
	}
}
