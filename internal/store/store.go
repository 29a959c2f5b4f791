// Package store keeps sbxd's metadata in an embedded SQLite database
// (modernc.org/sqlite, no cgo): one row per sandbox with its options and
// lifecycle state, so that sandboxes outlive the daemon.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/sbx-dev/sbx/api"
)

// ErrNotFound is returned (wrapped) for ids with no row.
var ErrNotFound = errors.New("no such record")

// Sandbox is the stored form of one sandbox.
type Sandbox struct {
	ID           string
	Status       string // api.StatusRunning or api.StatusStopped
	Options      api.CreateSandboxRequest
	CreatedAt    time.Time
	LastActiveAt time.Time
}

// Store is the metadata database. It is safe for concurrent use.
type Store struct {
	db *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS sandboxes (
	id             TEXT PRIMARY KEY,
	status         TEXT NOT NULL,
	options        TEXT NOT NULL,
	created_at     INTEGER NOT NULL,
	last_active_at INTEGER NOT NULL
);`

// Open opens (creating if needed) the database at path.
func Open(path string) (*Store, error) {
	// WAL lets readers proceed during writes; busy_timeout rides out the
	// brief lock of a concurrent writer instead of failing.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// One writer at a time is what SQLite allows anyway; a single
	// connection avoids SQLITE_BUSY between our own goroutines.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema + portsSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise database %s: %w", path, err)
	}
	if _, err := db.Exec(backupsSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise database %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Put inserts or replaces a sandbox row.
func (s *Store) Put(ctx context.Context, sb Sandbox) error {
	opts, err := json.Marshal(sb.Options)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO sandboxes (id, status, options, created_at, last_active_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET status=excluded.status, options=excluded.options,
			created_at=excluded.created_at, last_active_at=excluded.last_active_at`,
		sb.ID, sb.Status, string(opts), sb.CreatedAt.UnixMilli(), sb.LastActiveAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("store sandbox %s: %w", sb.ID, err)
	}
	return nil
}

// SetStatus updates the status and last activity of a sandbox.
func (s *Store) SetStatus(ctx context.Context, id, status string, lastActive time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE sandboxes SET status=?, last_active_at=? WHERE id=?`,
		status, lastActive.UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("update sandbox %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sandbox %s: %w", id, ErrNotFound)
	}
	return nil
}

// Touch records activity without changing the status.
func (s *Store) Touch(ctx context.Context, id string, lastActive time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE sandboxes SET last_active_at=? WHERE id=? AND last_active_at<?`,
		lastActive.UnixMilli(), id, lastActive.UnixMilli())
	return err
}

// Get returns one sandbox.
func (s *Store) Get(ctx context.Context, id string) (Sandbox, error) {
	row := s.db.QueryRowContext(ctx, `SELECT id, status, options, created_at, last_active_at FROM sandboxes WHERE id=?`, id)
	sb, err := scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Sandbox{}, fmt.Errorf("sandbox %s: %w", id, ErrNotFound)
	}
	return sb, err
}

// List returns every sandbox ordered by id.
func (s *Store) List(ctx context.Context) ([]Sandbox, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, status, options, created_at, last_active_at FROM sandboxes ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Sandbox
	for rows.Next() {
		sb, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sb)
	}
	return out, rows.Err()
}

// Delete removes a sandbox row; deleting an absent row is not an error.
func (s *Store) Delete(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sandboxes WHERE id=?`, id)
	return err
}

type scanner interface{ Scan(...any) error }

func scan(r scanner) (Sandbox, error) {
	var (
		sb             Sandbox
		opts           string
		created, lastA int64
	)
	if err := r.Scan(&sb.ID, &sb.Status, &opts, &created, &lastA); err != nil {
		return Sandbox{}, err
	}
	if err := json.Unmarshal([]byte(opts), &sb.Options); err != nil {
		return Sandbox{}, fmt.Errorf("sandbox %s: corrupt options: %w", sb.ID, err)
	}
	sb.CreatedAt = time.UnixMilli(created).UTC()
	sb.LastActiveAt = time.UnixMilli(lastA).UTC()
	return sb, nil
}
