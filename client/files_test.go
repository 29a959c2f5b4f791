package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/agent"
)

// agentSandbox serves the real agent, rooted in a temporary directory,
// where the daemon would forward sandbox "box".
func agentSandbox(t *testing.T) (*Sandbox, string) {
	t.Helper()
	root := t.TempDir()
	h := http.StripPrefix("/v1/sandboxes/box", agent.New(agent.Config{FileRoot: root, DefaultCwd: root}))
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	c, err := New(WithURL(ts.URL))
	if err != nil {
		t.Fatal(err)
	}
	return c.Sandbox("box"), root
}

func TestFilesSDK(t *testing.T) {
	sb, root := agentSandbox(t)
	ctx := context.Background()
	data := make([]byte, 3*256)
	for i := range data {
		data[i] = byte(i)
	}
	name := "/w/odd name #1?.bin"

	// A pipe has no length: the body goes chunked.
	pr, pw := io.Pipe()
	go func() { pw.Write(data); pw.Close() }()
	info, err := sb.WriteFile(ctx, name, pr, WithParents(), WithMode(0o600))
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != name || info.Size != int64(len(data)) || info.Mode != "0600" {
		t.Errorf("info %+v", info)
	}
	got, err := sb.ReadFile(ctx, name)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, data))
	}
	fr, err := sb.OpenFile(ctx, name, WithRange(256, 3))
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(fr)
	fr.Close()
	if !bytes.Equal(part, []byte{0, 1, 2}) || fr.Size != 3 || fr.ModTime.IsZero() {
		t.Errorf("range: %v size %d mtime %v", part, fr.Size, fr.ModTime)
	}

	// An *os.File goes with its length.
	local := filepath.Join(t.TempDir(), "f")
	os.WriteFile(local, []byte("from a file"), 0o644)
	f, _ := os.Open(local)
	defer f.Close()
	if _, err := sb.WriteFile(ctx, "/w/copy", f, WithNoOverwrite()); err != nil {
		t.Fatal(err)
	}
	_, err = sb.WriteFile(ctx, "/w/copy", bytes.NewReader(nil), WithNoOverwrite())
	if ErrorCode(err) != api.CodeFileExists || !errors.Is(err, ErrConflict) {
		t.Errorf("noOverwrite: %v", err)
	}

	if ok, err := sb.Exists(ctx, "/w/copy"); !ok || err != nil {
		t.Errorf("exists: %v %v", ok, err)
	}
	if ok, err := sb.Exists(ctx, "/w/nope"); ok || err != nil {
		t.Errorf("exists of a missing file: %v %v", ok, err)
	}
	if _, err := sb.Mkdir(ctx, "/w/d/e", true); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Move(ctx, "/w/copy", "/w/d/e/moved"); err != nil {
		t.Fatal(err)
	}
	if fi, err := sb.Stat(ctx, "/w/d/e/moved"); err != nil || fi.Size != 11 {
		t.Errorf("stat: %+v %v", fi, err)
	}
	entries, err := sb.ListFiles(ctx, "/w", ListOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range entries {
		paths = append(paths, e.Path)
	}
	if want := []string{"/w/d", "/w/d/e", "/w/d/e/moved", name}; !slices.Equal(paths, want) {
		t.Errorf("list %q, want %q", paths, want)
	}

	fc, err := sb.ReadFileContent(ctx, name, "")
	if err != nil || !fc.IsBinary || fc.Encoding != api.EncodingBase64 {
		t.Errorf("read content: %+v %v", fc, err)
	}
	if _, err := sb.WriteFileContent(ctx, api.WriteFileRequest{Path: "/w/t.txt", Content: "héllo"}); err != nil {
		t.Fatal(err)
	}
	if fc, err := sb.ReadFileContent(ctx, "/w/t.txt", ""); err != nil || fc.Content != "héllo" || fc.IsBinary {
		t.Errorf("text content: %+v %v", fc, err)
	}

	// A tree out and back in elsewhere.
	rc, err := sb.DownloadTar(ctx, "/w", "*.txt")
	if err != nil {
		t.Fatal(err)
	}
	res, err := sb.UploadTar(ctx, "/copy", rc)
	rc.Close()
	if err != nil || res.Files != 2 || res.Directories != 2 {
		t.Fatalf("tar round trip: %+v %v", res, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "copy", "d/e/moved")); string(b) != "from a file" {
		t.Errorf("copied tree: %q", b)
	}

	if err := sb.Remove(ctx, "/copy", false); ErrorCode(err) != api.CodeIsADirectory {
		t.Errorf("remove directory without recursive: %v", err)
	}
	if err := sb.Remove(ctx, "/copy", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "copy")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("directory still there")
	}
	if _, err := sb.ReadFile(ctx, "/w/nope"); ErrorCode(err) != api.CodeFileNotFound || !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	// Bad paths are refused before anything is sent.
	for _, p := range []string{"rel", "/a/../b", "/a/", ""} {
		if _, err := sb.Stat(ctx, p); ErrorCode(err) != api.CodeInvalidPath {
			t.Errorf("stat %q: %v", p, err)
		}
	}
}

func TestWatchSDK(t *testing.T) {
	sb, root := agentSandbox(t)
	os.MkdirAll(filepath.Join(root, "w"), 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []api.WatchEvent
	for ev, err := range sb.Watch(ctx, "/w", WatchOptions{Recursive: true, Exclude: []string{"*.tmp"}}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
		if ev.Type == api.WatchWatching {
			os.WriteFile(filepath.Join(root, "w/skip.tmp"), nil, 0o644)
			os.Mkdir(filepath.Join(root, "w/d"), 0o755)
			os.RemoveAll(filepath.Join(root, "w"))
		}
	}
	// The stream ends by itself once the watched directory is gone.
	want := []api.WatchEvent{
		{Type: "watching", Path: "/w", IsDirectory: true},
		{Type: "create", Path: "/w/d", IsDirectory: true},
		{Type: "delete", Path: "/w/d", IsDirectory: true},
		{Type: "delete", Path: "/w", IsDirectory: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events\n got %+v\nwant %+v", got, want)
	}
	for _, err := range sb.Watch(ctx, "/nope", WatchOptions{}) {
		if ErrorCode(err) != api.CodeFileNotFound {
			t.Errorf("watch of a missing path: %v", err)
		}
	}
}
