// Package backup is sbxd's side of backups and persistent sandboxes: it
// archives directories of sandboxes into the blob store, restores them
// atomically into any sandbox, garbage-collects expired backups, and keeps
// the file systems of persistent sandboxes.
//
// Everything streams: a backup is the tar stream of the sandbox's agent
// (GET /fs/tar), compressed with zstd and hashed on the fly into a
// blob.Store Put; a restore is the blob's stream, verified and
// decompressed on the fly into the agent's tar upload (PUT /fs/tar) into
// a staging directory beside the target, which the agent then swaps in
// with one rename (POST /backup/swap). No archive is ever held whole in
// memory or on disk. The archive format is described in archive.go.
//
// Backup metadata lives in the store's backups table, written only once the
// archive is complete, so a backup that failed half-way is never listed;
// the blob of a crash between the two is an orphan that GC removes.
package backup

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/blob"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/fstree"
	"github.com/sbx-dev/sbx/internal/sandbox"
	"github.com/sbx-dev/sbx/internal/store"
)

// Blob key prefixes.
const (
	backupPrefix  = "backups/"
	persistPrefix = "persist/"
)

// orphanAge is how old a blob under backups/ with no row must be before GC
// takes it for the leftover of a crash rather than a backup in progress.
const orphanAge = time.Hour

// Sandboxes gives access to running sandboxes; *sandbox.Manager is one.
type Sandboxes interface {
	// Acquire returns a lease on sandbox id, creating or waking it.
	Acquire(ctx context.Context, id string) (*sandbox.Lease, error)
}

// Config configures a Service.
type Config struct {
	Blobs     blob.Store
	DB        *store.Store
	Sandboxes Sandboxes
	Logger    *slog.Logger
	// GCInterval is how often Run collects expired backups (1m).
	GCInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service runs backups, restores and persistence. It is safe for
// concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GCInterval <= 0 {
		cfg.GCInterval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Logger}
}

func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "bk-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// storageErr marks a failure of the blob store.
func storageErr(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%w: %s: %v", errdefs.ErrStorageUnavailable, op, err)
}

// Create archives directory req.Dir of sandbox id (creating or waking it)
// into a new backup.
func (s *Service) Create(ctx context.Context, id string, req api.CreateBackupRequest) (api.Backup, error) {
	if err := req.Validate(); err != nil {
		return api.Backup{}, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	if _, err := fstree.ParseGlobs(req.Excludes); err != nil {
		return api.Backup{}, fmt.Errorf("%w: excludes: %v", errdefs.ErrInvalidArgument, err)
	}
	lease, err := s.cfg.Sandboxes.Acquire(ctx, id)
	if err != nil {
		return api.Backup{}, err
	}
	defer lease.Release()

	q := url.Values{"path": {req.Dir}}
	for _, e := range req.Excludes {
		q.Add("exclude", e)
	}
	if req.GitIgnore {
		q.Set("gitignore", "true")
	}
	resp, err := AgentDo(ctx, lease, http.MethodGet, "/fs/tar?"+q.Encode(), nil)
	if err != nil {
		return api.Backup{}, err
	}
	defer resp.Body.Close()

	now := s.cfg.Now().UTC()
	b := store.Backup{
		ID: newID(), SandboxID: id, Dir: req.Dir, Name: req.Name,
		Excludes: req.Excludes, GitIgnore: req.GitIgnore, CreatedAt: now,
	}
	if req.TTL > 0 {
		b.ExpiresAt = now.Add(time.Duration(req.TTL))
	}
	b.Key = backupPrefix + b.ID
	src := &sourceReader{r: resp.Body, what: fmt.Sprintf("reading %s from sandbox %s", req.Dir, id)}
	info, sum, err := s.put(ctx, b.Key, map[string]string{"sbx-kind": "backup", "sandbox": id}, func(w io.Writer) error {
		_, err := io.Copy(w, src)
		return err
	})
	if err != nil {
		var se *sourceError
		if errors.As(err, &se) {
			return api.Backup{}, fmt.Errorf("%w: backup of %s failed: %v", errdefs.ErrUnavailable, req.Dir, se.err)
		}
		return api.Backup{}, err
	}
	b.Size, b.SHA256 = info.Size, sum
	if err := s.cfg.DB.PutBackup(context.WithoutCancel(ctx), b); err != nil {
		s.deleteBlob(ctx, b.Key)
		return api.Backup{}, err
	}
	s.log.Info("backup created", "backup", b.ID, "sandbox", id, "dir", req.Dir, "bytes", b.Size)
	return view(b), nil
}

// put stores under key the archive that write produces, streaming, and
// returns the stored object and its SHA-256.
func (s *Service) put(ctx context.Context, key string, meta map[string]string, write func(io.Writer) error) (blob.Info, string, error) {
	pr, pw := io.Pipe()
	aw, err := NewWriter(pw)
	if err != nil {
		return blob.Info{}, "", err
	}
	done := make(chan error, 1)
	go func() {
		err := write(aw)
		if err == nil {
			err = aw.Close()
		} else {
			aw.Close()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	info, err := s.cfg.Blobs.Put(ctx, key, pr, blob.PutOptions{Metadata: meta})
	// Unblock the writer if Put gave up before reading everything.
	pr.CloseWithError(errStoreStopped)
	werr := <-done
	if err != nil {
		if werr != nil && !errors.Is(werr, errStoreStopped) && errors.Is(err, werr) {
			// The data failed, not the store.
			return blob.Info{}, "", werr
		}
		return blob.Info{}, "", storageErr("storing "+key, err)
	}
	if werr != nil {
		// Put cannot succeed without the writer's EOF; be safe anyway.
		s.deleteBlob(ctx, key)
		return blob.Info{}, "", werr
	}
	return info, aw.Sum(), nil
}

var errStoreStopped = errors.New("the blob store stopped reading")

// sourceReader marks read errors of the data being archived, so that they
// are reported as the sandbox's failure, not the store's.
type sourceReader struct {
	r    io.Reader
	what string
}

type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

func (r *sourceReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceError{fmt.Errorf("%s: %w (the sandbox's tar stream broke off)", r.what, err)}
	}
	return n, err
}

func (s *Service) deleteBlob(ctx context.Context, key string) {
	if err := s.cfg.Blobs.Delete(context.WithoutCancel(ctx), key); err != nil {
		s.log.Warn("removing blob", "key", key, "err", err)
	}
}

func view(b store.Backup) api.Backup {
	out := api.Backup{
		ID: b.ID, Sandbox: b.SandboxID, Dir: b.Dir, Name: b.Name, Size: b.Size, SHA256: b.SHA256,
		Excludes: b.Excludes, GitIgnore: b.GitIgnore, CreatedAt: b.CreatedAt,
	}
	if !b.ExpiresAt.IsZero() {
		t := b.ExpiresAt
		out.ExpiresAt = &t
	}
	return out
}

// lookup returns the row of a live backup.
func (s *Service) lookup(ctx context.Context, bid string) (store.Backup, error) {
	if err := api.ValidateBackupID(bid); err != nil {
		return store.Backup{}, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	b, err := s.cfg.DB.GetBackup(ctx, bid)
	if errors.Is(err, store.ErrNotFound) || err == nil && !b.ExpiresAt.IsZero() && !s.cfg.Now().Before(b.ExpiresAt) {
		return store.Backup{}, fmt.Errorf("%w: no backup %s (it may have expired); GET /v1/backups lists them", errdefs.ErrBackupNotFound, bid)
	}
	return b, err
}

// Get describes one backup.
func (s *Service) Get(ctx context.Context, bid string) (api.Backup, error) {
	b, err := s.lookup(ctx, bid)
	if err != nil {
		return api.Backup{}, err
	}
	return view(b), nil
}

// List returns the live backups, newest first; with a sandbox id, only
// those taken from it.
func (s *Service) List(ctx context.Context, sandboxID string) ([]api.Backup, error) {
	rows, err := s.cfg.DB.ListBackups(ctx, sandboxID)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	out := make([]api.Backup, 0, len(rows))
	for _, b := range rows {
		if !b.ExpiresAt.IsZero() && !now.Before(b.ExpiresAt) {
			continue
		}
		out = append(out, view(b))
	}
	return out, nil
}

// Delete removes a backup: its row first, so it is never listed without
// its archive, then the archive.
func (s *Service) Delete(ctx context.Context, bid string) error {
	b, err := s.lookup(ctx, bid)
	if err != nil {
		return err
	}
	return s.remove(ctx, b)
}

func (s *Service) remove(ctx context.Context, b store.Backup) error {
	if err := s.cfg.DB.DeleteBackup(ctx, b.ID); err != nil {
		return err
	}
	if err := s.cfg.Blobs.Delete(ctx, b.Key); err != nil {
		// GC removes the orphan later.
		s.log.Warn("backup deleted, its archive not yet", "backup", b.ID, "err", err)
	}
	return nil
}

// Restore replaces directory req.Dir (default: the backup's own) of
// sandbox id, creating or waking it, with the content of a backup. The
// replacement is atomic: if anything fails, including the archive's
// checksum, which is known only at its end, the directory is left as it
// was.
func (s *Service) Restore(ctx context.Context, id string, req api.RestoreRequest) (api.RestoreResult, error) {
	if err := req.Validate(); err != nil {
		return api.RestoreResult{}, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	b, err := s.lookup(ctx, req.Backup)
	if err != nil {
		return api.RestoreResult{}, err
	}
	dir := req.Dir
	if dir == "" {
		dir = b.Dir
	}
	rc, _, err := s.cfg.Blobs.Get(ctx, b.Key)
	if errors.Is(err, blob.ErrNotFound) {
		return api.RestoreResult{}, fmt.Errorf("%w: the archive of backup %s is missing from the blob store", errdefs.ErrArchiveCorrupt, b.ID)
	}
	if err != nil {
		return api.RestoreResult{}, storageErr("reading backup "+b.ID, err)
	}
	defer rc.Close()
	ar, err := NewReader(&sourceReader{r: rc, what: "reading backup " + b.ID + " from the blob store"})
	if err != nil {
		return api.RestoreResult{}, err
	}
	defer ar.Close()

	lease, err := s.cfg.Sandboxes.Acquire(ctx, id)
	if err != nil {
		return api.RestoreResult{}, err
	}
	defer lease.Release()

	staging := path.Join(path.Dir(dir), api.RestoreStagingPrefix+strings.TrimPrefix(newID(), "bk-"))
	abort := func() {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := swap(actx, lease, api.SwapRequest{Staging: staging, Dir: dir}); err != nil {
			s.log.Warn("removing restore staging directory", "sandbox", id, "dir", staging, "err", err)
		}
	}

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(pw, ar)
		if errors.Is(err, io.ErrClosedPipe) {
			// The agent stopped reading at the tar's end marker; the
			// rest of the archive must still be checked.
			err = ar.Verify()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	resp, err := AgentDo(ctx, lease, http.MethodPut, "/fs/tar?"+url.Values{"path": {staging}, "anySymlinkTarget": {"true"}, "keepOwners": {"true"}}.Encode(), pr)
	pr.Close()
	verr := <-done
	var tr api.TarResult
	if err == nil {
		err = json.NewDecoder(resp.Body).Decode(&tr)
		resp.Body.Close()
	}
	if verr != nil {
		// The archive's failure explains the agent's (a broken upload).
		var se *sourceError
		if errors.As(verr, &se) {
			verr = storageErr("reading backup "+b.ID, se.err)
		}
		err = verr
	}
	if err == nil && b.SHA256 != "" && ar.Sum() != b.SHA256 {
		// Whole and self-consistent, but not this backup's archive.
		err = fmt.Errorf("%w: the archive in the blob store is not the one backup %s recorded (SHA-256 %s, recorded %s); it was replaced",
			errdefs.ErrArchiveCorrupt, b.ID, ar.Sum(), b.SHA256)
	}
	if err != nil {
		abort()
		return api.RestoreResult{}, fmt.Errorf("restoring backup %s into %s of sandbox %s (the directory is unchanged): %w", b.ID, dir, id, err)
	}
	if err := swap(ctx, lease, api.SwapRequest{Staging: staging, Dir: dir, Commit: true}); err != nil {
		abort()
		return api.RestoreResult{}, fmt.Errorf("restoring backup %s into %s of sandbox %s (the directory is unchanged): %w", b.ID, dir, id, err)
	}
	s.log.Info("backup restored", "backup", b.ID, "sandbox", id, "dir", dir, "files", tr.Files, "bytes", tr.Bytes)
	return api.RestoreResult{Backup: b.ID, Dir: dir, Files: tr.Files, Directories: tr.Directories, Symlinks: tr.Symlinks, Bytes: tr.Bytes}, nil
}

func swap(ctx context.Context, lease *sandbox.Lease, req api.SwapRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	resp, err := AgentDo(ctx, lease, http.MethodPost, "/backup/swap", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// AgentDo sends a request to the sandbox's agent and turns an error
// answer into the agent's error (code and message kept).
func AgentDo(ctx context.Context, lease *sandbox.Lease, method, target string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+target, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		ct := "application/json"
		if strings.HasPrefix(target, "/fs/tar") {
			ct = "application/x-tar"
			// The agent answers once the tar's end marker is in; the
			// connection may still carry the stream's tail, so it is
			// not reused.
			req.Close = true
		}
		req.Header.Set("Content-Type", ct)
	}
	resp, err := lease.Agent().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, lease.AgentFailed(ctx, err)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e api.Error
	if json.Unmarshal(raw, &e) != nil || e.Code == "" {
		return nil, fmt.Errorf("%w: the agent answered %s: %s", errdefs.ErrUnavailable, resp.Status, strings.TrimSpace(string(raw)))
	}
	return nil, errdefs.FromAPI(resp.StatusCode, e)
}

// Run collects garbage every GCInterval until ctx ends.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		if err := s.GC(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("backup garbage collection", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// GC deletes expired backups and archives under backups/ that no row
// names (leftovers of a crash between storing an archive and recording
// it, or of a failed delete).
func (s *Service) GC(ctx context.Context) error {
	now := s.cfg.Now()
	expired, err := s.cfg.DB.ExpiredBackups(ctx, now)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range expired {
		if err := s.remove(ctx, b); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("backup expired", "backup", b.ID, "sandbox", b.SandboxID)
	}
	rows, err := s.cfg.DB.ListBackups(ctx, "")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	known := make(map[string]bool, len(rows))
	for _, b := range rows {
		known[b.Key] = true
	}
	for info, err := range s.cfg.Blobs.List(ctx, backupPrefix) {
		if err != nil {
			errs = append(errs, storageErr("listing backups", err))
			break
		}
		if !known[info.Key] && now.Sub(info.ModTime) > orphanAge {
			if err := s.cfg.Blobs.Delete(ctx, info.Key); err != nil {
				errs = append(errs, err)
			} else {
				s.log.Info("removed orphaned backup archive", "key", info.Key)
			}
		}
	}
	// Parts of uploads that failed while the store was down (S3).
	if sw, ok := s.cfg.Blobs.(blob.Sweeper); ok {
		for _, prefix := range []string{backupPrefix, persistPrefix} {
			n, err := sw.Sweep(ctx, prefix, now.Add(-orphanAge))
			if err != nil {
				errs = append(errs, storageErr("removing unfinished uploads", err))
			} else if n > 0 {
				s.log.Info("removed unfinished uploads", "prefix", prefix, "count", n)
			}
		}
	}
	return errors.Join(errs...)
}
