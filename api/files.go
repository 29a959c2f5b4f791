package api

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

// Error codes of the file routes. Every message names the path concerned.
const (
	CodeFileNotFound     = "FILE_NOT_FOUND"
	CodeIsADirectory     = "IS_A_DIRECTORY"
	CodeNotADirectory    = "NOT_A_DIRECTORY"
	CodePermissionDenied = "PERMISSION_DENIED"
	CodeFileExists       = "FILE_EXISTS"
	CodeInvalidPath      = "INVALID_PATH"
	CodeNoSpace          = "NO_SPACE"
)

// File types reported in FileInfo.Type.
const (
	FileTypeFile      = "file"
	FileTypeDirectory = "directory"
	FileTypeSymlink   = "symlink"
	// FileTypeOther is a device, fifo or socket.
	FileTypeOther = "other"
)

// Content encodings of the JSON file routes.
const (
	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
)

// FileInfo describes one file system entry. It describes the entry itself:
// a symlink is reported as a symlink, with its target, not followed.
type FileInfo struct {
	// Name is the last element of Path.
	Name string `json:"name"`
	// Path is absolute, inside the sandbox.
	Path string `json:"path"`
	// Type is file, directory, symlink or other.
	Type string `json:"type"`
	// Size in bytes; for a symlink, the length of its target.
	Size int64 `json:"size"`
	// Mode is the permission bits in octal, such as "0644" or "1777".
	Mode string `json:"mode"`
	// Permissions is the ls -l form, such as "-rw-r--r--".
	Permissions string    `json:"permissions"`
	ModifiedAt  time.Time `json:"modifiedAt"`
	// SymlinkTarget is what a symlink points to, as stored in it.
	SymlinkTarget string `json:"symlinkTarget,omitempty"`
}

// FileList is the body of GET /v1/sandboxes/{id}/fs/list. Entries are in
// lexical order of their paths; the listed directory itself is not one.
type FileList struct {
	Path    string     `json:"path"`
	Entries []FileInfo `json:"entries"`
}

// FileExists is the body of GET /v1/sandboxes/{id}/fs/exists.
type FileExists struct {
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	// Type is set when Exists is true.
	Type string `json:"type,omitempty"`
}

// FileContent is the body of GET /v1/sandboxes/{id}/fs/read: a file's
// content in a JSON string, for clients that want text rather than a byte
// stream.
type FileContent struct {
	Path string `json:"path"`
	// Encoding of Content: utf-8 or base64.
	Encoding string `json:"encoding"`
	// IsBinary is true when the file is not valid UTF-8 or contains NUL
	// bytes. Such files come back base64 unless utf-8 was asked for, in
	// which case invalid bytes read as U+FFFD.
	IsBinary bool `json:"isBinary"`
	// MimeType comes from the file's extension, or from its first bytes
	// when the extension says nothing.
	MimeType string `json:"mimeType"`
	Size     int64  `json:"size"`
	Content  string `json:"content"`
}

// WriteFileRequest is the body of POST /v1/sandboxes/{id}/fs/write.
type WriteFileRequest struct {
	Path string `json:"path"`
	// Content is the whole new content of the file.
	Content string `json:"content"`
	// Encoding of Content: utf-8 (the default) or base64.
	Encoding string `json:"encoding,omitempty"`
	// Mode is the octal permission bits, such as "0755". Empty keeps the
	// mode of the file being replaced, or 0644 for a new file.
	Mode string `json:"mode,omitempty"`
	// Parents creates missing parent directories.
	Parents bool `json:"parents,omitempty"`
	// NoOverwrite fails with FILE_EXISTS instead of replacing a file.
	NoOverwrite bool `json:"noOverwrite,omitempty"`
}

// MkdirRequest is the body of POST /v1/sandboxes/{id}/fs/mkdir.
type MkdirRequest struct {
	Path string `json:"path"`
	// Parents creates missing parents and accepts an existing directory,
	// like mkdir -p.
	Parents bool `json:"parents,omitempty"`
	// Mode is the octal permission bits; default "0755".
	Mode string `json:"mode,omitempty"`
}

// MoveRequest is the body of POST /v1/sandboxes/{id}/fs/move. The move is
// a rename when both paths are on one file system and a copy followed by a
// delete otherwise.
type MoveRequest struct {
	From string `json:"from"`
	// To is the new path of the entry, not a directory to move it into.
	To string `json:"to"`
	// NoOverwrite fails with FILE_EXISTS instead of replacing To.
	NoOverwrite bool `json:"noOverwrite,omitempty"`
	// Parents creates missing parent directories of To.
	Parents bool `json:"parents,omitempty"`
}

// TarResult is the body answering a tar upload: what was extracted.
type TarResult struct {
	Path        string `json:"path"`
	Files       int    `json:"files"`
	Directories int    `json:"directories"`
	Symlinks    int    `json:"symlinks"`
	// Hardlinks counts hard link entries.
	Hardlinks int `json:"hardlinks"`
	// Bytes is the total size of the regular files written.
	Bytes int64 `json:"bytes"`
}

// Watch event types, the SSE event names of GET /v1/sandboxes/{id}/watch.
const (
	// WatchWatching is the first event: every watch is in place, so
	// changes made from now on are reported.
	WatchWatching = "watching"
	WatchCreate   = "create"
	WatchModify   = "modify"
	WatchDelete   = "delete"
	// WatchMove carries From and To. An entry moved out of the watched
	// tree is reported as a delete and one moved in as a create.
	WatchMove   = "move"
	WatchAttrib = "attrib"
	// WatchResync says events were lost (the kernel's queue overflowed):
	// re-read the watched tree.
	WatchResync = "resync"
)

// WatchEvent is the data of one watch event.
type WatchEvent struct {
	Type string `json:"type"`
	// Path is the entry concerned; for move, the new path; for watching
	// and resync, the watched path.
	Path        string `json:"path"`
	IsDirectory bool   `json:"isDirectory"`
	From        string `json:"from,omitempty"`
	To          string `json:"to,omitempty"`
	// Message explains a resync.
	Message string `json:"message,omitempty"`
}

// ValidatePath checks a path inside a sandbox: absolute, clean (no "..",
// "." or repeated or trailing slashes) and without NUL bytes.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("path is empty; give an absolute path such as /workspace/file.txt")
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("path %q contains a NUL byte", p)
	case p[0] != '/':
		return fmt.Errorf("path %q is relative; give an absolute path such as /workspace/%s", p, p)
	}
	if c := path.Clean(p); c != p {
		return fmt.Errorf("path %q is not in clean form (no '..', '.', repeated or trailing '/'); use %q", p, c)
	}
	return nil
}

// ParseMode parses octal permission bits such as "644", "0755" or "0o1777".
func ParseMode(s string) (fs.FileMode, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("mode %q is not octal permission bits; use a form like 0644 or 0755", s)
	}
	m := fs.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// FormatMode renders the permission bits of m in octal, as ParseMode reads
// them ("0644", "1777").
func FormatMode(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}
