package server

import (
	"fmt"
	"net/http"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
)

// backupRoutes are the backup routes. The daemon serves them itself (the
// archive is made and stored by sbxd, see internal/backup), reaching the
// sandbox's agent for the tar streams.
func (s *Server) backupRoutes() []route {
	return []route{
		{"POST", "/v1/sandboxes/{id}/backups", true, s.handleCreateBackup, opDoc{
			summary: "Back up a directory of the sandbox (creating or waking it): its tree is archived (tar + zstd, SHA-256 checksummed) " +
				"and streamed to the blob store; symlinks stay symlinks, devices and sockets are left out. The backup is listed only once stored whole. " +
				"Errors: FILE_NOT_FOUND, NOT_A_DIRECTORY, INVALID_REQUEST (dir, excludes, ttl), STORAGE_UNAVAILABLE (nothing stored).",
			request: api.CreateBackupRequest{}, response: api.Backup{}, status: http.StatusCreated}},
		{"GET", "/v1/backups", true, s.handleListBackups, opDoc{
			summary: "List live backups, newest first.", response: api.BackupList{},
			query: []param{{"sandbox", "string", "Only the backups taken from this sandbox."}}}},
		{"GET", "/v1/backups/{bid}", true, s.handleGetBackup, opDoc{
			summary: "Describe a backup. BACKUP_NOT_FOUND if absent or expired.", response: api.Backup{}}},
		{"DELETE", "/v1/backups/{bid}", true, s.handleDeleteBackup, opDoc{
			summary: "Delete a backup and its archive. BACKUP_NOT_FOUND if absent.", status: http.StatusNoContent}},
		{"POST", "/v1/sandboxes/{id}/restore", true, s.handleRestore, opDoc{
			summary: "Restore a backup into a directory of any sandbox (creating or waking it), replacing the directory's content whole and atomically: " +
				"the archive is extracted into a staging directory beside it, verified against its checksum, and swapped in with one rename. " +
				"If anything fails the directory is left as it was. Entries are confined as for tar uploads. " +
				"Errors: BACKUP_NOT_FOUND, ARCHIVE_CORRUPT (checksum or format), INVALID_PATH, STORAGE_UNAVAILABLE.",
			request: api.RestoreRequest{}, response: api.RestoreResult{}}},
	}
}

// backups returns the backup service or an error saying it is off.
func (s *Server) backups() error {
	if s.cfg.Backups == nil {
		return fmt.Errorf("%w: backups are not configured on this daemon (no blob store)", errdefs.ErrInvalidArgument)
	}
	return nil
}

func (s *Server) handleCreateBackup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req api.CreateBackupRequest
	err := sandbox.ValidateID(id)
	if err == nil {
		err = s.backups()
	}
	if err == nil {
		_, err = readValid(w, r, &req)
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	b, err := s.cfg.Backups.Create(r.Context(), id, req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusCreated, b)
}

func (s *Server) handleListBackups(w http.ResponseWriter, r *http.Request) {
	if err := s.backups(); err != nil {
		errdefs.Write(w, err)
		return
	}
	sb := r.URL.Query().Get("sandbox")
	if sb != "" {
		if err := sandbox.ValidateID(sb); err != nil {
			errdefs.Write(w, err)
			return
		}
	}
	list, err := s.cfg.Backups.List(r.Context(), sb)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, api.BackupList{Backups: list})
}

func (s *Server) handleGetBackup(w http.ResponseWriter, r *http.Request) {
	if err := s.backups(); err != nil {
		errdefs.Write(w, err)
		return
	}
	b, err := s.cfg.Backups.Get(r.Context(), r.PathValue("bid"))
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, b)
}

func (s *Server) handleDeleteBackup(w http.ResponseWriter, r *http.Request) {
	if err := s.backups(); err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := s.cfg.Backups.Delete(r.Context(), r.PathValue("bid")); err != nil {
		errdefs.Write(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRestore(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req api.RestoreRequest
	err := sandbox.ValidateID(id)
	if err == nil {
		err = s.backups()
	}
	if err == nil {
		_, err = readValid(w, r, &req)
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	res, err := s.cfg.Backups.Restore(r.Context(), id, req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, res)
}
