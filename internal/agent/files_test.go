package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/api"
)

// fsFixture is an agent whose file root is a temporary directory.
type fsFixture struct {
	t    *testing.T
	root string
	hc   *http.Client
}

func newFSFixture(t *testing.T) *fsFixture {
	t.Helper()
	root := t.TempDir()
	c, _ := startAgent(t, Config{FileRoot: root})
	return &fsFixture{t: t, root: root, hc: c.hc}
}

// host is the host path of sandbox path p.
func (f *fsFixture) host(p string) string { return filepath.Join(f.root, p) }

// escape renders sandbox path p for a /files/ URL.
func escape(p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return "/" + strings.Join(parts, "/")
}

// do sends a request; hdr is pairs of header names and values.
func (f *fsFixture) do(method, target string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	f.t.Helper()
	req, err := http.NewRequest(method, "http://agent"+target, body)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return resp, b
}

func (f *fsFixture) put(p string, content []byte, query string) (*http.Response, []byte) {
	f.t.Helper()
	if query != "" {
		query = "?" + query
	}
	return f.do("PUT", "/files"+escape(p)+query, bytes.NewReader(content))
}

func (f *fsFixture) postJSON(target string, v any) (*http.Response, []byte) {
	f.t.Helper()
	b, _ := json.Marshal(v)
	return f.do("POST", target, bytes.NewReader(b), "Content-Type", "application/json")
}

// wantErr checks an error answer: status, code, and a message naming
// mention.
func wantErr(t *testing.T, resp *http.Response, body []byte, status int, code, mention string) {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("status %d, body %q is not an error: %v", resp.StatusCode, body, err)
	}
	if resp.StatusCode != status || e.Code != code {
		t.Fatalf("got %d %s (%s), want %d %s", resp.StatusCode, e.Code, e.Message, status, code)
	}
	if !strings.Contains(e.Message, mention) {
		t.Errorf("message %q does not name %q", e.Message, mention)
	}
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

// allBytes is every byte value, several times over.
func allBytes(n int) []byte {
	b := make([]byte, 256*n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// noTemps fails if the agent left temporary files under dir.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d != nil && strings.HasPrefix(d.Name(), ".sbx-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

// mountTmpfs mounts a tmpfs with the given options on a new directory
// under the fixture's root, unmounted when the test ends.
func (f *fsFixture) mountTmpfs(p, opts string, readOnly bool) {
	f.t.Helper()
	if os.Geteuid() != 0 {
		f.t.Skip("needs root to mount a tmpfs")
	}
	dir := f.host(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		f.t.Fatalf("mount tmpfs: %v", err)
	}
	f.t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			f.t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if readOnly {
		if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, opts); err != nil {
			f.t.Fatalf("remount read-only: %v", err)
		}
	}
}

func TestFilesBinaryRoundTrip(t *testing.T) {
	f := newFSFixture(t)
	data := allBytes(64)
	resp, body := f.put("/data/all.bin", data, "parents=true")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	info := decode[api.FileInfo](t, body)
	if info.Path != "/data/all.bin" || info.Size != int64(len(data)) || info.Type != api.FileTypeFile || info.Mode != "0644" || info.Permissions != "-rw-r--r--" {
		t.Errorf("info %+v", info)
	}
	resp, got := f.do("GET", "/files/data/all.bin", nil)
	if resp.StatusCode != 200 || !bytes.Equal(got, data) {
		t.Fatalf("GET: %d, %d bytes, equal %v", resp.StatusCode, len(got), bytes.Equal(got, data))
	}
	if resp.Header.Get("Content-Length") != fmt.Sprint(len(data)) {
		t.Errorf("Content-Length %q", resp.Header.Get("Content-Length"))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	// Replacing answers 200 and the content changes whole.
	resp, _ = f.put("/data/all.bin", []byte("short"), "")
	if resp.StatusCode != 200 {
		t.Errorf("replace: %d", resp.StatusCode)
	}
	if b, _ := os.ReadFile(f.host("/data/all.bin")); string(b) != "short" {
		t.Errorf("after replace: %q", b)
	}
	noTemps(t, f.root)
}

func TestFilesReadHeadersAndRanges(t *testing.T) {
	f := newFSFixture(t)
	os.WriteFile(f.host("/page.html"), []byte("<html><body>hi</body></html>"), 0o644)
	os.WriteFile(f.host("/noext"), []byte("<!DOCTYPE html><html></html>"), 0o644)
	os.WriteFile(f.host("/digits"), []byte("0123456789"), 0o644)
	os.WriteFile(f.host("/empty.txt"), nil, 0o644)
	os.WriteFile(f.host("/with space?#%.txt"), []byte("odd name"), 0o644)

	tests := []struct {
		name, path, rng string
		status          int
		body, ctype     string
	}{
		{"by extension", "/page.html", "", 200, "<html><body>hi</body></html>", "text/html; charset=utf-8"},
		{"sniffed", "/noext", "", 200, "<!DOCTYPE html><html></html>", "text/html; charset=utf-8"},
		{"range", "/digits", "bytes=2-4", 206, "234", ""},
		{"suffix range", "/digits", "bytes=-3", 206, "789", ""},
		{"empty", "/empty.txt", "", 200, "", "text/plain; charset=utf-8"},
		{"escaped name", "/with space?#%.txt", "", 200, "odd name", "text/plain; charset=utf-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.rng != "" {
				hdr = []string{"Range", tc.rng}
			}
			resp, body := f.do("GET", "/files"+escape(tc.path), nil, hdr...)
			if resp.StatusCode != tc.status || string(body) != tc.body {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if tc.ctype != "" && resp.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.ctype)
			}
			if resp.Header.Get("Content-Length") != fmt.Sprint(len(tc.body)) {
				t.Errorf("Content-Length %q", resp.Header.Get("Content-Length"))
			}
		})
	}
	resp, _ := f.do("GET", "/files/digits", nil, "Range", "bytes=20-30")
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("unsatisfiable range: %d", resp.StatusCode)
	}
	resp, body := f.do("HEAD", "/files/digits", nil)
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != 10 {
		t.Errorf("HEAD: %d len %d body %q", resp.StatusCode, resp.ContentLength, body)
	}
}

func TestFilesWriteOptions(t *testing.T) {
	f := newFSFixture(t)
	resp, body := f.put("/run.sh", []byte("#!/bin/sh\n"), "mode=0750")
	if resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if fi, _ := os.Stat(f.host("/run.sh")); fi.Mode().Perm() != 0o750 {
		t.Errorf("mode %v", fi.Mode())
	}
	// Replacing keeps the mode unless one is given.
	f.put("/run.sh", []byte("#!/bin/sh\necho\n"), "")
	if fi, _ := os.Stat(f.host("/run.sh")); fi.Mode().Perm() != 0o750 {
		t.Errorf("mode not kept: %v", fi.Mode())
	}
	f.put("/run.sh", []byte("x"), "mode=600")
	if fi, _ := os.Stat(f.host("/run.sh")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode not applied: %v", fi.Mode())
	}
	resp, body = f.put("/run.sh", []byte("y"), "noOverwrite=true")
	wantErr(t, resp, body, 409, api.CodeFileExists, "/run.sh")
	if b, _ := os.ReadFile(f.host("/run.sh")); string(b) != "x" {
		t.Errorf("noOverwrite replaced the file: %q", b)
	}
	resp, _ = f.put("/fresh", []byte("z"), "noOverwrite=true")
	if resp.StatusCode != 201 {
		t.Errorf("noOverwrite on a new path: %d", resp.StatusCode)
	}
	resp, body = f.put("/a/b/c/deep.txt", []byte("deep"), "parents=true")
	if resp.StatusCode != 201 {
		t.Fatalf("parents: %d %s", resp.StatusCode, body)
	}
	// A symlink is followed: its target is replaced, the link stays.
	os.WriteFile(f.host("/target.txt"), []byte("old"), 0o644)
	os.Symlink("target.txt", f.host("/link.txt"))
	resp, body = f.put("/link.txt", []byte("through the link"), "")
	if resp.StatusCode != 200 || decode[api.FileInfo](t, body).Path != "/target.txt" {
		t.Errorf("write through symlink: %d %s", resp.StatusCode, body)
	}
	if b, _ := os.ReadFile(f.host("/target.txt")); string(b) != "through the link" {
		t.Errorf("target = %q", b)
	}
	if fi, _ := os.Lstat(f.host("/link.txt")); fi.Mode()&fs.ModeSymlink == 0 {
		t.Error("the symlink was replaced")
	}
	noTemps(t, f.root)
}

func TestFilesErrors(t *testing.T) {
	f := newFSFixture(t)
	os.MkdirAll(f.host("/dir/sub"), 0o755)
	os.WriteFile(f.host("/dir/file"), []byte("x"), 0o644)
	if err := syscall.Mkfifo(f.host("/dir/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.mountTmpfs("/ro", "size=1m", false)
	os.WriteFile(f.host("/ro/keep"), []byte("x"), 0o644)
	if err := unix.Mount("", f.host("/ro"), "", unix.MS_REMOUNT|unix.MS_RDONLY, "size=1m"); err != nil {
		t.Fatal(err)
	}
	f.mountTmpfs("/small", "size=64k", false)

	tests := []struct {
		name, method, target string
		body                 string
		status               int
		code, mention        string
	}{
		{"read missing", "GET", "/files/dir/nope", "", 404, api.CodeFileNotFound, "/dir/nope"},
		{"read directory", "GET", "/files/dir/sub", "", 400, api.CodeIsADirectory, "/dir/sub"},
		{"read below a file", "GET", "/files/dir/file/x", "", 400, api.CodeNotADirectory, "/dir/file/x"},
		{"read fifo", "GET", "/files/dir/fifo", "", 400, api.CodeInvalidPath, "/dir/fifo"},
		{"write directory", "PUT", "/files/dir/sub", "x", 400, api.CodeIsADirectory, "/dir/sub"},
		{"write fifo", "PUT", "/files/dir/fifo", "x", 400, api.CodeInvalidPath, "/dir/fifo"},
		{"write without parent", "PUT", "/files/dir/new/f.txt", "x", 404, api.CodeFileNotFound, "/dir/new"},
		{"write below a file", "PUT", "/files/dir/file/f.txt", "x", 400, api.CodeNotADirectory, "/dir/file"},
		{"write read-only", "PUT", "/files/ro/f.txt", "x", 403, api.CodePermissionDenied, "/ro"},
		{"write too big", "PUT", "/files/small/big", strings.Repeat("x", 256<<10), 507, api.CodeNoSpace, "/small/big"},
		{"bad mode", "PUT", "/files/dir/m?mode=999", "x", 400, api.CodeInvalidRequest, "999"},
		{"bad bool", "PUT", "/files/dir/m?parents=maybe", "x", 400, api.CodeInvalidRequest, "parents"},
		{"dot-dot escaped", "GET", "/files/dir/%2E%2E/dir/file", "", 400, api.CodeInvalidPath, "/dir/../dir/file"},
		{"slash escaped", "GET", "/files/dir%2F%2Ffile", "", 400, api.CodeInvalidPath, "dir//file"},
		{"NUL", "GET", "/files/dir/a%00b", "", 400, api.CodeInvalidPath, "NUL"},
		{"empty", "GET", "/files/", "", 400, api.CodeInvalidPath, "empty"},
		{"delete missing", "DELETE", "/files/dir/nope", "", 404, api.CodeFileNotFound, "/dir/nope"},
		{"delete dir without recursive", "DELETE", "/files/dir/sub", "", 400, api.CodeIsADirectory, "/dir/sub"},
		{"delete read-only", "DELETE", "/files/ro/keep", "", 403, api.CodePermissionDenied, "/ro/keep"},
		{"stat missing", "GET", "/fs/stat?path=/dir/nope", "", 404, api.CodeFileNotFound, "/dir/nope"},
		{"stat relative", "GET", "/fs/stat?path=dir", "", 400, api.CodeInvalidPath, "dir"},
		{"stat without path", "GET", "/fs/stat", "", 400, api.CodeInvalidPath, "path"},
		{"list a file", "GET", "/fs/list?path=/dir/file", "", 400, api.CodeNotADirectory, "/dir/file"},
		{"list missing", "GET", "/fs/list?path=/nope", "", 404, api.CodeFileNotFound, "/nope"},
		{"read json missing", "GET", "/fs/read?path=/nope", "", 404, api.CodeFileNotFound, "/nope"},
		{"read json bad encoding", "GET", "/fs/read?path=/dir/file&encoding=latin1", "", 400, api.CodeInvalidRequest, "latin1"},
		{"tar of a file", "GET", "/fs/tar?path=/dir/file", "", 400, api.CodeNotADirectory, "/dir/file"},
		{"tar bad glob", "GET", "/fs/tar?path=/dir&exclude=%5Ba-", "", 400, api.CodeInvalidRequest, "[a-"},
		{"tar upload into a file", "PUT", "/fs/tar?path=/dir/file", "", 400, api.CodeNotADirectory, "/dir/file"},
		{"watch missing", "GET", "/watch?path=/nope", "", 404, api.CodeFileNotFound, "/nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			resp, b := f.do(tc.method, tc.target, body)
			wantErr(t, resp, b, tc.status, tc.code, tc.mention)
		})
	}
	noTemps(t, f.root)
}

func TestFilesFailedWriteKeepsOldFile(t *testing.T) {
	f := newFSFixture(t)
	f.mountTmpfs("/small", "size=1m", false)
	old := []byte("the old content")
	os.WriteFile(f.host("/small/f"), old, 0o644)

	// The disk fills up half way.
	resp, body := f.put("/small/f", bytes.Repeat([]byte("x"), 4<<20), "")
	wantErr(t, resp, body, 507, api.CodeNoSpace, "/small/f")
	if b, _ := os.ReadFile(f.host("/small/f")); !bytes.Equal(b, old) {
		t.Errorf("old file damaged: %q", b)
	}

	// The client goes away half way.
	pr, pw := io.Pipe()
	go func() {
		pw.Write(bytes.Repeat([]byte("y"), 100<<10))
		pw.CloseWithError(errors.New("client crashed"))
	}()
	req, _ := http.NewRequest("PUT", "http://agent/files/small/f", pr)
	req.ContentLength = 1 << 20 // promised more than it sends
	if resp, err := f.hc.Do(req); err == nil {
		resp.Body.Close()
	}
	if !eventually(2*time.Second, func() bool {
		b, _ := os.ReadFile(f.host("/small/f"))
		ents, _ := os.ReadDir(f.host("/small"))
		return bytes.Equal(b, old) && len(ents) == 1
	}) {
		b, _ := os.ReadFile(f.host("/small/f"))
		t.Errorf("after an interrupted upload: %q", b)
		noTemps(t, f.root)
	}
}

func TestFilesConcurrentWriters(t *testing.T) {
	f := newFSFixture(t)
	const writers, rounds, size = 8, 5, 256 << 10
	contents := make([][]byte, writers)
	sums := map[[32]byte]bool{}
	for i := range contents {
		contents[i] = bytes.Repeat([]byte{byte('a' + i)}, size)
		sums[sha256.Sum256(contents[i])] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	torn := make(chan string, 100)
	// A reader checks that every version it sees is one writer's whole
	// content.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			b, err := os.ReadFile(f.host("/shared.bin"))
			if err == nil && !sums[sha256.Sum256(b)] {
				torn <- fmt.Sprintf("read a torn file of %d bytes", len(b))
				return
			}
		}
	}()
	var ww sync.WaitGroup
	for i := range writers {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for range rounds {
				req, _ := http.NewRequest("PUT", "http://agent/files/shared.bin", bytes.NewReader(contents[i]))
				resp, err := f.hc.Do(req)
				if err != nil {
					torn <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					torn <- fmt.Sprintf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	ww.Wait()
	cancel()
	wg.Wait()
	close(torn)
	for msg := range torn {
		t.Error(msg)
	}
	b, _ := os.ReadFile(f.host("/shared.bin"))
	if !sums[sha256.Sum256(b)] {
		t.Errorf("final content is no writer's: %d bytes", len(b))
	}
	noTemps(t, f.root)
}

func TestFilesJSONContent(t *testing.T) {
	f := newFSFixture(t)
	text := "line \"one\"\n\ttab \\ é ✓ \x01 <tag>\n"
	resp, body := f.postJSON("/fs/write", api.WriteFileRequest{Path: "/t/note.md", Content: text, Parents: true})
	if resp.StatusCode != 201 {
		t.Fatalf("write text: %d %s", resp.StatusCode, body)
	}
	bin := allBytes(3)
	resp, body = f.postJSON("/fs/write", api.WriteFileRequest{Path: "/t/blob", Content: base64.StdEncoding.EncodeToString(bin), Encoding: "base64", Mode: "0600"})
	if resp.StatusCode != 201 {
		t.Fatalf("write base64: %d %s", resp.StatusCode, body)
	}
	if b, _ := os.ReadFile(f.host("/t/blob")); !bytes.Equal(b, bin) {
		t.Error("base64 content differs on disk")
	}
	// Long text crosses the reader's buffers, with runes cut at the edges.
	long := strings.Repeat("αβγ—xyz", 40000)
	os.WriteFile(f.host("/t/long.txt"), []byte(long), 0o644)
	os.WriteFile(f.host("/t/bad-utf8.txt"), []byte("ok \xff\xfe end"), 0o644)

	tests := []struct {
		path, enc   string
		wantEnc     string
		binary      bool
		mime        string
		wantContent string
		wantDecoded []byte
	}{
		{"/t/note.md", "", "utf-8", false, "text/markdown", text, nil},
		{"/t/long.txt", "", "utf-8", false, "text/plain", long, nil},
		{"/t/blob", "", "base64", true, "application/octet-stream", "", bin},
		{"/t/note.md", "base64", "base64", false, "text/markdown", "", []byte(text)},
		{"/t/bad-utf8.txt", "", "base64", true, "text/plain", "", []byte("ok \xff\xfe end")},
		{"/t/bad-utf8.txt", "utf-8", "utf-8", true, "text/plain", "ok \ufffd\ufffd end", nil},
	}
	for _, tc := range tests {
		t.Run(tc.path+"/"+tc.enc, func(t *testing.T) {
			q := "/fs/read?path=" + url.QueryEscape(tc.path)
			if tc.enc != "" {
				q += "&encoding=" + tc.enc
			}
			resp, body := f.do("GET", q, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			fc := decode[api.FileContent](t, body)
			if fc.Encoding != tc.wantEnc || fc.IsBinary != tc.binary || fc.MimeType != tc.mime || fc.Path != tc.path {
				t.Errorf("got encoding %s binary %v mime %s path %s", fc.Encoding, fc.IsBinary, fc.MimeType, fc.Path)
			}
			fi, _ := os.Stat(f.host(tc.path))
			if fc.Size != fi.Size() {
				t.Errorf("size %d, want %d", fc.Size, fi.Size())
			}
			if tc.wantDecoded != nil {
				got, err := base64.StdEncoding.DecodeString(fc.Content)
				if err != nil || !bytes.Equal(got, tc.wantDecoded) {
					t.Errorf("base64 content differs: %v", err)
				}
			} else if fc.Content != tc.wantContent {
				t.Errorf("content differs (%d vs %d bytes)", len(fc.Content), len(tc.wantContent))
			}
		})
	}
	resp, body = f.postJSON("/fs/write", api.WriteFileRequest{Path: "/t/x", Content: "!!!", Encoding: "base64"})
	wantErr(t, resp, body, 400, api.CodeInvalidRequest, "base64")
	resp, body = f.postJSON("/fs/write", api.WriteFileRequest{Path: "t/x", Content: "x"})
	wantErr(t, resp, body, 400, api.CodeInvalidPath, "t/x")
	resp, body = f.postJSON("/fs/write", api.WriteFileRequest{Path: "/t/note.md", Content: "x", NoOverwrite: true})
	wantErr(t, resp, body, 409, api.CodeFileExists, "/t/note.md")
}

func TestFilesDirectoryOperations(t *testing.T) {
	f := newFSFixture(t)
	// mkdir
	resp, body := f.postJSON("/fs/mkdir", api.MkdirRequest{Path: "/a"})
	if resp.StatusCode != 201 || decode[api.FileInfo](t, body).Type != api.FileTypeDirectory {
		t.Fatalf("mkdir: %d %s", resp.StatusCode, body)
	}
	resp, body = f.postJSON("/fs/mkdir", api.MkdirRequest{Path: "/a"})
	wantErr(t, resp, body, 409, api.CodeFileExists, "/a")
	resp, body = f.postJSON("/fs/mkdir", api.MkdirRequest{Path: "/x/y/z"})
	wantErr(t, resp, body, 404, api.CodeFileNotFound, "/x/y")
	resp, body = f.postJSON("/fs/mkdir", api.MkdirRequest{Path: "/x/y/z", Parents: true, Mode: "0700"})
	if resp.StatusCode != 201 {
		t.Fatalf("mkdir -p: %d %s", resp.StatusCode, body)
	}
	if fi, _ := os.Stat(f.host("/x/y/z")); fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v", fi.Mode())
	}
	resp, _ = f.postJSON("/fs/mkdir", api.MkdirRequest{Path: "/x/y/z", Parents: true})
	if resp.StatusCode != 200 {
		t.Errorf("mkdir -p of an existing directory: %d", resp.StatusCode)
	}
	os.WriteFile(f.host("/a/file"), []byte("x"), 0o644)
	resp, body = f.postJSON("/fs/mkdir", api.MkdirRequest{Path: "/a/file", Parents: true})
	wantErr(t, resp, body, 409, api.CodeFileExists, "/a/file")
	resp, body = f.postJSON("/fs/mkdir", api.MkdirRequest{Path: "/a/file/sub", Parents: true})
	wantErr(t, resp, body, 400, api.CodeNotADirectory, "/a/file/sub")

	// stat and exists
	resp, body = f.do("GET", "/fs/stat?path=/a/file", nil)
	if info := decode[api.FileInfo](t, body); resp.StatusCode != 200 || info.Name != "file" || info.Size != 1 {
		t.Errorf("stat: %d %+v", resp.StatusCode, info)
	}
	for p, want := range map[string]api.FileExists{
		"/a/file":     {Path: "/a/file", Exists: true, Type: "file"},
		"/a":          {Path: "/a", Exists: true, Type: "directory"},
		"/a/nope":     {Path: "/a/nope"},
		"/a/file/sub": {Path: "/a/file/sub"},
	} {
		resp, body := f.do("GET", "/fs/exists?path="+p, nil)
		if got := decode[api.FileExists](t, body); resp.StatusCode != 200 || got != want {
			t.Errorf("exists %s: %d %+v", p, resp.StatusCode, got)
		}
	}

	// move
	resp, body = f.postJSON("/fs/move", api.MoveRequest{From: "/a/file", To: "/x/y/moved"})
	if resp.StatusCode != 200 || decode[api.FileInfo](t, body).Path != "/x/y/moved" {
		t.Fatalf("move: %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(f.host("/a/file")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("source still there after move")
	}
	os.WriteFile(f.host("/a/other"), []byte("o"), 0o644)
	resp, body = f.postJSON("/fs/move", api.MoveRequest{From: "/a/other", To: "/x/y/moved", NoOverwrite: true})
	wantErr(t, resp, body, 409, api.CodeFileExists, "/x/y/moved")
	resp, body = f.postJSON("/fs/move", api.MoveRequest{From: "/a/nope", To: "/b"})
	wantErr(t, resp, body, 404, api.CodeFileNotFound, "/a/nope")
	resp, body = f.postJSON("/fs/move", api.MoveRequest{From: "/a/other", To: "/q/r/s"})
	wantErr(t, resp, body, 404, api.CodeFileNotFound, "/q/r")
	resp, _ = f.postJSON("/fs/move", api.MoveRequest{From: "/a/other", To: "/q/r/s", Parents: true})
	if resp.StatusCode != 200 {
		t.Errorf("move with parents: %d", resp.StatusCode)
	}
	resp, body = f.postJSON("/fs/move", api.MoveRequest{From: "/x", To: "/x/y/inside"})
	wantErr(t, resp, body, 400, api.CodeInvalidPath, "/x")
	resp, body = f.postJSON("/fs/move", api.MoveRequest{From: "/q/r/s", To: "/x"})
	wantErr(t, resp, body, 400, api.CodeIsADirectory, "/x")
	resp, body = f.postJSON("/fs/move", api.MoveRequest{From: "/a", To: "/x"})
	wantErr(t, resp, body, 409, api.CodeFileExists, "/x")
	resp, body = f.postJSON("/fs/move", api.MoveRequest{From: "/a", To: "/q/r/s"})
	wantErr(t, resp, body, 400, api.CodeNotADirectory, "/q/r/s")
	resp, _ = f.postJSON("/fs/move", api.MoveRequest{From: "/x", To: "/renamed"})
	if resp.StatusCode != 200 {
		t.Errorf("rename directory: %d", resp.StatusCode)
	}
	if _, err := os.Stat(f.host("/renamed/y/z")); err != nil {
		t.Errorf("renamed tree: %v", err)
	}

	// delete
	resp, _ = f.do("DELETE", "/files/renamed/y/moved", nil)
	if resp.StatusCode != 204 {
		t.Errorf("delete file: %d", resp.StatusCode)
	}
	os.Symlink("/renamed", f.host("/link"))
	resp, _ = f.do("DELETE", "/files/link", nil)
	if _, err := os.Stat(f.host("/renamed")); resp.StatusCode != 204 || err != nil {
		t.Errorf("delete symlink: %d, target: %v", resp.StatusCode, err)
	}
	resp, _ = f.do("DELETE", "/files/renamed?recursive=true", nil)
	if _, err := os.Stat(f.host("/renamed")); resp.StatusCode != 204 || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("delete -r: %d %v", resp.StatusCode, err)
	}
}

func TestFilesMoveAcrossFileSystems(t *testing.T) {
	f := newFSFixture(t)
	f.mountTmpfs("/other", "size=4m", false)
	os.MkdirAll(f.host("/src/tree/sub"), 0o750)
	os.WriteFile(f.host("/src/tree/sub/f"), []byte("file in tree"), 0o640)
	os.Symlink("sub/f", f.host("/src/tree/l"))
	os.WriteFile(f.host("/src/one"), []byte("one"), 0o600)

	for _, tc := range []struct{ from, to string }{{"/src/one", "/other/one"}, {"/src/tree", "/other/tree"}} {
		resp, body := f.postJSON("/fs/move", api.MoveRequest{From: tc.from, To: tc.to})
		if resp.StatusCode != 200 {
			t.Fatalf("move %s: %d %s", tc.from, resp.StatusCode, body)
		}
		if _, err := os.Lstat(f.host(tc.from)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists", tc.from)
		}
	}
	if b, _ := os.ReadFile(f.host("/other/tree/l")); string(b) != "file in tree" {
		t.Errorf("moved tree: %q", b)
	}
	if fi, _ := os.Stat(f.host("/other/tree/sub")); fi.Mode().Perm() != 0o750 {
		t.Errorf("directory mode %v", fi.Mode())
	}
	if fi, _ := os.Stat(f.host("/other/one")); fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v", fi.Mode())
	}
	os.WriteFile(f.host("/src/two"), []byte("two"), 0o600)
	resp, body := f.postJSON("/fs/move", api.MoveRequest{From: "/src/two", To: "/other/one", NoOverwrite: true})
	wantErr(t, resp, body, 409, api.CodeFileExists, "/other/one")
	noTemps(t, f.root)
}

func TestFilesList(t *testing.T) {
	f := newFSFixture(t)
	os.MkdirAll(f.host("/w/src/.cache"), 0o755)
	os.MkdirAll(f.host("/w/.git/objects"), 0o755)
	os.WriteFile(f.host("/w/src/main.go"), []byte("package main"), 0o644)
	os.WriteFile(f.host("/w/src/.cache/c"), nil, 0o644)
	os.WriteFile(f.host("/w/.env"), []byte("A=1"), 0o600)
	os.WriteFile(f.host("/w/README"), []byte("hi"), 0o755)
	os.Chmod(f.host("/w/README"), 0o755|fs.ModeSetuid)
	os.Symlink("src/main.go", f.host("/w/link"))
	syscall.Mkfifo(f.host("/w/pipe"), 0o644)
	mtime := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	os.Chtimes(f.host("/w/README"), mtime, mtime)

	list := func(q string) []string {
		t.Helper()
		resp, body := f.do("GET", "/fs/list?path=/w"+q, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("list %s: %d %s", q, resp.StatusCode, body)
		}
		l := decode[api.FileList](t, body)
		if l.Path != "/w" {
			t.Errorf("path %q", l.Path)
		}
		var out []string
		for _, e := range l.Entries {
			out = append(out, e.Path+":"+e.Type)
			switch e.Path {
			case "/w/README":
				if e.Mode != "4755" || e.Permissions != "-rwsr-xr-x" || e.Size != 2 || !e.ModifiedAt.Equal(mtime) || e.Name != "README" {
					t.Errorf("README entry %+v", e)
				}
			case "/w/link":
				if e.SymlinkTarget != "src/main.go" {
					t.Errorf("link entry %+v", e)
				}
			case "/w/src":
				if e.Permissions != "drwxr-xr-x" {
					t.Errorf("src entry %+v", e)
				}
			}
		}
		return out
	}
	tests := []struct {
		q    string
		want []string
	}{
		{"", []string{"/w/README:file", "/w/link:symlink", "/w/pipe:other", "/w/src:directory"}},
		{"&includeHidden=true", []string{"/w/.env:file", "/w/.git:directory", "/w/README:file", "/w/link:symlink", "/w/pipe:other", "/w/src:directory"}},
		{"&recursive=true", []string{"/w/README:file", "/w/link:symlink", "/w/pipe:other", "/w/src:directory", "/w/src/main.go:file"}},
		{"&recursive=true&includeHidden=true", []string{"/w/.env:file", "/w/.git:directory", "/w/.git/objects:directory", "/w/README:file",
			"/w/link:symlink", "/w/pipe:other", "/w/src:directory", "/w/src/.cache:directory", "/w/src/.cache/c:file", "/w/src/main.go:file"}},
	}
	for _, tc := range tests {
		if got := list(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("list %q:\n got %q\nwant %q", tc.q, got, tc.want)
		}
	}
	os.MkdirAll(f.host("/emptydir"), 0o755)
	resp, body := f.do("GET", "/fs/list?path=/emptydir", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"entries":[]`) {
		t.Errorf("empty listing: %s", body)
	}
}
