package server

import (
	"fmt"
	"net/http"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
)

// mountRoutes are the bucket mount routes (see internal/bucketmount for
// the mechanism and its consistency model).
func (s *Server) mountRoutes() []route {
	pathQ := []param{{"path", "string", "The mount's directory in the sandbox."}}
	return []route{
		{"POST", "/v1/sandboxes/{id}/mounts", true, s.handleMount, opDoc{
			summary: "Mount a prefix of an S3-compatible bucket at a directory of the sandbox (creating or waking it), which must be absent or empty. " +
				"The objects are copied in now; read-write mounts copy changes back on sync and unmount. There is no live view of the bucket. " +
				"Fails with MOUNT_FAILED, naming the cause, if the bucket cannot be reached, listed or read; a failed mount leaves nothing behind.",
			request: api.MountRequest{}, response: api.Mount{}, status: http.StatusCreated}},
		{"GET", "/v1/sandboxes/{id}/mounts", true, s.handleListMounts, opDoc{
			summary: "List the sandbox's bucket mounts, without waking it.", response: api.MountList{}}},
		{"POST", "/v1/sandboxes/{id}/mounts/sync", true, s.handleSyncMount, opDoc{
			summary: "Sync a mount with its bucket: read-write mounts upload files changed in the sandbox and delete objects of deleted files; " +
				"then objects changed in the bucket are downloaded and files of deleted objects removed. Conflicts (changed on both sides) are reported; " +
				"the sandbox wins on read-write mounts, the bucket on read-only ones. A read-only mount never writes to the bucket and is made its exact copy " +
				"again: files changed, replaced or deleted in the sandbox are downloaded again and entries the bucket does not hold are removed (counted in reverted).",
			response: api.SyncResult{}, query: pathQ}},
		{"DELETE", "/v1/sandboxes/{id}/mounts", true, s.handleUnmount, opDoc{
			summary: "Unmount: sync a read-write mount to its bucket (if that fails, the mount stays and the error is returned), then remove the directory.",
			status:  http.StatusNoContent, query: pathQ}},
	}
}

func (s *Server) mounts() error {
	if s.cfg.Mounts == nil {
		return fmt.Errorf("%w: bucket mounts are not enabled on this daemon", errdefs.ErrInvalidArgument)
	}
	return nil
}

// mountPath validates the sandbox id and the path query parameter.
func (s *Server) mountPath(r *http.Request) (id, p string, err error) {
	id = r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		return "", "", err
	}
	if err := s.mounts(); err != nil {
		return "", "", err
	}
	p = r.URL.Query().Get("path")
	if err := api.ValidatePath(p); err != nil {
		return "", "", fmt.Errorf("%w: query parameter path: %v", errdefs.ErrInvalidPath, err)
	}
	return id, p, nil
}

func (s *Server) handleMount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req api.MountRequest
	err := sandbox.ValidateID(id)
	if err == nil {
		err = s.mounts()
	}
	if err == nil {
		_, err = readValid(w, r, &req)
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	m, err := s.cfg.Mounts.Mount(r.Context(), id, req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusCreated, m)
}

func (s *Server) handleListMounts(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := sandbox.ValidateID(id)
	if err == nil {
		err = s.mounts()
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, api.MountList{Mounts: s.cfg.Mounts.List(id)})
}

func (s *Server) handleSyncMount(w http.ResponseWriter, r *http.Request) {
	id, p, err := s.mountPath(r)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	res, err := s.cfg.Mounts.Sync(r.Context(), id, p)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, res)
}

func (s *Server) handleUnmount(w http.ResponseWriter, r *http.Request) {
	id, p, err := s.mountPath(r)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := s.cfg.Mounts.Unmount(r.Context(), id, p); err != nil {
		errdefs.Write(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
