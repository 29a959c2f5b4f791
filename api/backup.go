package api

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Error codes of backups, persistent sandboxes and bucket mounts.
const (
	// CodeBackupNotFound: no backup has that id (or it expired).
	CodeBackupNotFound = "BACKUP_NOT_FOUND"
	// CodeArchiveCorrupt: a stored archive (backup or persisted
	// filesystem) failed its checksum or could not be decoded; nothing
	// was changed.
	CodeArchiveCorrupt = "ARCHIVE_CORRUPT"
	// CodeStorageUnavailable: the blob store (local directory or S3)
	// failed; nothing was stored or changed.
	CodeStorageUnavailable = "STORAGE_UNAVAILABLE"
)

// CreateBackupRequest is the body of POST /v1/sandboxes/{id}/backups.
type CreateBackupRequest struct {
	// Dir is the absolute path of the directory to archive, e.g.
	// /workspace. It cannot be / or lie under /proc, /sys or /dev.
	Dir string `json:"dir"`
	// Name is a free label shown in listings (at most 128 characters).
	Name string `json:"name,omitempty"`
	// Excludes are globs of entries to leave out, with the syntax of the
	// exclude parameter of GET /fs/tar: without '/' a name at any depth
	// (node_modules, *.log), with '/' anchored at Dir (build/*.o).
	Excludes []string `json:"excludes,omitempty"`
	// GitIgnore leaves out what the .gitignore files in the tree ignore.
	GitIgnore bool `json:"gitignore,omitempty"`
	// TTL is how long the backup is kept ("72h"); 0 keeps it until it is
	// deleted.
	TTL Duration `json:"ttl,omitempty"`
}

// MinBackupTTL is the shortest TTL a backup may have.
const MinBackupTTL = time.Second

// MaxBackupNameLen bounds CreateBackupRequest.Name.
const MaxBackupNameLen = 128

// Validate checks the request before anything runs.
func (r *CreateBackupRequest) Validate() error {
	if err := ValidateArchiveDir(r.Dir); err != nil {
		return err
	}
	if len(r.Name) > MaxBackupNameLen || strings.ContainsFunc(r.Name, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		return fmt.Errorf("name must be at most %d characters without control characters", MaxBackupNameLen)
	}
	if r.TTL < 0 {
		return errors.New("ttl must not be negative; omit it to keep the backup until it is deleted")
	}
	if r.TTL > 0 && time.Duration(r.TTL) < MinBackupTTL {
		return fmt.Errorf("ttl %s is shorter than %s: the backup would expire before it could be used", time.Duration(r.TTL), MinBackupTTL)
	}
	for _, e := range r.Excludes {
		if strings.ContainsRune(e, 0) {
			return errors.New("excludes must not contain NUL bytes")
		}
	}
	return nil
}

// ValidateArchiveDir checks a directory that a backup reads or a restore
// replaces: absolute, clean, not / and not in the kernel's virtual file
// systems.
func ValidateArchiveDir(dir string) error {
	if dir == "" {
		return errors.New("dir is required: the absolute path of a directory such as /workspace")
	}
	if err := ValidatePath(dir); err != nil {
		return fmt.Errorf("dir: %v", err)
	}
	if dir == "/" {
		return errors.New("dir cannot be /: back up a directory such as /workspace (create the sandbox with persistent: true to keep its whole file system)")
	}
	for _, v := range []string{"/proc", "/sys", "/dev", "/run/sbx"} {
		if dir == v || strings.HasPrefix(dir, v+"/") {
			return fmt.Errorf("dir %s is in %s, which holds no files to back up", dir, v)
		}
	}
	return nil
}

// Backup describes a stored backup.
type Backup struct {
	ID string `json:"id"`
	// Sandbox and Dir are where the backup was taken.
	Sandbox string `json:"sandbox"`
	Dir     string `json:"dir"`
	Name    string `json:"name,omitempty"`
	// Size is the stored (compressed) size in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex digest of the stored archive.
	SHA256    string    `json:"sha256"`
	Excludes  []string  `json:"excludes,omitempty"`
	GitIgnore bool      `json:"gitignore,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	// ExpiresAt is when the backup is deleted; absent if never.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// BackupList is the body of GET /v1/backups, newest first.
type BackupList struct {
	Backups []Backup `json:"backups"`
}

// RestoreRequest is the body of POST /v1/sandboxes/{id}/restore.
type RestoreRequest struct {
	// Backup is the id of the backup to restore.
	Backup string `json:"backup"`
	// Dir is where to restore it; default the directory it was taken
	// from. Its current content is replaced whole.
	Dir string `json:"dir,omitempty"`
}

// Validate checks the request before anything runs.
func (r *RestoreRequest) Validate() error {
	if r.Backup == "" {
		return errors.New("backup is required: the id of a backup (GET /v1/backups lists them)")
	}
	if err := ValidateBackupID(r.Backup); err != nil {
		return err
	}
	if r.Dir != "" {
		return ValidateArchiveDir(r.Dir)
	}
	return nil
}

// ValidateBackupID checks the form of a backup id: "bk-" and 1-60
// lower-case letters and digits.
func ValidateBackupID(id string) error {
	rest, ok := strings.CutPrefix(id, "bk-")
	if !ok || rest == "" || len(rest) > 60 {
		return fmt.Errorf("backup id %q is malformed: ids look like bk-0123abcd…", id)
	}
	for _, c := range rest {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return fmt.Errorf("backup id %q is malformed: ids look like bk-0123abcd…", id)
		}
	}
	return nil
}

// RestoreResult is the response of POST /v1/sandboxes/{id}/restore.
type RestoreResult struct {
	Backup string `json:"backup"`
	Dir    string `json:"dir"`
	// Files, Directories, Symlinks and Bytes count what was restored.
	Files       int   `json:"files"`
	Directories int   `json:"directories"`
	Symlinks    int   `json:"symlinks"`
	Bytes       int64 `json:"bytes"`
}

// RestoreStagingPrefix starts the names of the directories that restores
// extract into, beside their target, before the swap.
const RestoreStagingPrefix = ".sbx-restore-"

// SwapRequest is the body of the agent's POST /backup/swap, with which
// sbxd finishes a restore: Staging, a directory beside Dir holding the
// restored tree, replaces Dir atomically (Commit), or is removed
// (Commit false) when the restore failed.
type SwapRequest struct {
	Staging string `json:"staging"`
	Dir     string `json:"dir"`
	Commit  bool   `json:"commit"`
}
