package backup

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/sbx-dev/sbx/internal/blob"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// The file systems of persistent sandboxes are archives (archive.go) of
// the backend's snapshot tar stream, one per sandbox under
// persist/<sandbox id>. Each save replaces the previous one atomically (a
// blob Put), so a failed save leaves the last good snapshot in place. The
// methods below implement sandbox.FSStore.

func persistKey(id string) string { return persistPrefix + id }

// SaveFS stores the snapshot that write produces as sandbox id's file
// system, replacing the previous one only once it is complete. It returns
// the stored size.
func (s *Service) SaveFS(ctx context.Context, id string, write func(io.Writer) error) (int64, error) {
	info, _, err := s.put(ctx, persistKey(id), map[string]string{"sbx-kind": "persist", "sandbox": id}, write)
	if err != nil {
		return 0, err
	}
	return info.Size, nil
}

// LoadFS opens sandbox id's stored file system: the decompressed snapshot
// stream, which fails with an error wrapping ErrCorrupt at its end if the
// archive does not verify. It returns an error wrapping errdefs.ErrNotFound
// if there is none.
func (s *Service) LoadFS(ctx context.Context, id string) (io.ReadCloser, error) {
	rc, _, err := s.cfg.Blobs.Get(ctx, persistKey(id))
	if errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("no stored file system for sandbox %s: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, storageErr("reading the file system of sandbox "+id, err)
	}
	ar, err := NewReader(&sourceReader{r: rc, what: "reading the file system of sandbox " + id})
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &fsReader{Reader: ar, rc: rc}, nil
}

type fsReader struct {
	*Reader
	rc io.Closer
}

func (r *fsReader) Close() error {
	r.Reader.Close()
	return r.rc.Close()
}

// DeleteFS removes sandbox id's stored file system; none is not an error.
func (s *Service) DeleteFS(ctx context.Context, id string) error {
	if err := s.cfg.Blobs.Delete(ctx, persistKey(id)); err != nil {
		return storageErr("deleting the file system of sandbox "+id, err)
	}
	return nil
}
