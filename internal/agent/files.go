package agent

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/fstree"
)

// registerFiles wires the file routes: content (files.go), directory
// operations (files_ops.go), trees (tar.go) and watches (watch.go).
//
// Paths are sandbox paths: absolute and clean. The agent maps them below
// Config.FileRoot, which is "/" in a sandbox and a temporary directory in
// tests. There is deliberately no os.Root at the sandbox's "/": inside the
// sandbox there is nothing above "/" to escape to, and os.Root refuses the
// absolute symlinks every distribution ships (/usr/bin/awk,
// /etc/localtime). Tar extraction, where escaping the target directory
// matters, goes through an os.Root on that directory (see fstree.Extract).
func (a *Agent) registerFiles() {
	a.mux.HandleFunc("GET /files/{path...}", a.handleReadFile)
	a.mux.HandleFunc("PUT /files/{path...}", a.handleWriteFile)
	a.mux.HandleFunc("DELETE /files/{path...}", a.handleDelete)
	a.mux.HandleFunc("GET /fs/read", a.handleReadContent)
	a.mux.HandleFunc("POST /fs/write", a.handleWriteContent)
	a.mux.HandleFunc("GET /fs/stat", a.handleStat)
	a.mux.HandleFunc("GET /fs/exists", a.handleExists)
	a.mux.HandleFunc("GET /fs/list", a.handleList)
	a.mux.HandleFunc("POST /fs/mkdir", a.handleMkdir)
	a.mux.HandleFunc("POST /fs/move", a.handleMove)
	a.mux.HandleFunc("GET /fs/tar", a.handleTarDownload)
	a.mux.HandleFunc("PUT /fs/tar", a.handleTarUpload)
	a.mux.HandleFunc("GET /watch", a.handleWatch)
}

// hostPath maps sandbox path p (absolute, clean) below the file root.
func (a *Agent) hostPath(p string) string {
	root := a.cfg.FileRoot
	if root == "" || root == "/" {
		return p
	}
	if p == "/" {
		return root
	}
	return root + p
}

// sandboxPath is the inverse of hostPath.
func (a *Agent) sandboxPath(hp string) string {
	root := a.cfg.FileRoot
	if root == "" || root == "/" {
		return hp
	}
	rel, err := filepath.Rel(root, hp)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return hp
	}
	return path.Join("/", filepath.ToSlash(rel))
}

// urlPath is the sandbox path of a /files/{path...} request.
func urlPath(r *http.Request) (string, error) {
	if r.PathValue("path") == "" {
		return "", fmt.Errorf("%w: the path after /files/ is empty; give a file's path such as /files/workspace/a.txt", errdefs.ErrInvalidPath)
	}
	return checkPath("/" + r.PathValue("path"))
}

// queryPath is the sandbox path in query parameter name.
func queryPath(r *http.Request, name string) (string, error) {
	p := r.URL.Query().Get(name)
	if p == "" {
		return "", fmt.Errorf("%w: query parameter %s is required: an absolute path such as /workspace", errdefs.ErrInvalidPath, name)
	}
	return checkPath(p)
}

func checkPath(p string) (string, error) {
	if err := api.ValidatePath(p); err != nil {
		return "", fmt.Errorf("%w: %v", errdefs.ErrInvalidPath, err)
	}
	return p, nil
}

// queryBool parses an optional boolean query parameter.
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: query parameter %s=%q is not a boolean; use true or false", errdefs.ErrInvalidArgument, name, v)
	}
	return b, nil
}

// fsErr turns a file system error about sandbox path p into an errdefs
// error whose message names p.
func fsErr(p string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch sentinel := errnoSentinel(errno); sentinel {
		case nil:
		case errdefs.ErrFileNotFound, errdefs.ErrIsADirectory, errdefs.ErrNotADirectory, errdefs.ErrFileExists:
			return fmt.Errorf("%w: %s", sentinel, p) // the errno would repeat the code
		default:
			return fmt.Errorf("%w: %s: %s", sentinel, p, errno.Error())
		}
	}
	return fmt.Errorf("%s: %w", p, err)
}

// errnoSentinel maps an errno to its errdefs sentinel; nil for errors
// that are the agent's own problem (reported as INTERNAL).
func errnoSentinel(errno syscall.Errno) error {
	switch errno {
	case syscall.ENOENT:
		return errdefs.ErrFileNotFound
	case syscall.EISDIR:
		return errdefs.ErrIsADirectory
	case syscall.ENOTDIR:
		return errdefs.ErrNotADirectory
	case syscall.EACCES, syscall.EPERM, syscall.EROFS, syscall.ETXTBSY:
		return errdefs.ErrPermissionDenied
	case syscall.EEXIST, syscall.ENOTEMPTY:
		return errdefs.ErrFileExists
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
		return errdefs.ErrNoSpace
	case syscall.ENAMETOOLONG, syscall.ELOOP, syscall.EINVAL, syscall.EXDEV:
		return errdefs.ErrInvalidPath
	case syscall.EBUSY:
		return errdefs.ErrConflict
	}
	return nil
}

// fileType names the type of m as api.FileInfo reports it.
func fileType(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return api.FileTypeFile
	case m.IsDir():
		return api.FileTypeDirectory
	case m&fs.ModeSymlink != 0:
		return api.FileTypeSymlink
	}
	return api.FileTypeOther
}

// specialKind describes a non-regular, non-directory mode for messages.
func specialKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a fifo"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file"
}

// permissions renders m as ls -l does: "-rw-r--r--", "drwxrwxrwt".
func permissions(m fs.FileMode) string {
	b := []byte("----------")
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	case m&fs.ModeCharDevice != 0:
		b[0] = 'c'
	case m&fs.ModeDevice != 0:
		b[0] = 'b'
	case m&fs.ModeNamedPipe != 0:
		b[0] = 'p'
	case m&fs.ModeSocket != 0:
		b[0] = 's'
	}
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if m&(1<<uint(8-i)) != 0 {
			b[i+1] = rwx[i]
		}
	}
	special := func(i int, set bool, c byte) {
		if !set {
			return
		}
		if b[i] == '-' {
			c -= 'a' - 'A'
		}
		b[i] = c
	}
	special(3, m&fs.ModeSetuid != 0, 's')
	special(6, m&fs.ModeSetgid != 0, 's')
	special(9, m&fs.ModeSticky != 0, 't')
	return string(b)
}

// fileInfo describes the entry at host path hp, named by sandbox path p,
// from its lstat result.
func fileInfo(p, hp string, fi fs.FileInfo) api.FileInfo {
	info := api.FileInfo{
		Name:        path.Base(p),
		Path:        p,
		Type:        fileType(fi.Mode()),
		Size:        fi.Size(),
		Mode:        api.FormatMode(fi.Mode()),
		Permissions: permissions(fi.Mode()),
		ModifiedAt:  fi.ModTime().UTC(),
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		info.SymlinkTarget, _ = os.Readlink(hp)
	}
	return info
}

// handleReadFile serves GET /files/{path...}: the file's bytes, with
// Content-Length, a Content-Type from the extension or the content, and
// Range support.
func (a *Agent) handleReadFile(w http.ResponseWriter, r *http.Request) {
	p, err := urlPath(r)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	f, fi, err := a.openRegular(p)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	defer f.Close()
	if fi.Size() > 0 {
		http.ServeContent(bigWrites{w}, r, path.Base(p), fi.ModTime(), f)
		return
	}
	// Files in /proc and /sys report size 0 whatever they hold: stream
	// them without a length (and without ranges, which HTTP lets a server
	// ignore).
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(512)
	ctype := mime.TypeByExtension(path.Ext(p))
	if ctype == "" {
		ctype = http.DetectContentType(head)
	}
	w.Header().Set("Content-Type", ctype)
	if len(head) == 0 {
		w.Header().Set("Content-Length", "0")
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		if _, err := fstree.CopyBuffer(w, br); err != nil && r.Context().Err() == nil {
			// Without a length, only a broken connection tells the
			// client that the body is incomplete.
			panic(http.ErrAbortHandler)
		}
	}
}

// bigWrites makes http.ServeContent send the file in 1 MiB writes. The
// server's own ReadFrom copies in 32 KiB pieces when the connection is not
// TCP, as the agent's unix socket is not.
type bigWrites struct{ http.ResponseWriter }

func (b bigWrites) ReadFrom(r io.Reader) (int64, error) {
	return fstree.CopyBuffer(b.ResponseWriter, r)
}

// openRegular opens sandbox path p for reading, refusing directories and
// special files (a fifo would block, a device never end).
func (a *Agent) openRegular(p string) (*os.File, fs.FileInfo, error) {
	// O_NONBLOCK: opening a fifo for reading would block until a writer
	// comes; it is refused below instead.
	f, err := os.OpenFile(a.hostPath(p), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fsErr(p, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fsErr(p, err)
	}
	switch {
	case fi.IsDir():
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s; list it with /fs/list or download it with /fs/tar", errdefs.ErrIsADirectory, p)
	case !fi.Mode().IsRegular():
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s is %s; only regular files can be read", errdefs.ErrInvalidPath, p, specialKind(fi.Mode()))
	}
	return f, fi, nil
}

// writeOptions are the options shared by the raw and JSON writes.
type writeOptions struct {
	mode        fs.FileMode
	hasMode     bool
	parents     bool
	noOverwrite bool
}

func writeOptionsFromQuery(r *http.Request) (writeOptions, error) {
	var o writeOptions
	var err error
	if m := r.URL.Query().Get("mode"); m != "" {
		if o.mode, err = api.ParseMode(m); err != nil {
			return o, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
		}
		o.hasMode = true
	}
	if o.parents, err = queryBool(r, "parents"); err != nil {
		return o, err
	}
	if o.noOverwrite, err = queryBool(r, "noOverwrite"); err != nil {
		return o, err
	}
	return o, nil
}

// handleWriteFile serves PUT /files/{path...}: the request body becomes
// the file's content, streamed to disk.
func (a *Agent) handleWriteFile(w http.ResponseWriter, r *http.Request) {
	// Full duplex: an error found mid-body is answered at once while the
	// rest of the body is drained (see failUpload).
	_ = http.NewResponseController(w).EnableFullDuplex()
	p, err := urlPath(r)
	var opts writeOptions
	if err == nil {
		opts, err = writeOptionsFromQuery(r)
	}
	if err != nil {
		failUpload(w, r, err)
		return
	}
	info, created, err := a.writeFile(p, r.Body, opts)
	if err != nil {
		failUpload(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	errdefs.WriteJSON(w, status, info)
}

// failUpload answers an upload with err and then drains the request body.
// Answering without reading the rest would make the server close the
// connection under the sender, who may then see a broken pipe instead of
// the error.
func failUpload(w http.ResponseWriter, r *http.Request, err error) {
	errdefs.Write(w, err)
	_ = http.NewResponseController(w).Flush()
	_, _ = io.Copy(io.Discard, r.Body)
}

// uploadError is a failure reading the request body, not the disk.
type uploadError struct{ err error }

func (e uploadError) Error() string { return e.err.Error() }
func (e uploadError) Unwrap() error { return e.err }

type bodyReader struct{ r io.Reader }

func (b bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = uploadError{err}
	}
	return n, err
}

// writeFile replaces the file at sandbox path p with the content of src,
// atomically: the content goes to a temporary file in the same directory,
// which is renamed over p only once complete. A failure at any point leaves
// the old file as it was, and concurrent writers each replace the file
// whole. A symlink at p is followed, as shell redirection would, so its
// target is replaced. It reports whether p was created.
func (a *Agent) writeFile(p string, src io.Reader, opts writeOptions) (api.FileInfo, bool, error) {
	if p == "/" {
		return api.FileInfo{}, false, fmt.Errorf("%w: / is a directory", errdefs.ErrIsADirectory)
	}
	target := a.hostPath(p)
	fi, err := os.Lstat(target)
	if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		target, err = a.resolveLink(target)
		if err != nil {
			return api.FileInfo{}, false, fsErr(p, err)
		}
		fi, err = os.Stat(target)
	}
	exists := err == nil
	tp := a.sandboxPath(target)
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return api.FileInfo{}, false, fsErr(tp, err)
	case exists && fi.IsDir():
		return api.FileInfo{}, false, fmt.Errorf("%w: %s; give the path of a file in it", errdefs.ErrIsADirectory, tp)
	case exists && !fi.Mode().IsRegular():
		return api.FileInfo{}, false, fmt.Errorf("%w: %s is %s; only regular files can be written", errdefs.ErrInvalidPath, tp, specialKind(fi.Mode()))
	case exists && opts.noOverwrite:
		return api.FileInfo{}, false, fmt.Errorf("%w: %s (noOverwrite is set)", errdefs.ErrFileExists, tp)
	}

	dir := filepath.Dir(target)
	if opts.parents {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return api.FileInfo{}, false, a.parentErr(dir, err)
		}
	}
	tmp, err := os.CreateTemp(dir, ".sbx-upload-*")
	if err != nil {
		return api.FileInfo{}, false, a.parentErr(dir, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	mode := fs.FileMode(0o644)
	switch {
	case opts.hasMode:
		mode = opts.mode
	case exists:
		mode = fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	}
	if _, err := copyToFile(tmp, bodyReader{src}); err != nil {
		var ue uploadError
		if errors.As(err, &ue) {
			return api.FileInfo{}, false, fmt.Errorf("%w: reading the content for %s failed, the file was left unchanged: %v", errdefs.ErrInvalidArgument, tp, ue.err)
		}
		return api.FileInfo{}, false, fsErr(tp, err)
	}
	if exists {
		// Keep the owner of the file being replaced.
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			_ = tmp.Chown(int(st.Uid), int(st.Gid))
		}
	}
	// After Chown, which clears set-id bits.
	if err := tmp.Chmod(mode); err != nil {
		return api.FileInfo{}, false, fsErr(tp, err)
	}
	if err := tmp.Close(); err != nil {
		return api.FileInfo{}, false, fsErr(tp, err)
	}
	if opts.noOverwrite {
		// link(2), unlike rename(2), fails if the name was taken since
		// the check above.
		err = os.Link(tmp.Name(), target)
		if errors.Is(err, fs.ErrExist) {
			return api.FileInfo{}, false, fmt.Errorf("%w: %s (noOverwrite is set)", errdefs.ErrFileExists, tp)
		}
	} else {
		err = os.Rename(tmp.Name(), target)
		renamed = err == nil
	}
	if err != nil {
		return api.FileInfo{}, false, fsErr(tp, err)
	}
	nfi, err := os.Lstat(target)
	if err != nil {
		return api.FileInfo{}, false, fsErr(tp, err)
	}
	return fileInfo(tp, target, nfi), !exists, nil
}

// parentErr explains a failure to use directory dir (host path) for a new
// file.
func (a *Agent) parentErr(dir string, err error) error {
	d := a.sandboxPath(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
			// procfs and the like refuse new files with ENOENT.
			return fmt.Errorf("%w: files cannot be created in %s: %v", errdefs.ErrPermissionDenied, d, err)
		}
		return fmt.Errorf("%w: directory %s does not exist; pass parents=true to create it", errdefs.ErrFileNotFound, d)
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %s (or one of its parents) is not a directory", errdefs.ErrNotADirectory, d)
	}
	return fsErr(d, err)
}

// resolveLink follows the symlink at host path hp to what it finally
// names, which need not exist yet.
func (a *Agent) resolveLink(hp string) (string, error) {
	if t, err := filepath.EvalSymlinks(hp); err == nil {
		return t, nil
	}
	t, err := os.Readlink(hp)
	if err != nil {
		return "", err
	}
	if filepath.IsAbs(t) {
		return a.hostPath(filepath.Clean(t)), nil
	}
	return filepath.Join(filepath.Dir(hp), t), nil
}

// handleReadContent serves GET /fs/read: the file in a JSON string. The
// JSON is streamed, so the file's size is not limited by memory: a first
// pass decides whether it is text, a second writes it.
func (a *Agent) handleReadContent(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r, "path")
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	enc := r.URL.Query().Get("encoding")
	if enc != "" && enc != api.EncodingUTF8 && enc != api.EncodingBase64 {
		errdefs.Write(w, fmt.Errorf("%w: encoding %q is not supported; use utf-8 or base64 (or leave it out to get text unless the file is binary)", errdefs.ErrInvalidArgument, enc))
		return
	}
	f, _, err := a.openRegular(p)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	defer f.Close()

	var head [512]byte
	hn, _ := io.ReadFull(f, head[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	}
	size, binary, err := classify(f)
	if err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	}
	mt := mime.TypeByExtension(path.Ext(p))
	if mt == "" {
		mt = http.DetectContentType(head[:hn])
	}
	if base, _, err := mime.ParseMediaType(mt); err == nil {
		mt = base
	}
	if enc == "" {
		enc = api.EncodingUTF8
		if binary {
			enc = api.EncodingBase64
		}
	}

	meta, _ := jsonMarshal(api.FileContent{Path: p, Encoding: enc, IsBinary: binary, MimeType: mt, Size: size})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 256<<10)
	// The metadata object ends with "content":""}; reopen the string and
	// stream the content into it.
	bw.Write(meta[:len(meta)-len(`"}`)-1])
	src := io.LimitReader(f, size)
	if enc == api.EncodingBase64 {
		b64 := base64.NewEncoder(base64.StdEncoding, bw)
		_, err = fstree.CopyBuffer(b64, src)
		if err == nil {
			err = b64.Close()
		}
	} else {
		err = writeJSONText(bw, src)
	}
	if err != nil {
		// The status is sent; cut the response short so the client sees
		// a broken body rather than a complete-looking one.
		panic(http.ErrAbortHandler)
	}
	bw.WriteString("\"}\n")
	bw.Flush()
}

// jsonMarshal encodes v as JSON followed by a newline, without HTML
// escaping.
func jsonMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// classify reads r to the end and reports its length and whether it is
// binary: containing NUL or invalid UTF-8.
func classify(r io.Reader) (int64, bool, error) {
	bp := make([]byte, 256<<10)
	var (
		n      int64
		binary bool
		carry  int // bytes of an incomplete rune kept at the start of bp
	)
	for {
		m, err := r.Read(bp[carry:])
		n += int64(m)
		if !binary && m > 0 {
			buf := bp[:carry+m]
			if bytes.IndexByte(buf[carry:], 0) >= 0 {
				binary = true
			} else {
				// Hold back a rune cut by the buffer's end.
				end := len(buf)
				for i := 1; i <= utf8.UTFMax-1 && i <= end; i++ {
					if utf8.RuneStart(buf[end-i]) {
						if !utf8.FullRune(buf[end-i:]) {
							end -= i
						}
						break
					}
				}
				if !utf8.Valid(buf[:end]) {
					binary = true
				}
				carry = copy(bp, buf[end:])
			}
		}
		if err == io.EOF {
			if carry > 0 {
				binary = true // ends inside a rune
			}
			return n, binary, nil
		}
		if err != nil {
			return n, binary, err
		}
	}
}

// writeJSONText writes r into a JSON string (without the quotes),
// escaping as JSON requires; invalid UTF-8 becomes U+FFFD.
func writeJSONText(w *bufio.Writer, r io.Reader) error {
	const hex = "0123456789abcdef"
	buf := make([]byte, 64<<10)
	carry := 0
	for {
		m, err := r.Read(buf[carry:])
		chunk := buf[:carry+m]
		end := len(chunk)
		if err == nil {
			// Keep an incomplete trailing rune for the next read.
			for i := 1; i <= utf8.UTFMax-1 && i <= end; i++ {
				if utf8.RuneStart(chunk[end-i]) {
					if !utf8.FullRune(chunk[end-i:]) {
						end -= i
					}
					break
				}
			}
		}
		for i := 0; i < end; {
			c := chunk[i]
			if c < utf8.RuneSelf {
				switch {
				case c == '"' || c == '\\':
					w.WriteByte('\\')
					w.WriteByte(c)
				case c == '\n':
					w.WriteString(`\n`)
				case c == '\r':
					w.WriteString(`\r`)
				case c == '\t':
					w.WriteString(`\t`)
				case c < 0x20:
					w.WriteString(`\u00`)
					w.WriteByte(hex[c>>4])
					w.WriteByte(hex[c&0xf])
				default:
					w.WriteByte(c)
				}
				i++
				continue
			}
			rn, size := utf8.DecodeRune(chunk[i:end])
			if rn == utf8.RuneError && size == 1 {
				w.WriteString(`\ufffd`)
			} else {
				w.Write(chunk[i : i+size])
			}
			i += size
		}
		carry = copy(buf, chunk[end:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// handleWriteContent serves POST /fs/write: a JSON body with the whole
// content as text or base64.
func (a *Agent) handleWriteContent(w http.ResponseWriter, r *http.Request) {
	var req api.WriteFileRequest
	if err := errdefs.DecodeJSON(r, &req); err != nil {
		errdefs.Write(w, err)
		return
	}
	p, err := checkPath(req.Path)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	content, err := decodeContent(req.Content, req.Encoding)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	opts := writeOptions{parents: req.Parents, noOverwrite: req.NoOverwrite}
	if req.Mode != "" {
		if opts.mode, err = api.ParseMode(req.Mode); err != nil {
			errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
			return
		}
		opts.hasMode = true
	}
	info, created, err := a.writeFile(p, bytes.NewReader(content), opts)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	errdefs.WriteJSON(w, status, info)
}

func decodeContent(content, enc string) ([]byte, error) {
	switch enc {
	case "", api.EncodingUTF8:
		return []byte(content), nil
	case api.EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(content)
		if err != nil {
			// Accept unpadded base64 too.
			if b2, err2 := base64.RawStdEncoding.DecodeString(content); err2 == nil {
				return b2, nil
			}
			return nil, fmt.Errorf("%w: content is not valid base64: %v", errdefs.ErrInvalidArgument, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: encoding %q is not supported; use utf-8 or base64", errdefs.ErrInvalidArgument, enc)
}
