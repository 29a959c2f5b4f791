package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/sbx-dev/sbx/api"
)

// CreateBackup archives directory req.Dir of the sandbox (creating or
// waking it) into the daemon's blob store. The backup is listed only once
// stored whole.
func (s *Sandbox) CreateBackup(ctx context.Context, req api.CreateBackupRequest) (*api.Backup, error) {
	var b api.Backup
	if err := s.c.do(ctx, http.MethodPost, s.path("/backups"), req, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// RestoreBackup replaces directory dir of the sandbox (empty: the directory
// the backup was taken from) with the content of backup bid, atomically:
// if anything fails, including the archive's checksum, the directory is
// left as it was.
func (s *Sandbox) RestoreBackup(ctx context.Context, bid, dir string) (*api.RestoreResult, error) {
	var res api.RestoreResult
	if err := s.c.do(ctx, http.MethodPost, s.path("/restore"), api.RestoreRequest{Backup: bid, Dir: dir}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Purge destroys the sandbox and, for a persistent sandbox, its stored
// file system too (Destroy keeps it for the next sandbox of that id).
func (s *Sandbox) Purge(ctx context.Context) error {
	return s.c.do(ctx, http.MethodDelete, s.path("?purge=true"), nil, nil)
}

// Backups lists the live backups, newest first; with a non-empty sandbox
// id, only those taken from it.
func (c *Client) Backups(ctx context.Context, sandbox string) ([]api.Backup, error) {
	p := "/v1/backups"
	if sandbox != "" {
		p += "?" + url.Values{"sandbox": {sandbox}}.Encode()
	}
	var l api.BackupList
	if err := c.do(ctx, http.MethodGet, p, nil, &l); err != nil {
		return nil, err
	}
	return l.Backups, nil
}

// Backup describes backup bid.
func (c *Client) Backup(ctx context.Context, bid string) (*api.Backup, error) {
	var b api.Backup
	if err := c.do(ctx, http.MethodGet, "/v1/backups/"+url.PathEscape(bid), nil, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// DeleteBackup deletes backup bid and its archive.
func (c *Client) DeleteBackup(ctx context.Context, bid string) error {
	return c.do(ctx, http.MethodDelete, "/v1/backups/"+url.PathEscape(bid), nil, nil)
}
