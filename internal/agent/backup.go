package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// registerBackup wires the two routes sbxd's backups need beyond the file
// routes: an archive walk that honours .gitignore files, and the atomic
// swap that finishes a restore. The restore's extraction itself is
// PUT /fs/tar into the staging directory.
func (a *Agent) registerBackup() {
	a.mux.HandleFunc("POST /backup/swap", a.handleBackupSwap)
}

// handleBackupSwap serves POST /backup/swap (api.SwapRequest). With
// commit, the staging directory replaces dir in one rename: the old tree
// is exchanged with the new one (renameat2 RENAME_EXCHANGE), so a reader
// sees either the old directory or the new one, never a mix, and then
// removed. The new directory takes the old one's mode and owner. Without
// commit the staging directory is removed.
func (a *Agent) handleBackupSwap(w http.ResponseWriter, r *http.Request) {
	var req api.SwapRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	if err := checkStaging(req.Staging, req.Dir); err != nil {
		errdefs.Write(w, err)
		return
	}
	hs, hd := a.hostPath(req.Staging), a.hostPath(req.Dir)
	if !req.Commit {
		if err := os.RemoveAll(hs); err != nil {
			errdefs.Write(w, fsErr(req.Staging, err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if _, err := os.Lstat(hs); err != nil {
		errdefs.Write(w, fsErr(req.Staging, err))
		return
	}
	old, err := os.Lstat(hd)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Rename(hs, hd); err != nil {
			errdefs.Write(w, fsErr(req.Dir, err))
			return
		}
	case err != nil:
		errdefs.Write(w, fsErr(req.Dir, err))
		return
	case !old.IsDir():
		errdefs.Write(w, fmt.Errorf("%w: %s exists and is not a directory; remove it or restore elsewhere", errdefs.ErrNotADirectory, req.Dir))
		return
	default:
		if err := os.Chmod(hs, old.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetgid)); err != nil {
			errdefs.Write(w, fsErr(req.Staging, err))
			return
		}
		if st, ok := old.Sys().(*syscall.Stat_t); ok {
			if err := os.Lchown(hs, int(st.Uid), int(st.Gid)); err != nil {
				errdefs.Write(w, fsErr(req.Staging, err))
				return
			}
		}
		if err := unix.Renameat2(unix.AT_FDCWD, hs, unix.AT_FDCWD, hd, unix.RENAME_EXCHANGE); err != nil {
			errdefs.Write(w, fsErr(req.Dir, &os.LinkError{Op: "exchange", Old: hs, New: hd, Err: err}))
			return
		}
		// The old tree is now at the staging path. The swap is done
		// whatever happens to it; a failure only leaves it behind.
		if err := os.RemoveAll(hs); err != nil {
			fmt.Fprintf(os.Stderr, "sbx-agent: restore of %s: removing the old tree at %s: %v\n", req.Dir, req.Staging, err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkStaging accepts only a staging directory that sits beside dir and
// carries the restore prefix, so that the route cannot remove or move
// anything else.
func checkStaging(staging, dir string) error {
	for _, p := range []string{staging, dir} {
		if _, err := checkPath(p); err != nil {
			return err
		}
	}
	if dir == "/" || path.Dir(staging) != path.Dir(dir) || !strings.HasPrefix(path.Base(staging), api.RestoreStagingPrefix) {
		return fmt.Errorf("%w: staging %q must be a %s* directory beside %q", errdefs.ErrInvalidPath, staging, api.RestoreStagingPrefix, dir)
	}
	return nil
}
