package store

import (
	"context"
	"fmt"
	"time"
)

// Port states. A port is exposed until it is unexposed or its sandbox
// stops; rows of ended exposures stay for a while so that their URLs
// answer "gone" rather than "not found".
const (
	// PortExposed: the URL serves.
	PortExposed = "exposed"
	// PortUnexposed: unexposed while the sandbox runs; exposing the port
	// again revives the row, and with it the URL.
	PortUnexposed = "unexposed"
	// PortEnded: the sandbox stopped; the URL is gone for good.
	PortEnded = "ended"
)

// Port is the stored form of one exposure of a sandbox port.
type Port struct {
	SandboxID string
	Port      int
	// Token is the URL's secret; (SandboxID, Port, Token) is the key.
	Token string
	Name  string
	// ListenPort is the dedicated listener's port on the preview address,
	// 0 if it has none.
	ListenPort int
	State      string
	CreatedAt  time.Time
	// EndedAt is when the row left PortExposed; zero while exposed.
	EndedAt time.Time
}

// portsSchema is created by Open. At most one row per sandbox port is not
// ended: the one whose URL a new exposure of that port reuses.
const portsSchema = `
CREATE TABLE IF NOT EXISTS ports (
	sandbox_id  TEXT NOT NULL,
	port        INTEGER NOT NULL,
	token       TEXT NOT NULL,
	name        TEXT NOT NULL DEFAULT '',
	listen_port INTEGER NOT NULL DEFAULT 0,
	state       TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	ended_at    INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (sandbox_id, port, token)
);
CREATE UNIQUE INDEX IF NOT EXISTS ports_live ON ports (sandbox_id, port) WHERE state != 'ended';`

// PutPort inserts or updates an exposure, keyed by sandbox, port and
// token. It fails if another live row of the same sandbox port exists.
func (s *Store) PutPort(ctx context.Context, p Port) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO ports (sandbox_id, port, token, name, listen_port, state, created_at, ended_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(sandbox_id, port, token) DO UPDATE SET name=excluded.name, listen_port=excluded.listen_port,
			state=excluded.state, created_at=excluded.created_at, ended_at=excluded.ended_at`,
		p.SandboxID, p.Port, p.Token, p.Name, p.ListenPort, p.State, p.CreatedAt.UnixMilli(), unixMilli(p.EndedAt))
	if err != nil {
		return fmt.Errorf("store port %d of sandbox %s: %w", p.Port, p.SandboxID, err)
	}
	return nil
}

// EndPorts marks every live exposure of a sandbox ended at t and returns
// how many there were.
func (s *Store) EndPorts(ctx context.Context, sandboxID string, t time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE ports SET state=?, ended_at=CASE WHEN ended_at=0 THEN ? ELSE ended_at END
		WHERE sandbox_id=? AND state != ?`, PortEnded, t.UnixMilli(), sandboxID, PortEnded)
	if err != nil {
		return 0, fmt.Errorf("end ports of sandbox %s: %w", sandboxID, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// PrunePorts deletes rows of exposures ended before t. Their URLs then
// answer "not found" instead of "gone".
func (s *Store) PrunePorts(ctx context.Context, before time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM ports WHERE state=? AND ended_at < ?`, PortEnded, before.UnixMilli())
	return err
}

// ListPorts returns every stored exposure, ordered by sandbox and port.
func (s *Store) ListPorts(ctx context.Context) ([]Port, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT sandbox_id, port, token, name, listen_port, state, created_at, ended_at
		FROM ports ORDER BY sandbox_id, port, created_at`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Port
	for rows.Next() {
		var (
			p              Port
			created, ended int64
		)
		if err := rows.Scan(&p.SandboxID, &p.Port, &p.Token, &p.Name, &p.ListenPort, &p.State, &created, &ended); err != nil {
			return nil, err
		}
		p.CreatedAt = time.UnixMilli(created).UTC()
		if ended != 0 {
			p.EndedAt = time.UnixMilli(ended).UTC()
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
