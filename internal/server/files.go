package server

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/fstree"
	"github.com/sbx-dev/sbx/internal/sandbox"
)

// Query parameters shared by several file routes.
var (
	pathParam      = param{"path", "string", "Absolute, clean path in the sandbox, e.g. /workspace/src."}
	recursiveParam = param{"recursive", "boolean", "true to include everything beneath the directory."}
)

// filesRoutes are the file routes. Content moves as raw bytes, streamed in
// both directions and never held whole by the daemon or the agent; the
// other operations speak JSON. Every path is validated here, before the
// sandbox is created or woken.
func (s *Server) filesRoutes() []route {
	return []route{
		{"GET", "/v1/sandboxes/{id}/files/{path...}", true, s.handleFileContent, opDoc{
			summary: "Read a file: the raw bytes at sandbox path /{path}, with Content-Length, a Content-Type from the extension " +
				"(sniffed when it says nothing), Last-Modified and Range support. Errors: FILE_NOT_FOUND, IS_A_DIRECTORY, NOT_A_DIRECTORY, INVALID_PATH (non-clean path, device or fifo).",
			stream: "application/octet-stream",
			also:   []alt{{http.StatusPartialContent, "The bytes of the requested Range, with Content-Range."}},
			headers: []param{{"Range", "string", "One or more byte ranges, e.g. bytes=0-1023 or bytes=-512; answered with 206 Partial Content " +
				"(several ranges as multipart/byteranges). An unsatisfiable range gets 416 with a plain-text body. " +
				"Ignored for files whose size the kernel reports as 0, such as those in /proc."}}}},
		{"PUT", "/v1/sandboxes/{id}/files/{path...}", true, s.handleFileContent, opDoc{
			summary: "Write a file: the raw request body, of any size, becomes the content of /{path}. It is streamed to a temporary file " +
				"beside the target and renamed over it when complete, so readers never see a partial file and a failed write leaves the old one intact. " +
				"201 when created, 200 when replaced; a symlink is followed. Errors: FILE_NOT_FOUND (missing parent without parents=true), IS_A_DIRECTORY, " +
				"NOT_A_DIRECTORY, FILE_EXISTS (noOverwrite), PERMISSION_DENIED, NO_SPACE, INVALID_PATH.",
			rawBody: []string{"application/octet-stream"}, response: api.FileInfo{},
			status: http.StatusCreated, also: []alt{{http.StatusOK, "An existing file was replaced."}},
			query: []param{
				{"mode", "string", "Octal permission bits, e.g. 0755; default: those of the file replaced, else 0644."},
				{"parents", "boolean", "true to create missing parent directories."},
				{"noOverwrite", "boolean", "true to fail with FILE_EXISTS instead of replacing a file."},
			}}},
		{"DELETE", "/v1/sandboxes/{id}/files/{path...}", true, s.handleFileContent, opDoc{
			summary: "Delete /{path}: a file or symlink (not its target), or a directory and everything in it with recursive=true " +
				"(IS_A_DIRECTORY without). FILE_NOT_FOUND if absent.",
			status: http.StatusNoContent, query: []param{recursiveParam}}},
		{"GET", "/v1/sandboxes/{id}/fs/read", true, s.handleFileQuery, opDoc{
			summary: "Read a file as JSON, for clients that want text: content as UTF-8 text, or base64 for binary files " +
				"(not valid UTF-8, or containing NUL) unless encoding says otherwise, with isBinary, mimeType and size.",
			response: api.FileContent{},
			query:    []param{pathParam, {"encoding", "string", "utf-8 or base64; default: utf-8 unless the file is binary. Invalid UTF-8 read as utf-8 becomes U+FFFD."}}}},
		{"POST", "/v1/sandboxes/{id}/fs/write", true, s.handleFileJSON, opDoc{
			summary: "Write a file from JSON, content as text or base64 (up to 64 MiB; use PUT /files/{path} for more). Same semantics and errors as PUT /files/{path}.",
			request: api.WriteFileRequest{}, response: api.FileInfo{}, status: http.StatusCreated,
			also: []alt{{http.StatusOK, "An existing file was replaced."}}}},
		{"GET", "/v1/sandboxes/{id}/fs/stat", true, s.handleFileQuery, opDoc{
			summary:  "Describe one entry, without following a symlink. FILE_NOT_FOUND if absent.",
			response: api.FileInfo{}, query: []param{pathParam}}},
		{"GET", "/v1/sandboxes/{id}/fs/exists", true, s.handleFileQuery, opDoc{
			summary:  "Whether a path exists (a dangling symlink does), and its type. Never FILE_NOT_FOUND.",
			response: api.FileExists{}, query: []param{pathParam}}},
		{"GET", "/v1/sandboxes/{id}/fs/list", true, s.handleFileQuery, opDoc{
			summary: "List a directory, in lexical order of paths, without the directory itself. Entries whose names start with '.' are left out " +
				"(with their content) unless includeHidden=true. NOT_A_DIRECTORY for a file.",
			response: api.FileList{},
			query:    []param{pathParam, recursiveParam, {"includeHidden", "boolean", "true to include entries whose names start with '.'."}}}},
		{"POST", "/v1/sandboxes/{id}/fs/mkdir", true, s.handleFileJSON, opDoc{
			summary: "Create a directory; with parents, its missing parents too, and an existing directory is fine (200). " +
				"FILE_EXISTS if it exists without parents, or exists and is not a directory.",
			request: api.MkdirRequest{}, response: api.FileInfo{}, status: http.StatusCreated,
			also: []alt{{http.StatusOK, "The directory already existed (parents=true)."}}}},
		{"POST", "/v1/sandboxes/{id}/fs/move", true, s.handleFileJSON, opDoc{
			summary: "Rename or move an entry to a new path (not into a directory: give the full new path), replacing a file or empty directory there " +
				"unless noOverwrite. Across file systems the entry is copied then deleted. Errors: FILE_NOT_FOUND, FILE_EXISTS, IS_A_DIRECTORY, NOT_A_DIRECTORY, INVALID_PATH (into itself).",
			request: api.MoveRequest{}, response: api.FileInfo{}}},
		{"GET", "/v1/sandboxes/{id}/fs/tar", true, s.handleFileQuery, opDoc{
			summary: "Download a directory as an uncompressed tar stream. Entry names are relative to it; symlinks stay symlinks; devices, fifos and sockets are left out. " +
				"If reading fails midway the connection is cut, so a truncated archive is never mistaken for a whole one.",
			stream: "application/x-tar",
			query: []param{pathParam, {"exclude", "string", "Glob to leave out, repeatable. Without '/' it matches a name at any depth " +
				"(node_modules, *.log); with '/' it is anchored at the directory (build/*.o, src/**/*.tmp). A matching directory is left out whole."},
				{"gitignore", "boolean", "true: also leave out what the .gitignore files in the directory ignore."}}}},
		{"PUT", "/v1/sandboxes/{id}/fs/tar", true, s.handleFileQuery, opDoc{
			summary: "Upload a tar stream (plain or gzip) and extract it into a directory, created if missing. Refused with INVALID_PATH, naming the entry: " +
				"absolute names, names with '..', symlinks or hard links leading outside the directory, entries reached through such a symlink, devices and fifos. " +
				"Files are replaced atomically; entries are owned by the sandbox's user (unless keepOwners). Extraction stops at the first refused entry; earlier entries stay.",
			rawBody: []string{"application/x-tar", "application/gzip"}, response: api.TarResult{},
			query: []param{pathParam, {"anySymlinkTarget", "boolean", "true to keep symlinks that point outside the directory " +
				"(as a restore needs: a virtualenv's bin/python3 -> /usr/bin/python3); entries reached through them are still refused."},
				{"keepOwners", "boolean", "true to give entries the numeric owners the archive records instead of the sandbox's user."}}}},
		{"GET", "/v1/sandboxes/{id}/watch", true, s.handleFileQuery, opDoc{
			summary: "Watch a directory (or one file) for changes, as server-sent events. The first event, watching, is sent once every watch is in place. " +
				"Then create, modify, delete, attrib (data: {type, path, isDirectory}) and move ({from, to}); with recursive, new subdirectories are watched as they appear. " +
				"Lost events (kernel queue overflow) are reported as resync: re-read the tree. The stream ends when the watched directory goes.",
			stream: "text/event-stream",
			query: []param{pathParam, recursiveParam,
				{"include", "string", "Glob of paths to report (relative to the watched directory; syntax as exclude of /fs/tar), repeatable; default all."},
				{"exclude", "string", "Glob of paths not to report, repeatable; excluded directories are not watched at all."}}}},
	}
}

// handleFileContent serves the /files/{path...} routes.
func (s *Server) handleFileContent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	rest := r.PathValue("path")
	if rest == "" {
		errdefs.Write(w, fmt.Errorf("%w: the path after /files/ is empty; give a file's path such as /files/workspace/a.txt", errdefs.ErrInvalidPath))
		return
	}
	p := "/" + rest
	if err := api.ValidatePath(p); err != nil {
		errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidPath, err))
		return
	}
	if err := checkFileQuery(r); err != nil {
		errdefs.Write(w, err)
		return
	}
	switch r.Method {
	case http.MethodPut:
		streamBody(r)
	case http.MethodGet:
		s.forwardDownload(w, r, id, "/files"+escapePath(p))
		return
	}
	s.forward(w, r, id, "/files"+escapePath(p), nil)
}

// uncleanFilePath explains an unclean request path (refused by
// ServeHTTP before routing) that addresses /v1/sandboxes/{id}/files/...:
// the file path in it is bad, and gets the same INVALID_PATH answer as any
// other bad file path. It returns nil for other routes.
func uncleanFilePath(escaped string) error {
	rest, ok := strings.CutPrefix(escaped, "/v1/sandboxes/")
	if !ok {
		return nil
	}
	id, rest, ok := strings.Cut(rest, "/")
	if !ok || id == "" {
		return nil
	}
	if rest, ok = strings.CutPrefix(rest, "files/"); !ok {
		return nil
	}
	if err := sandbox.ValidateID(id); err != nil {
		return err // as handleFileContent checks: the id first
	}
	p := "/" + rest
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	if err := api.ValidatePath(p); err != nil {
		return fmt.Errorf("%w: %v", errdefs.ErrInvalidPath, err)
	}
	return nil
}

// streamBody prepares an upload's body to be forwarded in large writes.
// Nothing limits its size: it streams through without being held. Sent
// with a Content-Length, the transport would copy it in 32 KiB pieces
// (io.Copy through an io.LimitedReader); sent chunked, it calls the body's
// WriteTo, which copies 1 MiB at a time. The agent does not need the
// length: a body cut short still fails to parse.
func streamBody(r *http.Request) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	r.Body = bigBody{r.Body}
	r.ContentLength = -1
}

type bigBody struct{ io.ReadCloser }

func (b bigBody) WriteTo(w io.Writer) (int64, error) { return fstree.CopyBuffer(w, b.ReadCloser) }

// handleFileQuery serves the routes that name their path in the query.
func (s *Server) handleFileQuery(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	p := r.URL.Query().Get("path")
	if p == "" {
		errdefs.Write(w, fmt.Errorf("%w: query parameter path is required: an absolute path such as /workspace", errdefs.ErrInvalidPath))
		return
	}
	if err := api.ValidatePath(p); err != nil {
		errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidPath, err))
		return
	}
	if err := checkFileQuery(r); err != nil {
		errdefs.Write(w, err)
		return
	}
	if r.Method == http.MethodPut {
		streamBody(r)
	}
	s.forward(w, r, id, strings.TrimPrefix(r.URL.Path, "/v1/sandboxes/"+id), nil)
}

// handleFileJSON serves the routes with JSON bodies.
func (s *Server) handleFileJSON(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := sandbox.ValidateID(id); err != nil {
		errdefs.Write(w, err)
		return
	}
	var (
		body  []byte
		err   error
		paths []string
		mode  string
	)
	op := strings.TrimPrefix(r.URL.Path, "/v1/sandboxes/"+id)
	switch op {
	case "/fs/write":
		var req api.WriteFileRequest
		body, err = readJSON(w, r, &req)
		paths, mode = []string{req.Path}, req.Mode
		if err == nil && req.Encoding != "" && req.Encoding != api.EncodingUTF8 && req.Encoding != api.EncodingBase64 {
			err = fmt.Errorf("%w: encoding %q is not supported; use utf-8 or base64", errdefs.ErrInvalidArgument, req.Encoding)
		}
	case "/fs/mkdir":
		var req api.MkdirRequest
		body, err = readJSON(w, r, &req)
		paths, mode = []string{req.Path}, req.Mode
	case "/fs/move":
		var req api.MoveRequest
		body, err = readJSON(w, r, &req)
		paths = []string{req.From, req.To}
	default:
		err = fmt.Errorf("%w: no route for %s", errdefs.ErrNotFound, r.URL.Path)
	}
	for _, p := range paths {
		if err != nil {
			break
		}
		if verr := api.ValidatePath(p); verr != nil {
			err = fmt.Errorf("%w: %v", errdefs.ErrInvalidPath, verr)
		}
	}
	if err == nil && mode != "" {
		if _, merr := api.ParseMode(mode); merr != nil {
			err = fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, merr)
		}
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	s.forward(w, r, id, op, body)
}

// checkFileQuery validates the optional query parameters of the file
// routes, so that mistakes are caught before the sandbox is touched.
func checkFileQuery(r *http.Request) error {
	q := r.URL.Query()
	for _, name := range []string{"recursive", "includeHidden", "parents", "noOverwrite"} {
		if v := q.Get(name); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				return fmt.Errorf("%w: query parameter %s=%q is not a boolean; use true or false", errdefs.ErrInvalidArgument, name, v)
			}
		}
	}
	if m := q.Get("mode"); m != "" {
		if _, err := api.ParseMode(m); err != nil {
			return fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
		}
	}
	if e := q.Get("encoding"); e != "" && e != api.EncodingUTF8 && e != api.EncodingBase64 {
		return fmt.Errorf("%w: encoding %q is not supported; use utf-8 or base64", errdefs.ErrInvalidArgument, e)
	}
	for _, name := range []string{"include", "exclude"} {
		if _, err := fstree.ParseGlobs(q[name]); err != nil {
			return fmt.Errorf("%w: %s: %v", errdefs.ErrInvalidArgument, name, err)
		}
	}
	return nil
}

// escapePath escapes each element of sandbox path p for a URL path.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}
