// Package bucketmount mounts prefixes of S3-compatible buckets into
// sandboxes by synchronisation: sbxd copies the objects into a directory of
// the sandbox through its agent, and copies changes back when asked.
//
// Why not a file system: FUSE inside the sandbox needs /dev/fuse and
// CAP_SYS_ADMIN, which sandboxes do not get; a FUSE daemon on the host
// (s3fs, rclone) bind-mounted into a running sandbox needs setns into its
// mount namespace, an idmapped FUSE mount for the user namespace, and a
// host process per mount serving untrusted callers, and it turns every
// open and stat in the sandbox into an HTTP request. Copying is one bulk
// transfer, after which the sandbox works at local disk speed, and every
// failure surfaces in the API call that met it.
//
// Consistency model (also in docs/persistence.md):
//   - Mount copies every object under the prefix (a snapshot of the
//     bucket's listing at that moment) into the directory, which must be
//     absent or empty. Any failure removes what was copied and fails the
//     call.
//   - Sync compares the directory and the bucket with the state of the last
//     sync (sizes and mtimes of files, sizes and modification times of
//     objects). Read-write mounts upload files created or changed in the
//     sandbox and delete objects whose files were deleted; then objects
//     created or changed in the bucket are downloaded and files whose
//     objects were deleted are removed. A path changed on both sides is a
//     conflict, which the sandbox's version wins; conflicts are reported.
//   - Read-only mounts never write to the bucket, and each sync makes the
//     directory its mirror again: files changed (size, mtime or mode),
//     replaced or deleted in the sandbox are downloaded again, and what the
//     bucket does not hold (files, symlinks, directories leading to no
//     object) is removed; SyncResult.Reverted counts them. The sandbox can
//     still write there between syncs (see docs/persistence.md for why the
//     directory is not made unwritable).
//   - Unmount syncs a read-write mount (failing, and keeping the mount, if
//     that fails), then removes the directory.
//   - Nothing is synced in between: there is no live view of the bucket.
//     Stopping the sandbox ends its mounts without syncing; mounts live in
//     sbxd's memory only (credentials are never stored) and end with it.
//   - Keys that cannot be file paths ("a//b", "dir/" markers, a key that is
//     also a prefix of other keys) are not mounted; the last kind is
//     reported in Mount.Skipped.
package bucketmount

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/backup"
	"github.com/sbx-dev/sbx/internal/blob"
	"github.com/sbx-dev/sbx/internal/blob/s3"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
)

// Manager holds the mounts of every sandbox. It is safe for concurrent
// use.
type Manager struct {
	sandboxes backup.Sandboxes
	log       *slog.Logger
	// newStore opens a bucket; tests replace it.
	newStore func(api.MountRequest) (blob.Store, error)

	mu     sync.Mutex
	mounts map[string]map[string]*mount // sandbox id → path → mount
}

// New returns a Manager.
func New(sandboxes backup.Sandboxes, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.Default()
	}
	return &Manager{sandboxes: sandboxes, log: log, newStore: openBucket, mounts: map[string]map[string]*mount{}}
}

func openBucket(req api.MountRequest) (blob.Store, error) {
	st, err := s3.New(s3.Config{
		Endpoint: req.Endpoint, Bucket: req.Bucket, Region: req.Region,
		AccessKey: req.AccessKeyID, SecretKey: req.SecretAccessKey, PathStyle: req.PathStyle,
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	return st, nil
}

type mount struct {
	mu    sync.Mutex // serialises syncs of one mount
	info  api.Mount
	store blob.Store
	// agent identifies the sandbox instance the files were copied into:
	// a restarted sandbox has a new agent client, and its directory no
	// longer holds the mount.
	agent *http.Client
	// state is what both sides looked like at the last sync, by path
	// relative to the mount.
	state map[string]fileState
}

type fileState struct {
	size        int64
	mtime       time.Time // of the file in the sandbox
	remoteSize  int64
	remoteMtime time.Time // of the object
}

func mountErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errdefs.ErrMountFailed}, args...)...)
}

// Mount copies the bucket prefix into the sandbox (creating or waking it).
func (m *Manager) Mount(ctx context.Context, id string, req api.MountRequest) (api.Mount, error) {
	if err := req.Validate(); err != nil {
		return api.Mount{}, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	if req.Prefix != "" {
		if err := blob.ValidatePrefix(req.Prefix); err != nil {
			return api.Mount{}, fmt.Errorf("%w: prefix: %v", errdefs.ErrInvalidArgument, err)
		}
	}
	st, err := m.newStore(req)
	if err != nil {
		return api.Mount{}, err
	}
	if c, ok := st.(interface{ Check(context.Context) error }); ok {
		if err := c.Check(ctx); err != nil {
			return api.Mount{}, mountErr("%v", err)
		}
	}
	lease, err := m.sandboxes.Acquire(ctx, id)
	if err != nil {
		return api.Mount{}, err
	}
	defer lease.Release()

	m.mu.Lock()
	if old := m.mounts[id][req.Path]; old != nil && old.agent == lease.Agent() {
		m.mu.Unlock()
		return api.Mount{}, fmt.Errorf("%w: %s is already a mount of sandbox %s; unmount it first", errdefs.ErrConflict, req.Path, id)
	}
	now := time.Now().UTC()
	mt := &mount{
		info: api.Mount{Path: req.Path, Bucket: req.Bucket, Prefix: req.Prefix, Endpoint: req.Endpoint,
			ReadOnly: req.ReadOnly, MountedAt: now},
		store: st, agent: lease.Agent(), state: map[string]fileState{},
	}
	mt.mu.Lock()
	defer mt.mu.Unlock()
	if m.mounts[id] == nil {
		m.mounts[id] = map[string]*mount{}
	}
	m.mounts[id][req.Path] = mt
	m.mu.Unlock()
	fail := func(err error) (api.Mount, error) {
		m.forget(id, req.Path, mt)
		return api.Mount{}, err
	}

	local, err := listLocal(ctx, lease, req.Path)
	if err != nil {
		return fail(err)
	}
	if local == nil {
		// Absent: create it, so that an empty prefix mounts as an
		// empty directory.
		if err := mkdir(ctx, lease, req.Path); err != nil {
			return fail(err)
		}
	} else if len(local) > 0 {
		return fail(fmt.Errorf("%w: %s is not empty; mount into an absent or empty directory", errdefs.ErrFileExists, req.Path))
	}
	remote, skipped, err := listRemote(ctx, st, req.Prefix)
	if err != nil {
		_ = removeTree(context.WithoutCancel(ctx), lease, req.Path)
		return fail(err)
	}
	mt.info.Skipped = skipped
	if err := mt.download(ctx, lease, remote); err != nil {
		_ = removeTree(context.WithoutCancel(ctx), lease, req.Path)
		return fail(err)
	}
	mt.info.LastSyncAt = time.Now().UTC()
	mt.info.Objects = len(mt.state)
	m.log.Info("bucket mounted", "sandbox", id, "path", req.Path, "bucket", req.Bucket, "prefix", req.Prefix, "objects", len(remote))
	return mt.info, nil
}

func (m *Manager) forget(id, p string, mt *mount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mounts[id][p] == mt {
		delete(m.mounts[id], p)
		if len(m.mounts[id]) == 0 {
			delete(m.mounts, id)
		}
	}
}

// List returns the mounts of a sandbox, without waking it.
func (m *Manager) List(id string) []api.Mount {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []api.Mount{}
	for _, mt := range m.mounts[id] {
		if mt.mu.TryLock() {
			out = append(out, mt.info)
			mt.mu.Unlock()
		} else {
			out = append(out, api.Mount{Path: mt.info.Path, Bucket: mt.info.Bucket, Prefix: mt.info.Prefix,
				Endpoint: mt.info.Endpoint, ReadOnly: mt.info.ReadOnly, MountedAt: mt.info.MountedAt})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// lookup finds the live mount at p of sandbox id, holding its lock, and a
// lease on the sandbox. A mount of an earlier instance of the sandbox is
// dropped.
func (m *Manager) lookup(ctx context.Context, id, p string) (*mount, *sandbox.Lease, error) {
	m.mu.Lock()
	mt := m.mounts[id][p]
	m.mu.Unlock()
	if mt == nil {
		return nil, nil, fmt.Errorf("%w: sandbox %s has no mount at %s", errdefs.ErrMountNotFound, id, p)
	}
	lease, err := m.sandboxes.Acquire(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	mt.mu.Lock()
	if mt.agent != lease.Agent() {
		mt.mu.Unlock()
		lease.Release()
		m.forget(id, p, mt)
		return nil, nil, fmt.Errorf("%w: sandbox %s restarted since %s was mounted, which ended the mount; mount it again",
			errdefs.ErrMountNotFound, id, p)
	}
	return mt, lease, nil
}

// Sync brings the mount at p and its bucket prefix together (see the
// package comment).
func (m *Manager) Sync(ctx context.Context, id, p string) (api.SyncResult, error) {
	mt, lease, err := m.lookup(ctx, id, p)
	if err != nil {
		return api.SyncResult{}, err
	}
	defer lease.Release()
	defer mt.mu.Unlock()
	res, err := mt.sync(ctx, lease)
	res.Mount = mt.info
	return res, err
}

// Unmount syncs a read-write mount back to its bucket and removes the
// directory. If the sync fails the mount stays.
func (m *Manager) Unmount(ctx context.Context, id, p string) error {
	mt, lease, err := m.lookup(ctx, id, p)
	if err != nil {
		return err
	}
	defer lease.Release()
	defer mt.mu.Unlock()
	if !mt.info.ReadOnly {
		if _, err := mt.sync(ctx, lease); err != nil {
			return fmt.Errorf("unmount %s: syncing to the bucket failed, so the mount stays: %w", p, err)
		}
	}
	if err := removeTree(ctx, lease, p); err != nil && !notFound(err) {
		return err
	}
	m.forget(id, p, mt)
	m.log.Info("bucket unmounted", "sandbox", id, "path", p)
	return nil
}

// remoteObj is an object of the mounted prefix.
type remoteObj struct {
	rel  string
	info blob.Info
}

// listRemote lists the objects under prefix by path relative to it,
// leaving out keys that cannot be files.
func listRemote(ctx context.Context, st blob.Store, prefix string) (map[string]blob.Info, []string, error) {
	var objs []remoteObj
	for info, err := range st.List(ctx, prefix) {
		if err != nil {
			return nil, nil, mountErr("listing the bucket: %v", err)
		}
		rel := strings.TrimPrefix(info.Key, prefix)
		if rel == "" || strings.HasPrefix(rel, "/") {
			continue
		}
		objs = append(objs, remoteObj{rel, info})
	}
	out := make(map[string]blob.Info, len(objs))
	var skipped []string
	for i, o := range objs {
		// A key that is also a directory of later keys ("a" beside
		// "a/b") cannot be a file; List is in key order.
		if i+1 < len(objs) && strings.HasPrefix(objs[i+1].rel, o.rel+"/") {
			if len(skipped) < 100 {
				skipped = append(skipped, o.info.Key)
			}
			continue
		}
		out[o.rel] = o.info
	}
	return out, skipped, nil
}

// download copies the given objects into the sandbox as one tar stream
// and records them as synced.
func (mt *mount) download(ctx context.Context, lease *sandbox.Lease, objs map[string]blob.Info) error {
	if len(objs) == 0 {
		return nil
	}
	rels := make([]string, 0, len(objs))
	for rel := range objs {
		rels = append(rels, rel)
	}
	slices.Sort(rels)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		tw := tar.NewWriter(pw)
		err := func() error {
			for _, rel := range rels {
				rc, info, err := mt.store.Get(ctx, mt.info.Prefix+rel)
				if err != nil {
					return mountErr("reading %s from the bucket: %v", mt.info.Prefix+rel, err)
				}
				hdr := &tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: downloadMode, Size: info.Size, ModTime: info.ModTime}
				err = tw.WriteHeader(hdr)
				if err == nil {
					var n int64
					n, err = io.Copy(tw, rc)
					if err == nil && n != info.Size {
						err = fmt.Errorf("got %d of %d bytes", n, info.Size)
					}
					if err != nil {
						err = mountErr("reading %s from the bucket: %v", mt.info.Prefix+rel, err)
					}
				}
				rc.Close()
				if err != nil {
					return err
				}
				objs[rel] = info
			}
			return tw.Close()
		}()
		pw.CloseWithError(err)
		done <- err
	}()
	resp, err := backup.AgentDo(ctx, lease, http.MethodPut, "/fs/tar?"+url.Values{"path": {mt.info.Path}}.Encode(), pr)
	pr.Close()
	if gerr := <-done; gerr != nil && !errors.Is(gerr, io.ErrClosedPipe) {
		err = gerr
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	for _, rel := range rels {
		info := objs[rel]
		mt.state[rel] = fileState{size: info.Size, mtime: info.ModTime.Truncate(time.Second), remoteSize: info.Size, remoteMtime: info.ModTime}
	}
	return nil
}

func (mt *mount) sync(ctx context.Context, lease *sandbox.Lease) (api.SyncResult, error) {
	var res api.SyncResult
	local, err := listLocal(ctx, lease, mt.info.Path)
	if err != nil {
		return res, err
	}
	if local == nil {
		return res, fmt.Errorf("%w: %s no longer exists in the sandbox; unmount it", errdefs.ErrMountFailed, mt.info.Path)
	}
	remote, skipped, err := listRemote(ctx, mt.store, mt.info.Prefix)
	if err != nil {
		return res, err
	}
	mt.info.Skipped = skipped
	plan := planSync(mt.info.ReadOnly, mt.state, local, remote)
	for _, rel := range plan.conflicts {
		res.Conflicts = append(res.Conflicts, path.Join(mt.info.Path, rel))
	}
	for _, rel := range plan.upload {
		fi := local[rel]
		info, err := mt.upload(ctx, lease, rel)
		if err != nil {
			return res, err
		}
		mt.state[rel] = fileState{size: fi.Size, mtime: fi.ModifiedAt, remoteSize: info.Size, remoteMtime: info.ModTime}
		res.Uploaded++
	}
	for _, rel := range plan.deleteObj {
		if err := mt.store.Delete(ctx, mt.info.Prefix+rel); err != nil {
			return res, mountErr("deleting %s from the bucket: %v", mt.info.Prefix+rel, err)
		}
		delete(mt.state, rel)
		res.Deleted++
	}
	for _, rel := range plan.forget {
		delete(mt.state, rel)
	}
	// Removals come before downloads: on a read-only mount a path the
	// bucket holds as a file may have become a directory or a symlink.
	gone := map[string]bool{}
	for _, rel := range plan.remove {
		if under(rel, gone) {
			continue // went with its directory
		}
		gone[rel] = true
		if err := removeTree(ctx, lease, path.Join(mt.info.Path, rel)); err != nil && !notFound(err) {
			return res, err
		}
	}
	for _, rel := range plan.remove {
		delete(mt.state, rel)
	}
	res.Removed = len(plan.remove)
	if err := mt.download(ctx, lease, plan.download); err != nil {
		return res, err
	}
	res.Downloaded = len(plan.download)
	res.Reverted = plan.reverted
	mt.info.LastSyncAt = time.Now().UTC()
	mt.info.Objects = len(mt.state)
	return res, nil
}

// syncPlan is what one sync does, by path relative to the mount.
type syncPlan struct {
	upload    []string // read-write: files to write to the bucket
	deleteObj []string // read-write: objects to delete
	download  map[string]blob.Info
	// remove lists sandbox entries to delete, sorted, so that a
	// directory comes before what is in it.
	remove    []string
	forget    []string // state of paths gone from both sides
	conflicts []string
	// reverted counts the paths of a read-only mount whose local
	// changes the plan undoes.
	reverted int
}

// downloadMode is the mode of the files a mount writes.
const downloadMode = 0o644

// planSync decides what a sync does, from the state of the last sync and
// the current listings of the sandbox directory (entries of every type) and
// of the bucket prefix.
//
// A read-write mount sends each side's changes to the other, the
// sandbox's winning a conflict. A read-only mount makes the directory the
// bucket's mirror whatever happened in it: changed, replaced or deleted
// files are downloaded again, and whatever the bucket does not hold (files,
// symlinks, devices, directories leading to no object) is removed. Files
// count as changed when their size, mtime or (read-only) mode differs from
// what the last sync left.
func planSync(readOnly bool, state map[string]fileState, local map[string]api.FileInfo, remote map[string]blob.Info) syncPlan {
	plan := syncPlan{download: map[string]blob.Info{}}
	isFile := func(rel string) bool {
		fi, ok := local[rel]
		return ok && fi.Type == api.FileTypeFile
	}
	localChanged := func(rel string) bool {
		st, known := state[rel]
		switch {
		case !isFile(rel):
			return known // deleted (or replaced) in the sandbox
		case !known:
			return true // created
		}
		fi := local[rel]
		return fi.Size != st.size || !fi.ModifiedAt.Equal(st.mtime) ||
			(readOnly && fi.Mode != api.FormatMode(downloadMode))
	}
	remoteChanged := func(rel string) bool {
		info, ok := remote[rel]
		st, known := state[rel]
		switch {
		case !ok:
			return known
		case !known:
			return true
		}
		return info.Size != st.remoteSize || !info.ModTime.Equal(st.remoteMtime)
	}

	paths := map[string]bool{}
	for rel := range local {
		if isFile(rel) {
			paths[rel] = true
		}
	}
	for rel := range remote {
		paths[rel] = true
	}
	for rel := range state {
		paths[rel] = true
	}
	reverted := map[string]bool{}
	for _, rel := range slices.Sorted(maps.Keys(paths)) {
		_, inRemote := remote[rel]
		inLocal := isFile(rel)
		if !inLocal && !inRemote {
			plan.forget = append(plan.forget, rel) // deleted on both sides
			continue
		}
		lc, rc := localChanged(rel), remoteChanged(rel)
		if lc && rc {
			plan.conflicts = append(plan.conflicts, rel)
		}
		switch {
		case lc && !readOnly:
			if inLocal {
				plan.upload = append(plan.upload, rel)
			} else {
				plan.deleteObj = append(plan.deleteObj, rel)
			}
		case rc || (lc && readOnly):
			// The bucket's version: download it, or remove the file.
			if inRemote {
				plan.download[rel] = remote[rel]
			} else {
				plan.remove = append(plan.remove, rel)
			}
			if lc {
				reverted[rel] = true
			}
		}
	}

	if readOnly {
		wanted, had := map[string]bool{}, map[string]bool{}
		for rel := range remote {
			addParents(wanted, rel)
		}
		for rel := range state {
			addParents(had, rel)
		}
		for rel, fi := range local {
			switch fi.Type {
			case api.FileTypeFile:
				continue // decided above
			case api.FileTypeDirectory:
				if _, isObj := remote[rel]; !isObj && (wanted[rel] || had[rel]) {
					// Leads to objects, or did: a directory emptied by
					// deletions in the bucket stays, as on read-write
					// mounts.
					continue
				}
				if !had[rel] {
					reverted[rel] = true
				}
			default:
				reverted[rel] = true
			}
			plan.remove = append(plan.remove, rel)
		}
	}
	slices.Sort(plan.remove)
	plan.reverted = len(reverted)
	return plan
}

// addParents adds the directories leading to rel to set.
func addParents(set map[string]bool, rel string) {
	for d := path.Dir(rel); d != "." && !set[d]; d = path.Dir(d) {
		set[d] = true
	}
}

// under reports whether rel lies inside one of the directories in set.
func under(rel string, set map[string]bool) bool {
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if set[d] {
			return true
		}
	}
	return false
}

// upload streams the sandbox file at rel to its object.
func (mt *mount) upload(ctx context.Context, lease *sandbox.Lease, rel string) (blob.Info, error) {
	key := mt.info.Prefix + rel
	if err := blob.ValidateKey(key); err != nil {
		return blob.Info{}, mountErr("%s cannot be stored: %v", path.Join(mt.info.Path, rel), err)
	}
	p := path.Join(mt.info.Path, rel)
	resp, err := backup.AgentDo(ctx, lease, http.MethodGet, "/files"+escapePath(p), nil)
	if err != nil {
		return blob.Info{}, err
	}
	defer resp.Body.Close()
	info, err := mt.store.Put(ctx, key, resp.Body, blob.PutOptions{})
	if err != nil {
		return blob.Info{}, mountErr("writing %s to the bucket: %v", key, err)
	}
	return info, nil
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// listLocal returns the entries under dir (of every type) by relative
// path, or nil (and no error) if dir does not exist.
func listLocal(ctx context.Context, lease *sandbox.Lease, dir string) (map[string]api.FileInfo, error) {
	q := url.Values{"path": {dir}, "recursive": {"true"}, "includeHidden": {"true"}}
	resp, err := backup.AgentDo(ctx, lease, http.MethodGet, "/fs/list?"+q.Encode(), nil)
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var l api.FileList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	out := make(map[string]api.FileInfo, len(l.Entries))
	for _, e := range l.Entries {
		rel := strings.TrimPrefix(e.Path, dir+"/")
		out[rel] = e
	}
	return out, nil
}

func mkdir(ctx context.Context, lease *sandbox.Lease, dir string) error {
	body, _ := json.Marshal(api.MkdirRequest{Path: dir, Parents: true})
	resp, err := backup.AgentDo(ctx, lease, http.MethodPost, "/fs/mkdir", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func removeTree(ctx context.Context, lease *sandbox.Lease, p string) error {
	resp, err := backup.AgentDo(ctx, lease, http.MethodDelete, "/files"+escapePath(p)+"?recursive=true", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// notFound reports a FILE_NOT_FOUND answer of the agent.
func notFound(err error) bool {
	if err == nil {
		return false
	}
	_, e := errdefs.Classify(err)
	return e.Code == api.CodeFileNotFound
}
