package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sbx-dev/sbx/internal/backend"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// FSStore keeps the file systems of persistent sandboxes, one snapshot per
// sandbox id. *backup.Service is one.
type FSStore interface {
	// SaveFS stores the snapshot that write produces as id's file system,
	// replacing the previous one only once it is complete, and returns
	// its stored size. A failure leaves the previous snapshot in place.
	SaveFS(ctx context.Context, id string, write func(io.Writer) error) (int64, error)
	// LoadFS opens id's snapshot stream, which fails at its end if the
	// stored snapshot is corrupt; errdefs.ErrNotFound if there is none.
	LoadFS(ctx context.Context, id string) (io.ReadCloser, error)
	// DeleteFS removes id's snapshot; none is not an error.
	DeleteFS(ctx context.Context, id string) error
}

// DestroyOptions adjust Destroy.
type DestroyOptions struct {
	// Purge also removes the stored file system of a persistent sandbox
	// (without it, the file system is saved and kept for the next
	// sandbox created with that id and persistent: true).
	Purge bool
}

// persister returns the backend's Persister if persistence is configured.
func (m *Manager) persister() (backend.Persister, bool) {
	p, ok := m.cfg.Backend.(backend.Persister)
	return p, ok && m.cfg.FS != nil && m.cfg.Backend.Capabilities().Persistence
}

// checkPersistent refuses persistent sandboxes where persistence is not
// available.
func (m *Manager) checkPersistent() error {
	if _, ok := m.persister(); !ok {
		return fmt.Errorf("%w: persistent sandboxes need a blob store and a backend that can snapshot (this daemon has none configured)",
			errdefs.ErrInvalidArgument)
	}
	return nil
}

// openUpper returns the stored file system of a persistent sandbox for
// Spec.Upper, or nil if it has none yet. Caller holds e.mu.
func (m *Manager) openUpper(ctx context.Context, e *entry) (io.ReadCloser, error) {
	if !e.rec.Options.Persistent {
		return nil, nil
	}
	if err := m.checkPersistent(); err != nil {
		return nil, err
	}
	rc, err := m.cfg.FS.LoadFS(ctx, e.id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading the file system of persistent sandbox %s: %w", e.id, err)
	}
	return rc, nil
}

// saveUpper snapshots the file system of a running persistent sandbox
// into the FSStore. On failure the sandbox is left running as it was, so
// nothing is lost; the caller must not destroy it. Caller holds e.mu.
func (m *Manager) saveUpper(ctx context.Context, e *entry) error {
	if e.inst == nil || !e.rec.Options.Persistent {
		return nil
	}
	p, ok := m.persister()
	if !ok {
		return m.checkPersistent()
	}
	ctx = context.WithoutCancel(ctx)
	t0 := time.Now()
	size, err := m.cfg.FS.SaveFS(ctx, e.id, func(w io.Writer) error {
		return p.Snapshot(ctx, e.id, w)
	})
	if err != nil {
		return fmt.Errorf("saving the file system of persistent sandbox %s failed, so it keeps running: %w", e.id, err)
	}
	m.log.Info("sandbox file system saved", "id", e.id, "bytes", size, "ms", time.Since(t0).Milliseconds())
	return nil
}

// startErr explains a failed start of a persistent sandbox whose stored
// file system is the cause.
func startErr(e *entry, err error) error {
	if errors.Is(err, errdefs.ErrArchiveCorrupt) {
		return fmt.Errorf("%w: the stored file system of persistent sandbox %s is corrupt (%v); destroy it with ?purge=true to start afresh",
			errdefs.ErrArchiveCorrupt, e.id, err)
	}
	return err
}
