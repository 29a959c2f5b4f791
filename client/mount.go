package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/sbx-dev/sbx/api"
)

// MountBucket copies the objects under req.Prefix of an S3-compatible
// bucket into directory req.Path of the sandbox (creating or waking it).
// Read-write mounts copy changes back on SyncMount and Unmount; there is no
// live view of the bucket. Any failure is returned as an error and leaves
// nothing behind.
func (s *Sandbox) MountBucket(ctx context.Context, req api.MountRequest) (*api.Mount, error) {
	var m api.Mount
	if err := s.c.do(ctx, http.MethodPost, s.path("/mounts"), req, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Mounts lists the sandbox's bucket mounts.
func (s *Sandbox) Mounts(ctx context.Context) ([]api.Mount, error) {
	var l api.MountList
	if err := s.c.do(ctx, http.MethodGet, s.path("/mounts"), nil, &l); err != nil {
		return nil, err
	}
	return l.Mounts, nil
}

// SyncMount brings the mount at path and its bucket together.
func (s *Sandbox) SyncMount(ctx context.Context, path string) (*api.SyncResult, error) {
	var res api.SyncResult
	q := "?" + url.Values{"path": {path}}.Encode()
	if err := s.c.do(ctx, http.MethodPost, s.path("/mounts/sync")+q, nil, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Unmount syncs a read-write mount to its bucket and removes its
// directory; if the sync fails the mount stays.
func (s *Sandbox) Unmount(ctx context.Context, path string) error {
	q := "?" + url.Values{"path": {path}}.Encode()
	return s.c.do(ctx, http.MethodDelete, s.path("/mounts")+q, nil, nil)
}
