package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Backup is the stored form of one backup: a complete archive in the blob
// store under Key. Rows are inserted only once the archive is stored, so
// every row names a whole archive.
type Backup struct {
	ID        string
	SandboxID string
	Dir       string
	Name      string
	Key       string
	Size      int64
	SHA256    string
	Excludes  []string
	GitIgnore bool
	CreatedAt time.Time
	// ExpiresAt is zero for a backup kept until deleted.
	ExpiresAt time.Time
}

// backupsSchema is created by Open.
const backupsSchema = `
CREATE TABLE IF NOT EXISTS backups (
	id          TEXT PRIMARY KEY,
	sandbox_id  TEXT NOT NULL,
	dir         TEXT NOT NULL,
	name        TEXT NOT NULL DEFAULT '',
	blob_key    TEXT NOT NULL,
	size        INTEGER NOT NULL,
	sha256      TEXT NOT NULL,
	excludes    TEXT NOT NULL DEFAULT '[]',
	gitignore   INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS backups_expiry ON backups (expires_at) WHERE expires_at != 0;`

// PutBackup inserts a backup row; an existing id is an error.
func (s *Store) PutBackup(ctx context.Context, b Backup) error {
	ex, err := json.Marshal(b.Excludes)
	if err != nil {
		return err
	}
	gi := 0
	if b.GitIgnore {
		gi = 1
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO backups
		(id, sandbox_id, dir, name, blob_key, size, sha256, excludes, gitignore, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		b.ID, b.SandboxID, b.Dir, b.Name, b.Key, b.Size, b.SHA256, string(ex), gi,
		b.CreatedAt.UnixMilli(), unixMilliOrZero(b.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store backup %s: %w", b.ID, err)
	}
	return nil
}

// GetBackup returns one backup, or an error wrapping ErrNotFound.
func (s *Store) GetBackup(ctx context.Context, id string) (Backup, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+backupCols+` FROM backups WHERE id=?`, id)
	b, err := scanBackup(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Backup{}, fmt.Errorf("backup %s: %w", id, ErrNotFound)
	}
	return b, err
}

// ListBackups returns the backups, newest first; with a non-empty
// sandboxID only that sandbox's.
func (s *Store) ListBackups(ctx context.Context, sandboxID string) ([]Backup, error) {
	q := `SELECT ` + backupCols + ` FROM backups`
	var args []any
	if sandboxID != "" {
		q += ` WHERE sandbox_id=?`
		args = append(args, sandboxID)
	}
	q += ` ORDER BY created_at DESC, id`
	return s.queryBackups(ctx, q, args...)
}

// ExpiredBackups returns the backups whose expiry is at or before t.
func (s *Store) ExpiredBackups(ctx context.Context, t time.Time) ([]Backup, error) {
	return s.queryBackups(ctx, `SELECT `+backupCols+` FROM backups
		WHERE expires_at != 0 AND expires_at <= ? ORDER BY expires_at`, t.UnixMilli())
}

// DeleteBackup removes a backup row; deleting an absent row is not an
// error.
func (s *Store) DeleteBackup(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM backups WHERE id=?`, id)
	return err
}

const backupCols = `id, sandbox_id, dir, name, blob_key, size, sha256, excludes, gitignore, created_at, expires_at`

func (s *Store) queryBackups(ctx context.Context, q string, args ...any) ([]Backup, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Backup
	for rows.Next() {
		b, err := scanBackup(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func scanBackup(r scanner) (Backup, error) {
	var (
		b                Backup
		ex               string
		gi               int
		created, expires int64
	)
	if err := r.Scan(&b.ID, &b.SandboxID, &b.Dir, &b.Name, &b.Key, &b.Size, &b.SHA256, &ex, &gi, &created, &expires); err != nil {
		return Backup{}, err
	}
	if err := json.Unmarshal([]byte(ex), &b.Excludes); err != nil {
		return Backup{}, fmt.Errorf("backup %s: corrupt excludes: %w", b.ID, err)
	}
	b.GitIgnore = gi != 0
	b.CreatedAt = time.UnixMilli(created).UTC()
	if expires != 0 {
		b.ExpiresAt = time.UnixMilli(expires).UTC()
	}
	return b, nil
}

func unixMilliOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
