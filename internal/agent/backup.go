package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/fstree"
)

// registerBackup wires the two routes sbxd's backups need beyond the file
// routes: an archive walk that honours .gitignore files, and the atomic
// swap that finishes a restore. The restore's extraction itself is
// PUT /fs/tar into the staging directory.
func (a *Agent) registerBackup() {
	a.mux.HandleFunc("GET /backup/archive", a.handleBackupArchive)
	a.mux.HandleFunc("POST /backup/swap", a.handleBackupSwap)
}

// handleBackupArchive serves GET /backup/archive?path=&exclude=&gitignore=:
// the directory as an uncompressed tar stream, like GET /fs/tar, leaving
// out what the .gitignore files in it ignore when gitignore=true.
func (a *Agent) handleBackupArchive(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r, "path")
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	excl, err := fstree.ParseGlobs(r.URL.Query()["exclude"])
	if err != nil {
		errdefs.Write(w, fmt.Errorf("%w: exclude: %v", errdefs.ErrInvalidArgument, err))
		return
	}
	gi, err := queryBool(r, "gitignore")
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	hp := a.hostPath(p)
	fi, err := os.Stat(hp)
	if err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	}
	if !fi.IsDir() {
		errdefs.Write(w, fmt.Errorf("%w: %s is not a directory; backups archive directories", errdefs.ErrNotADirectory, p))
		return
	}
	d, err := os.Open(hp)
	if err == nil {
		_, err = d.ReadDir(1)
		d.Close()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		errdefs.Write(w, fsErr(p, err))
		return
	}
	opts := fstree.WriteOptions{Exclude: excl}
	if gi {
		opts.Skip = fstree.NewGitIgnore(hp).Match
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := fstree.Write(bw, hp, opts); err == nil {
		err = bw.Flush()
	}
	if err != nil && r.Context().Err() == nil {
		// Break the stream: a truncated archive must never pass for a
		// whole one.
		panic(http.ErrAbortHandler)
	}
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
