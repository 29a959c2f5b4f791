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
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// handleStat serves GET /fs/stat?path=: the entry itself (a symlink is not
// followed).
func (a *Agent) handleStat(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r, "path")
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	hp := a.hostPath(p)
	fi, err := os.Lstat(hp)
	if err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, fileInfo(p, hp, fi))
}

// handleExists serves GET /fs/exists?path=. A missing path is an answer,
// not an error; a dangling symlink exists.
func (a *Agent) handleExists(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r, "path")
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	res := api.FileExists{Path: p}
	fi, err := os.Lstat(a.hostPath(p))
	switch {
	case err == nil:
		res.Exists, res.Type = true, fileType(fi.Mode())
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
	default:
		errdefs.Write(w, fsErr(p, err))
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, res)
}

// handleList serves GET /fs/list?path=&recursive=&includeHidden=. The
// answer is streamed, entry by entry, so a listing of a large tree costs
// no memory; entries that vanish or cannot be read during the walk are
// left out.
func (a *Agent) handleList(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r, "path")
	var recursive, hidden bool
	if err == nil {
		recursive, err = queryBool(r, "recursive")
	}
	if err == nil {
		hidden, err = queryBool(r, "includeHidden")
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	root := a.hostPath(p)
	fi, err := os.Stat(root)
	if err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	}
	if !fi.IsDir() {
		errdefs.Write(w, fmt.Errorf("%w: %s; use /fs/stat for a single entry", errdefs.ErrNotADirectory, p))
		return
	}
	// Read the first level before answering, so that an unreadable
	// directory is an error rather than an empty list.
	first, err := os.ReadDir(root)
	if err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	}

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	head, _ := jsonMarshal(p)
	bw.WriteString(`{"path":`)
	bw.Write(head[:len(head)-1])
	bw.WriteString(`,"entries":[`)
	n := 0
	emit := func(sp, hp string, fi fs.FileInfo) {
		b, err := jsonMarshal(fileInfo(sp, hp, fi))
		if err != nil {
			return
		}
		if n > 0 {
			bw.WriteByte(',')
		}
		bw.Write(b[:len(b)-1])
		n++
	}
	var walk func(sp, hp string, ents []os.DirEntry)
	walk = func(sp, hp string, ents []os.DirEntry) {
		for _, e := range ents {
			if !hidden && strings.HasPrefix(e.Name(), ".") {
				continue
			}
			csp, chp := path.Join(sp, e.Name()), filepath.Join(hp, e.Name())
			fi, err := e.Info()
			if err != nil {
				continue
			}
			emit(csp, chp, fi)
			if recursive && e.IsDir() {
				sub, err := os.ReadDir(chp)
				if err == nil {
					walk(csp, chp, sub)
				}
			}
			if r.Context().Err() != nil {
				return
			}
		}
	}
	walk(p, root, first)
	bw.WriteString("]}\n")
	bw.Flush()
}

// handleMkdir serves POST /fs/mkdir.
func (a *Agent) handleMkdir(w http.ResponseWriter, r *http.Request) {
	var req api.MkdirRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	p, err := checkPath(req.Path)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	mode := fs.FileMode(0o755)
	if req.Mode != "" {
		if mode, err = api.ParseMode(req.Mode); err != nil {
			errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
			return
		}
	}
	hp := a.hostPath(p)
	created := true
	if req.Parents {
		if fi, err := os.Stat(hp); err == nil {
			if !fi.IsDir() {
				errdefs.Write(w, fmt.Errorf("%w: %s exists and is not a directory", errdefs.ErrFileExists, p))
				return
			}
			created = false
		} else if err := os.MkdirAll(hp, 0o755); err != nil {
			errdefs.Write(w, a.mkdirErr(p, hp, err))
			return
		}
	} else if err := os.Mkdir(hp, 0o755); err != nil {
		errdefs.Write(w, a.mkdirErr(p, hp, err))
		return
	}
	if created || req.Mode != "" {
		// Exactly the mode asked for, whatever the umask.
		if err := os.Chmod(hp, mode); err != nil {
			errdefs.Write(w, fsErr(p, err))
			return
		}
	}
	fi, err := os.Lstat(hp)
	if err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	errdefs.WriteJSON(w, status, fileInfo(p, hp, fi))
}

func (a *Agent) mkdirErr(p, hp string, err error) error {
	switch {
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%w: %s; pass parents=true to accept an existing directory", errdefs.ErrFileExists, p)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: parent directory %s does not exist; pass parents=true to create it", errdefs.ErrFileNotFound, path.Dir(p))
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: a parent of %s is not a directory", errdefs.ErrNotADirectory, p)
	}
	return fsErr(p, err)
}

// handleDelete serves DELETE /files/{path...}?recursive=: a directory only
// with recursive; a symlink itself, never its target.
func (a *Agent) handleDelete(w http.ResponseWriter, r *http.Request) {
	p, err := urlPath(r)
	var recursive bool
	if err == nil {
		recursive, err = queryBool(r, "recursive")
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	if p == "/" {
		errdefs.Write(w, fmt.Errorf("%w: refusing to delete /", errdefs.ErrInvalidPath))
		return
	}
	hp := a.hostPath(p)
	fi, err := os.Lstat(hp)
	if err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	}
	if fi.IsDir() {
		if !recursive {
			errdefs.Write(w, fmt.Errorf("%w: %s; pass recursive=true to delete it and everything in it", errdefs.ErrIsADirectory, p))
			return
		}
		err = os.RemoveAll(hp)
	} else {
		err = os.Remove(hp)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path != hp {
			// RemoveAll names the entry that could not go.
			errdefs.Write(w, fsErr(a.sandboxPath(pe.Path), err))
			return
		}
		errdefs.Write(w, fsErr(p, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleMove serves POST /fs/move: rename From to To, copying across file
// systems.
func (a *Agent) handleMove(w http.ResponseWriter, r *http.Request) {
	var req api.MoveRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	info, err := a.move(req)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	errdefs.WriteJSON(w, http.StatusOK, info)
}

func (a *Agent) move(req api.MoveRequest) (api.FileInfo, error) {
	from, err := checkPath(req.From)
	if err != nil {
		return api.FileInfo{}, fmt.Errorf("from: %w", err)
	}
	to, err := checkPath(req.To)
	if err != nil {
		return api.FileInfo{}, fmt.Errorf("to: %w", err)
	}
	switch {
	case from == "/" || to == "/":
		return api.FileInfo{}, fmt.Errorf("%w: / cannot be moved or replaced", errdefs.ErrInvalidPath)
	case strings.HasPrefix(to, from+"/"):
		return api.FileInfo{}, fmt.Errorf("%w: cannot move %s into itself (%s)", errdefs.ErrInvalidPath, from, to)
	}
	hf, ht := a.hostPath(from), a.hostPath(to)
	sfi, err := os.Lstat(hf)
	if err != nil {
		return api.FileInfo{}, fsErr(from, err)
	}
	if req.Parents {
		if err := os.MkdirAll(filepath.Dir(ht), 0o755); err != nil {
			return api.FileInfo{}, a.parentErr(filepath.Dir(ht), err)
		}
	}
	if req.NoOverwrite {
		err = unix.Renameat2(unix.AT_FDCWD, hf, unix.AT_FDCWD, ht, unix.RENAME_NOREPLACE)
		if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) {
			// A file system without RENAME_NOREPLACE: check, then
			// rename.
			if _, lerr := os.Lstat(ht); lerr == nil {
				err = syscall.EEXIST
			} else {
				err = os.Rename(hf, ht)
			}
		}
	} else {
		err = os.Rename(hf, ht)
	}
	if errors.Is(err, syscall.EXDEV) {
		err = a.moveAcross(hf, ht, sfi, req.NoOverwrite)
	}
	if err != nil {
		return api.FileInfo{}, a.moveErr(from, to, ht, sfi, req.NoOverwrite, err)
	}
	fi, err := os.Lstat(ht)
	if err != nil {
		return api.FileInfo{}, fsErr(to, err)
	}
	return fileInfo(to, ht, fi), nil
}

// moveErr explains a failed rename of from (with lstat sfi) to to.
func (a *Agent) moveErr(from, to, ht string, sfi fs.FileInfo, noOverwrite bool, err error) error {
	dfi, derr := os.Lstat(ht)
	dstDir := derr == nil && dfi.IsDir()
	switch {
	case noOverwrite && errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%w: %s (noOverwrite is set)", errdefs.ErrFileExists, to)
	case dstDir && !sfi.IsDir() && (errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.EISDIR)):
		return fmt.Errorf("%w: %s; give the full new path of %s, not the directory to move it into", errdefs.ErrIsADirectory, to, from)
	case dstDir && (errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY)):
		return fmt.Errorf("%w: %s is a directory that is not empty", errdefs.ErrFileExists, to)
	case derr == nil && !dstDir && sfi.IsDir() && errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %s is not a directory, so directory %s cannot replace it", errdefs.ErrNotADirectory, to, from)
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return a.parentErr(filepath.Dir(ht), err)
	case errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("%w: cannot move %s to %s", errdefs.ErrInvalidPath, from, to)
	}
	return fsErr(to, err)
}

// moveAcross moves hf to ht on another file system: copy, then delete the
// source. The copy lands beside ht under a temporary name and is renamed
// into place, so ht is replaced whole or not at all.
func (a *Agent) moveAcross(hf, ht string, sfi fs.FileInfo, noOverwrite bool) error {
	dfi, err := os.Lstat(ht)
	replaceDir := false
	switch {
	case err == nil && noOverwrite:
		return syscall.EEXIST
	case err == nil && dfi.IsDir() && !sfi.IsDir():
		return syscall.EISDIR
	case err == nil && !dfi.IsDir() && sfi.IsDir():
		return syscall.ENOTDIR
	case err == nil && dfi.IsDir():
		// rename(2) replaces only an empty directory.
		if ents, err := os.ReadDir(ht); err != nil || len(ents) > 0 {
			return syscall.ENOTEMPTY
		}
		replaceDir = true
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(ht), ".sbx-move-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	staged := filepath.Join(tmp, "x")
	if err := copyTree(hf, staged); err != nil {
		return err
	}
	if replaceDir {
		if err := os.Remove(ht); err != nil {
			return err
		}
	}
	if err := os.Rename(staged, ht); err != nil {
		return err
	}
	return os.RemoveAll(hf)
}

// copyTree copies src (any type) to dst, which must not exist, keeping
// modes, times and symlinks. Devices and sockets are left out.
func copyTree(src, dst string) error {
	type dirMeta struct {
		path string
		fi   fs.FileInfo
	}
	var dirs []dirMeta
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch m := fi.Mode(); {
		case m.IsDir():
			// Writable while it is filled; its own mode and time are
			// applied last.
			dirs = append(dirs, dirMeta{out, fi})
			return os.Mkdir(out, 0o700)
		case m&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, out)
		case m.IsRegular():
			if err := copyFile(p, out, m); err != nil {
				return err
			}
			return os.Chtimes(out, fi.ModTime(), fi.ModTime())
		case m&fs.ModeNamedPipe != 0:
			return unix.Mkfifo(out, uint32(m.Perm()))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := os.Chmod(d.path, d.fi.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetgid)); err != nil {
			return err
		}
		if err := os.Chtimes(d.path, d.fi.ModTime(), d.fi.ModTime()); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// File to file: io.Copy lets the kernel copy (copy_file_range).
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Chmod(mode & (fs.ModePerm | fs.ModeSticky | fs.ModeSetuid | fs.ModeSetgid))
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
