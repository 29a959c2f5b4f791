package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"syscall"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/fstree"
)

// handleTarDownload serves GET /fs/tar?path=&exclude=&gitignore=: the
// directory as an uncompressed tar stream, entries relative to it (see
// fstree.Write), leaving out what its .gitignore files ignore when
// gitignore=true. Backups read directories through it too.
func (a *Agent) handleTarDownload(w http.ResponseWriter, r *http.Request) {
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
	gitignore, err := queryBool(r, "gitignore")
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
		errdefs.Write(w, fmt.Errorf("%w: %s; read a single file with GET /files%s", errdefs.ErrNotADirectory, p, p))
		return
	}
	// Fail before the status goes out if the directory cannot be read.
	if d, err := os.Open(hp); err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	} else {
		_, err = d.ReadDir(1)
		d.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			errdefs.Write(w, fsErr(p, err))
			return
		}
	}
	name := path.Base(p)
	if name == "/" {
		name = "root"
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name + ".tar"}))
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 256<<10)
	opts := fstree.WriteOptions{Exclude: excl}
	if gitignore {
		opts.Skip = fstree.NewGitIgnore(hp).Match
	}
	if _, err := fstree.Write(bw, hp, opts); err == nil {
		err = bw.Flush()
	}
	if err != nil && r.Context().Err() == nil {
		// The status is sent: break the stream so the client cannot
		// take a truncated archive for a whole one.
		panic(http.ErrAbortHandler)
	}
}

// handleTarUpload serves PUT /fs/tar?path=[&anySymlinkTarget=true]
// [&keepOwners=true]: extract the tar stream in the body (gzip accepted)
// into the directory, creating it if needed, with the safety rules of
// fstree.Extract.
func (a *Agent) handleTarUpload(w http.ResponseWriter, r *http.Request) {
	_ = http.NewResponseController(w).EnableFullDuplex()
	p, err := queryPath(r, "path")
	if err != nil {
		failUpload(w, r, err)
		return
	}
	hp := a.hostPath(p)
	if err := os.MkdirAll(hp, 0o755); err != nil {
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("%w: %s (or one of its parents) is not a directory", errdefs.ErrNotADirectory, p)
		} else {
			err = fsErr(p, err)
		}
		failUpload(w, r, err)
		return
	}
	// anySymlinkTarget=true keeps symlinks that point out of the tree
	// (backup restores: a virtualenv's bin/python3 -> /usr/bin/python3);
	// keepOwners=true gives entries the archive's owners.
	q := r.URL.Query()
	st, err := fstree.Extract(bodyReader{r.Body}, hp, fstree.ExtractOptions{
		AnySymlinkTarget: q.Get("anySymlinkTarget") == "true",
		KeepOwners:       q.Get("keepOwners") == "true",
	})
	if err != nil {
		failUpload(w, r, tarErr(p, err))
		return
	}
	// Read what follows the archive's end (tar pads to 10 KiB records,
	// a chunked body has its terminator) while the handler runs: left to
	// net/http, a full-duplex body finished after the handler returns
	// starts a read on the connection that collides with the next request.
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		failUpload(w, r, fmt.Errorf("%w: reading the rest of the tar stream for %s: %v", errdefs.ErrInvalidArgument, p, err))
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, api.TarResult{
		Path: p, Files: st.Files, Directories: st.Dirs, Symlinks: st.Symlinks, Hardlinks: st.Hardlinks, Bytes: st.Bytes,
	})
}

// tarErr classifies an extraction error into directory p; the message
// names the entry.
func tarErr(p string, err error) error {
	var ue uploadError
	switch {
	case errors.Is(err, fstree.ErrUnsafe):
		return fmt.Errorf("%w: extracting into %s: %v", errdefs.ErrInvalidPath, p, err)
	case errors.As(err, &ue):
		return fmt.Errorf("%w: reading the tar stream for %s failed: %v", errdefs.ErrInvalidArgument, p, ue.err)
	case errors.Is(err, fstree.ErrBadArchive):
		return fmt.Errorf("%w: extracting into %s: %v", errdefs.ErrInvalidArgument, p, err)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if sentinel := errnoSentinel(errno); sentinel != nil {
			return fmt.Errorf("%w: extracting into %s: %v", sentinel, p, err)
		}
	}
	return fmt.Errorf("extracting into %s: %w", p, err)
}
