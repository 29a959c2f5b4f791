package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/agent"
	"github.com/sbx-dev/sbx/internal/backend"
	"github.com/sbx-dev/sbx/internal/sandbox"
	"github.com/sbx-dev/sbx/internal/store"
)

// TestFilesValidatedBeforeForwarding sends bad requests to a daemon
// without a backend: each must be refused before a sandbox is looked for.
func TestFilesValidatedBeforeForwarding(t *testing.T) {
	ts := newTestServer(t, "")
	tests := []struct {
		name, method, path, body string
		code                     string
	}{
		{"empty path", "GET", "/v1/sandboxes/a/files/", "", api.CodeInvalidPath},
		{"escaped dot-dot", "GET", "/v1/sandboxes/a/files/w/%2E%2E/etc/passwd", "", api.CodeInvalidPath},
		{"escaped slash", "PUT", "/v1/sandboxes/a/files/w%2F%2Fx", "data", api.CodeInvalidPath},
		{"trailing slash", "DELETE", "/v1/sandboxes/a/files/w/", "", api.CodeInvalidPath},
		{"NUL", "GET", "/v1/sandboxes/a/files/w/a%00b", "", api.CodeInvalidPath},
		// Unclean URL paths are refused before routing (never redirected,
		// see TestUncleanFileURLPaths); elsewhere the refusal is generic.
		{"unclean, bad id", "GET", "/v1/sandboxes/A/files/w/../x", "", api.CodeInvalidSandboxID},
		{"unclean elsewhere", "POST", "/v1/sandboxes/a/fs/../exec", "", api.CodeInvalidRequest},
		{"unclean before files", "GET", "/v1/sandboxes/a/../b/files/x", "", api.CodeInvalidRequest},
		{"bad id", "GET", "/v1/sandboxes/A/files/w/x", "", api.CodeInvalidSandboxID},
		{"bad mode", "PUT", "/v1/sandboxes/a/files/w/x?mode=rwx", "data", api.CodeInvalidRequest},
		{"bad bool", "DELETE", "/v1/sandboxes/a/files/w/x?recursive=yes-please", "", api.CodeInvalidRequest},
		{"query path missing", "GET", "/v1/sandboxes/a/fs/stat", "", api.CodeInvalidPath},
		{"query path relative", "GET", "/v1/sandboxes/a/fs/list?path=w", "", api.CodeInvalidPath},
		{"query path unclean", "GET", "/v1/sandboxes/a/fs/exists?path=/w/../x", "", api.CodeInvalidPath},
		{"bad encoding", "GET", "/v1/sandboxes/a/fs/read?path=/w&encoding=utf-16", "", api.CodeInvalidRequest},
		{"bad glob", "GET", "/v1/sandboxes/a/fs/tar?path=/w&exclude=%5B", "", api.CodeInvalidRequest},
		{"bad watch glob", "GET", "/v1/sandboxes/a/watch?path=/w&include=%5B", "", api.CodeInvalidRequest},
		{"tar upload relative", "PUT", "/v1/sandboxes/a/fs/tar?path=w", "x", api.CodeInvalidPath},
		{"write relative", "POST", "/v1/sandboxes/a/fs/write", `{"path":"w","content":"x"}`, api.CodeInvalidPath},
		{"write bad encoding", "POST", "/v1/sandboxes/a/fs/write", `{"path":"/w","content":"x","encoding":"hex"}`, api.CodeInvalidRequest},
		{"write unknown field", "POST", "/v1/sandboxes/a/fs/write", `{"path":"/w","data":"x"}`, api.CodeInvalidRequest},
		{"mkdir bad mode", "POST", "/v1/sandboxes/a/fs/mkdir", `{"path":"/w","mode":"999"}`, api.CodeInvalidRequest},
		{"move unclean to", "POST", "/v1/sandboxes/a/fs/move", `{"from":"/a","to":"/b/"}`, api.CodeInvalidPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Code != tc.code || resp.StatusCode != 400 {
				t.Fatalf("got %d %+v (%v), want 400 %s", resp.StatusCode, e, err, tc.code)
			}
		})
	}
}

// TestUncleanFileURLPaths sends file paths with '.', '..' or '//' in the
// URL (as curl --path-as-is does): each is a bad file path, answered with
// INVALID_PATH naming it, before any sandbox is looked for.
func TestUncleanFileURLPaths(t *testing.T) {
	ts := newTestServer(t, "")
	tests := []struct {
		method, path, named string
	}{
		{"GET", "/v1/sandboxes/a/files/workspace/../etc/passwd", "/workspace/../etc/passwd"},
		{"DELETE", "/v1/sandboxes/a/files/../../b", "/../../b"},
		{"PUT", "/v1/sandboxes/a/files/workspace/./x", "/workspace/./x"},
		{"GET", "/v1/sandboxes/a/files//etc/passwd", "//etc/passwd"},
		{"DELETE", "/v1/sandboxes/a/files/w//x", "/w//x"},
		{"GET", "/v1/sandboxes/a/files/w/../a%20b", "/w/../a b"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader("data"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != 400 || e.Code != api.CodeInvalidPath {
				t.Fatalf("got %d %+v (%v), want 400 %s", resp.StatusCode, e, err, api.CodeInvalidPath)
			}
			if !strings.Contains(e.Message, strconv.Quote(tc.named)) {
				t.Errorf("message %q does not name the path %q", e.Message, tc.named)
			}
		})
	}
}

// agentBackend is a backend whose "sandboxes" are the real agent served
// in-process, with its file root in a temporary directory.
type agentBackend struct {
	dir, root string
	mu        sync.Mutex
	srvs      map[string]*http.Server
}

func (b *agentBackend) Capabilities() backend.Capabilities {
	return backend.Capabilities{Name: "in-process"}
}
func (b *agentBackend) Start(ctx context.Context, spec backend.Spec) (*backend.Instance, error) {
	sock := filepath.Join(b.dir, spec.ID+".sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: agent.New(agent.Config{FileRoot: b.root, DefaultCwd: b.root})}
	go srv.Serve(ln)
	b.mu.Lock()
	b.srvs[spec.ID] = srv
	b.mu.Unlock()
	return &backend.Instance{ID: spec.ID, AgentSocket: sock, Pid: os.Getpid()}, nil
}
func (b *agentBackend) Adopt(ctx context.Context, id string) (*backend.Instance, error) {
	return nil, backend.ErrNotExist
}
func (b *agentBackend) Destroy(ctx context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.srvs[id]; s != nil {
		s.Close()
		delete(b.srvs, id)
	}
	return nil
}
func (b *agentBackend) Status(ctx context.Context, id string) (backend.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srvs[id] == nil {
		return backend.StateAbsent, nil
	}
	return backend.StateRunning, nil
}
func (b *agentBackend) List(ctx context.Context) ([]string, error) { return nil, nil }

type oneImage struct{}

func (oneImage) Path(string) (string, error) { return "/", nil }

// newAgentServer is a daemon whose sandboxes share one agent file root.
func newAgentServer(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sockDir, err := os.MkdirTemp("", "sbxf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	be := &agentBackend{dir: sockDir, root: t.TempDir(), srvs: map[string]*http.Server{}}
	m := sandbox.New(sandbox.Config{Backend: be, Store: st, Images: oneImage{}, DefaultImage: "default"})
	ts := httptest.NewServer(New(Config{Manager: m, Version: "test"}))
	t.Cleanup(func() {
		ts.Close()
		be.mu.Lock()
		for _, s := range be.srvs {
			s.Close()
		}
		be.mu.Unlock()
		m.Close()
	})
	return ts, be.root
}

// pattern is a deterministic, incompressible-enough byte stream.
type pattern struct {
	n, off int64
	h      hash.Hash
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		x := uint64(p.off + int64(i))
		b[i] = byte(x ^ x>>8 ^ x>>16 ^ x>>24)
	}
	p.off += int64(len(b))
	p.h.Write(b)
	return len(b), nil
}

// peakRSS reads VmHWM of this process in bytes, after resetting it when
// reset is set.
func peakRSS(t *testing.T, reset bool) int64 {
	t.Helper()
	if reset {
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			t.Skipf("cannot reset peak RSS: %v", err)
		}
	}
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func TestFilesStreamThroughDaemon(t *testing.T) {
	ts, root := newAgentServer(t)
	const size = 256 << 20
	base := ts.URL + "/v1/sandboxes/box/files"

	before := peakRSS(t, true)
	up := &pattern{n: size, h: sha256.New()}
	req, _ := http.NewRequest("PUT", base+"/big/file.bin?parents=true", up)
	req.ContentLength = -1 // chunked: the daemon cannot know the size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(base + "/big/file.bin")
	if err != nil {
		t.Fatal(err)
	}
	down := sha256.New()
	n, err := io.Copy(down, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || resp.Header.Get("Content-Length") != fmt.Sprint(size) {
		t.Fatalf("download: %d bytes, %v, Content-Length %q", n, err, resp.Header.Get("Content-Length"))
	}
	if !bytes.Equal(up.h.Sum(nil), down.Sum(nil)) {
		t.Fatal("content differs after a round trip")
	}
	// Daemon, agent and client share this process: none of them may have
	// held the file.
	if grew := peakRSS(t, false) - before; grew > 64<<20 {
		t.Errorf("peak RSS grew by %d MiB moving %d MiB", grew>>20, size>>20)
	}

	// Range passes through.
	req, _ = http.NewRequest("GET", base+"/big/file.bin", nil)
	req.Header.Set("Range", "bytes=1000-1009")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := make([]byte, 10)
	(&pattern{n: 1010, h: sha256.New()}).Read(make([]byte, 1000))
	p := &pattern{n: 1010, off: 1000, h: sha256.New()}
	p.Read(want)
	if resp.StatusCode != 206 || !bytes.Equal(part, want) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-1009/%d", size) {
		t.Errorf("range: %d %v %q", resp.StatusCode, part, resp.Header.Get("Content-Range"))
	}
	os.Remove(filepath.Join(root, "big/file.bin"))
}

// TestFilesInterruptedUploadThroughDaemon cuts an upload short: the agent
// must see a broken body, not a complete short one, and keep the old file.
func TestFilesInterruptedUploadThroughDaemon(t *testing.T) {
	ts, root := newAgentServer(t)
	target := filepath.Join(root, "f")
	os.WriteFile(target, []byte("old"), 0o644)
	// Start the sandbox first, so the upload is the only thing in flight.
	if resp, err := http.Get(ts.URL + "/v1/sandboxes/box/fs/exists?path=/f"); err == nil {
		resp.Body.Close()
	}
	for _, te := range []string{"Content-Length: 1000000", "Transfer-Encoding: chunked"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "PUT /v1/sandboxes/box/files/f HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n", te)
		if strings.HasPrefix(te, "Transfer") {
			fmt.Fprintf(c, "%x\r\n%s\r\n", 1000, strings.Repeat("n", 1000))
		} else {
			c.Write(bytes.Repeat([]byte("n"), 1000))
		}
		time.Sleep(50 * time.Millisecond)
		c.Close()
		deadline := time.Now().Add(3 * time.Second)
		for {
			b, _ := os.ReadFile(target)
			ents, _ := os.ReadDir(root)
			if string(b) == "old" && len(ents) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after an interrupted upload: %q, %d entries", te, b, len(ents))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestFilesNoSpaceThroughDaemon checks that an agent error found in the
// middle of a large upload reaches the client as itself, not as a broken
// connection.
func TestFilesNoSpaceThroughDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	ts, root := newAgentServer(t)
	small := filepath.Join(root, "small")
	os.Mkdir(small, 0o755)
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(small, "f"), []byte("old"), 0o644)
	for i := range 5 {
		req, _ := http.NewRequest("PUT", ts.URL+"/v1/sandboxes/box/files/small/f", &pattern{n: 64 << 20, h: sha256.New()})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 507 || e.Code != api.CodeNoSpace || !strings.Contains(e.Message, "/small/f") {
			t.Fatalf("attempt %d: %d %+v", i, resp.StatusCode, e)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(small, "f")); string(b) != "old" {
		t.Errorf("old file damaged: %q", b)
	}
}
