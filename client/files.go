package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sbx-dev/sbx/api"
)

// Paths given to the file methods are absolute paths inside the sandbox,
// in clean form ("/workspace/src", not "/workspace/src/" or
// "/workspace/../etc"). Failures of file operations are *Error values with
// the codes of package api (api.CodeFileNotFound, api.CodeFileExists, …);
// ErrorCode extracts the code.

// ErrorCode returns the API error code carried by err ("" if none).
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func invalidPath(p string) error {
	if err := api.ValidatePath(p); err != nil {
		return &Error{Status: http.StatusBadRequest, Code: api.CodeInvalidPath, Message: err.Error()}
	}
	return nil
}

// filesPath is the API path of the raw content of sandbox path p.
func (s *Sandbox) filesPath(p string) string {
	parts := strings.Split(p, "/")
	for i, e := range parts {
		parts[i] = url.PathEscape(e)
	}
	return s.path("/files" + strings.Join(parts, "/"))
}

// doRaw performs req and turns non-2xx answers into *Error. The caller
// closes the body of the response returned.
func (c *Client) doRaw(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sbx: %w (is sbxd running at %s?)", err, c.base)
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotModified {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// FileReader streams a file's content from the sandbox. Close it.
type FileReader struct {
	io.ReadCloser
	// Size is the number of bytes the body carries; -1 when the sandbox
	// does not know it in advance (files in /proc).
	Size int64
	// ContentType is from the file's extension or its first bytes.
	ContentType string
	ModTime     time.Time
}

// ReadOption adjusts OpenFile.
type ReadOption func(*http.Request)

// WithRange reads length bytes from offset; length < 0 reads to the end.
func WithRange(offset, length int64) ReadOption {
	return func(r *http.Request) {
		if length < 0 {
			r.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		} else if length > 0 {
			r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
		}
	}
}

// OpenFile starts streaming the file at path p. Nothing is buffered: the
// caller reads at its own pace.
func (s *Sandbox) OpenFile(ctx context.Context, p string, opts ...ReadOption) (*FileReader, error) {
	if err := invalidPath(p); err != nil {
		return nil, err
	}
	req, err := s.c.newRequest(ctx, http.MethodGet, s.filesPath(p), nil)
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := s.c.doRaw(req)
	if err != nil {
		return nil, err
	}
	fr := &FileReader{ReadCloser: resp.Body, Size: resp.ContentLength, ContentType: resp.Header.Get("Content-Type")}
	fr.ModTime, _ = http.ParseTime(resp.Header.Get("Last-Modified"))
	return fr, nil
}

// ReadFile returns the whole content of the file at path p. For large
// files prefer OpenFile or CopyFile, which stream.
func (s *Sandbox) ReadFile(ctx context.Context, p string) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := s.CopyFile(ctx, p, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CopyFile streams the file at path p into w and returns the number of
// bytes copied. A body cut short is an error, never a silent truncation.
func (s *Sandbox) CopyFile(ctx context.Context, p string, w io.Writer) (int64, error) {
	fr, err := s.OpenFile(ctx, p)
	if err != nil {
		return 0, err
	}
	defer fr.Close()
	// A large buffer, and no ReadFrom: *os.File's falls back to 32 KiB
	// copies for a network body.
	n, err := io.CopyBuffer(writerOnly{w}, fr, make([]byte, 1<<20))
	if err != nil {
		return n, fmt.Errorf("sbx: reading %s: %w", p, err)
	}
	if fr.Size >= 0 && n != fr.Size {
		return n, fmt.Errorf("sbx: reading %s: got %d of %d bytes: %w", p, n, fr.Size, io.ErrUnexpectedEOF)
	}
	return n, nil
}

type writerOnly struct{ io.Writer }

// WriteOption adjusts WriteFile.
type WriteOption func(q url.Values, req *http.Request)

// WithMode sets the file's permission bits (default: those of the file
// replaced, else 0644).
func WithMode(m fs.FileMode) WriteOption {
	return func(q url.Values, _ *http.Request) { q.Set("mode", api.FormatMode(m)) }
}

// WithParents creates missing parent directories.
func WithParents() WriteOption {
	return func(q url.Values, _ *http.Request) { q.Set("parents", "true") }
}

// WithNoOverwrite fails with api.CodeFileExists instead of replacing a
// file.
func WithNoOverwrite() WriteOption {
	return func(q url.Values, _ *http.Request) { q.Set("noOverwrite", "true") }
}

// WithSize declares the content's length in advance (sent as
// Content-Length). It is found by itself for *os.File, *bytes.Reader,
// *bytes.Buffer and *strings.Reader.
func WithSize(n int64) WriteOption {
	return func(_ url.Values, r *http.Request) { r.ContentLength = n }
}

// WriteFile writes everything read from r to the file at path p, streamed
// and of any size. The file is replaced atomically when r is exhausted; if
// reading r or the upload fails, the old file stays as it was.
func (s *Sandbox) WriteFile(ctx context.Context, p string, r io.Reader, opts ...WriteOption) (*api.FileInfo, error) {
	if err := invalidPath(p); err != nil {
		return nil, err
	}
	if r == nil {
		r = http.NoBody
	}
	req, err := s.c.newRequest(ctx, http.MethodPut, s.filesPath(p), r)
	if err != nil {
		return nil, err
	}
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			if off, err := f.Seek(0, io.SeekCurrent); err == nil {
				req.ContentLength = fi.Size() - off
			}
		}
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	q := url.Values{}
	for _, o := range opts {
		o(q, req)
	}
	req.URL.RawQuery = q.Encode()
	resp, err := s.c.doRaw(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var info api.FileInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nil, fmt.Errorf("sbx: decoding write answer for %s: %w", p, err)
	}
	return &info, nil
}

// ReadFileContent reads the file at path p into a JSON answer, as text or
// base64 (encoding "" picks text unless the file is binary).
func (s *Sandbox) ReadFileContent(ctx context.Context, p, encoding string) (*api.FileContent, error) {
	if err := invalidPath(p); err != nil {
		return nil, err
	}
	q := url.Values{"path": {p}}
	if encoding != "" {
		q.Set("encoding", encoding)
	}
	var fc api.FileContent
	if err := s.c.do(ctx, http.MethodGet, s.path("/fs/read?"+q.Encode()), nil, &fc); err != nil {
		return nil, err
	}
	return &fc, nil
}

// WriteFileContent writes a file from text or base64 held in memory.
func (s *Sandbox) WriteFileContent(ctx context.Context, req api.WriteFileRequest) (*api.FileInfo, error) {
	if err := invalidPath(req.Path); err != nil {
		return nil, err
	}
	var info api.FileInfo
	if err := s.c.do(ctx, http.MethodPost, s.path("/fs/write"), req, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Stat describes the entry at path p; a symlink is not followed.
func (s *Sandbox) Stat(ctx context.Context, p string) (*api.FileInfo, error) {
	if err := invalidPath(p); err != nil {
		return nil, err
	}
	var info api.FileInfo
	if err := s.c.do(ctx, http.MethodGet, s.path("/fs/stat?"+url.Values{"path": {p}}.Encode()), nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Exists reports whether path p exists (a dangling symlink does).
func (s *Sandbox) Exists(ctx context.Context, p string) (bool, error) {
	if err := invalidPath(p); err != nil {
		return false, err
	}
	var res api.FileExists
	if err := s.c.do(ctx, http.MethodGet, s.path("/fs/exists?"+url.Values{"path": {p}}.Encode()), nil, &res); err != nil {
		return false, err
	}
	return res.Exists, nil
}

// ListOptions adjusts ListFiles.
type ListOptions struct {
	// Recursive lists everything beneath the directory.
	Recursive bool
	// IncludeHidden includes entries whose names start with '.'.
	IncludeHidden bool
}

// ListFiles lists the directory at path p in lexical order of paths.
func (s *Sandbox) ListFiles(ctx context.Context, p string, opts ListOptions) ([]api.FileInfo, error) {
	if err := invalidPath(p); err != nil {
		return nil, err
	}
	q := url.Values{"path": {p}}
	if opts.Recursive {
		q.Set("recursive", "true")
	}
	if opts.IncludeHidden {
		q.Set("includeHidden", "true")
	}
	var l api.FileList
	if err := s.c.do(ctx, http.MethodGet, s.path("/fs/list?"+q.Encode()), nil, &l); err != nil {
		return nil, err
	}
	return l.Entries, nil
}

// Mkdir creates the directory p; with parents, also its missing parents,
// and an existing directory is not an error (mkdir -p).
func (s *Sandbox) Mkdir(ctx context.Context, p string, parents bool) (*api.FileInfo, error) {
	return s.MkdirRequest(ctx, api.MkdirRequest{Path: p, Parents: parents})
}

// MkdirRequest is Mkdir with every option.
func (s *Sandbox) MkdirRequest(ctx context.Context, req api.MkdirRequest) (*api.FileInfo, error) {
	if err := invalidPath(req.Path); err != nil {
		return nil, err
	}
	var info api.FileInfo
	if err := s.c.do(ctx, http.MethodPost, s.path("/fs/mkdir"), req, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Remove deletes the file, symlink or (with recursive) directory at p.
func (s *Sandbox) Remove(ctx context.Context, p string, recursive bool) error {
	if err := invalidPath(p); err != nil {
		return err
	}
	suffix := ""
	if recursive {
		suffix = "?recursive=true"
	}
	req, err := s.c.newRequest(ctx, http.MethodDelete, s.filesPath(p)+suffix, nil)
	if err != nil {
		return err
	}
	resp, err := s.c.doRaw(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Move renames from to to, the entry's full new path, replacing what is
// there (a file or an empty directory).
func (s *Sandbox) Move(ctx context.Context, from, to string) (*api.FileInfo, error) {
	return s.MoveRequest(ctx, api.MoveRequest{From: from, To: to})
}

// MoveRequest is Move with every option.
func (s *Sandbox) MoveRequest(ctx context.Context, req api.MoveRequest) (*api.FileInfo, error) {
	for _, p := range []string{req.From, req.To} {
		if err := invalidPath(p); err != nil {
			return nil, err
		}
	}
	var info api.FileInfo
	if err := s.c.do(ctx, http.MethodPost, s.path("/fs/move"), req, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// DownloadTar streams the directory dir as an uncompressed tar archive
// whose entry names are relative to it, leaving out entries matching the
// exclude globs (see the API documentation of GET /fs/tar). Close it. If
// the sandbox fails midway the stream ends in an error, not in a short
// archive.
func (s *Sandbox) DownloadTar(ctx context.Context, dir string, exclude ...string) (io.ReadCloser, error) {
	if err := invalidPath(dir); err != nil {
		return nil, err
	}
	q := url.Values{"path": {dir}}
	for _, e := range exclude {
		q.Add("exclude", e)
	}
	req, err := s.c.newRequest(ctx, http.MethodGet, s.path("/fs/tar?"+q.Encode()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.c.doRaw(req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// UploadTar extracts the tar stream r (plain or gzip) into the directory
// dir, creating it if needed. Entries that would land outside dir, devices
// and fifos are refused with api.CodeInvalidPath.
func (s *Sandbox) UploadTar(ctx context.Context, dir string, r io.Reader) (*api.TarResult, error) {
	if err := invalidPath(dir); err != nil {
		return nil, err
	}
	req, err := s.c.newRequest(ctx, http.MethodPut, s.path("/fs/tar?"+url.Values{"path": {dir}}.Encode()), r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := s.c.doRaw(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res api.TarResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("sbx: decoding tar upload answer: %w", err)
	}
	return &res, nil
}

// WatchOptions adjusts Watch.
type WatchOptions struct {
	// Recursive watches every directory beneath, new ones included.
	Recursive bool
	// Include, when set, reports only paths matching one of these globs
	// (relative to the watched directory); Exclude leaves matching paths
	// out, and excluded directories are not watched at all.
	Include, Exclude []string
}

// Watch streams changes under path p. The first event is api.WatchWatching,
// sent once every watch is in place: changes made after it arrives are
// reported. An api.WatchResync event means events were lost and the tree
// should be read again. The sequence ends when ctx is done, when the
// watched directory is deleted, or with an error.
func (s *Sandbox) Watch(ctx context.Context, p string, opts WatchOptions) iter.Seq2[api.WatchEvent, error] {
	return func(yield func(api.WatchEvent, error) bool) {
		if err := invalidPath(p); err != nil {
			yield(api.WatchEvent{}, err)
			return
		}
		q := url.Values{"path": {p}}
		if opts.Recursive {
			q.Set("recursive", "true")
		}
		q["include"], q["exclude"] = opts.Include, opts.Exclude
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		req, err := s.c.newRequest(ctx, http.MethodGet, s.path("/watch?"+q.Encode()), nil)
		if err != nil {
			yield(api.WatchEvent{}, err)
			return
		}
		req.Header.Set("Accept", "text/event-stream")
		resp, err := s.c.doRaw(req)
		if err != nil {
			yield(api.WatchEvent{}, err)
			return
		}
		defer resp.Body.Close()
		for ev, err := range readWatchEvents(resp.Body) {
			if err != nil && ctx.Err() != nil {
				return // the caller stopped watching
			}
			if !yield(ev, err) || err != nil {
				return
			}
		}
	}
}

// readWatchEvents parses server-sent watch events. An error event ends the
// sequence with that error as *Error.
func readWatchEvents(r io.Reader) iter.Seq2[api.WatchEvent, error] {
	return func(yield func(api.WatchEvent, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var name string
		var data []byte
		for sc.Scan() {
			line := sc.Bytes()
			switch {
			case len(line) == 0:
				if data == nil {
					continue
				}
				if name == "error" {
					var e api.Error
					if err := json.Unmarshal(data, &e); err != nil || e.Code == "" {
						e = api.Error{Code: api.CodeInternal, Message: string(data)}
					}
					yield(api.WatchEvent{}, &Error{Status: http.StatusOK, Code: e.Code, Message: e.Message})
					return
				}
				var ev api.WatchEvent
				if err := json.Unmarshal(data, &ev); err != nil {
					yield(api.WatchEvent{}, fmt.Errorf("sbx: decoding %s event: %w", name, err))
					return
				}
				if !yield(ev, nil) {
					return
				}
				name, data = "", nil
			case line[0] == ':':
				// comment (keepalive)
			case bytes.HasPrefix(line, []byte("event:")):
				name = strings.TrimSpace(string(line[len("event:"):]))
			case bytes.HasPrefix(line, []byte("data:")):
				data = append(data[:0:0], bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
			}
		}
		if err := sc.Err(); err != nil {
			yield(api.WatchEvent{}, fmt.Errorf("sbx: watch stream: %w", err))
		}
	}
}
