package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

// blockStream is a deterministic byte stream of n bytes, fast to make:
// 1 MiB blocks of pseudo-random bytes, each stamped with its index.
// Everything read is summed into sum.
type blockStream struct {
	n, off int64
	block  []byte
	sum    hash.Hash32
}

func newBlockStream(n int64) *blockStream {
	b := make([]byte, 1<<20)
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i < len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return &blockStream{n: n, block: b, sum: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
}

func (s *blockStream) Read(p []byte) (int, error) {
	if s.off >= s.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.n-s.off)]
	n := 0
	for n < len(p) {
		in := s.off % int64(len(s.block))
		if in == 0 {
			binary.LittleEndian.PutUint64(s.block, uint64(s.off>>20))
		}
		c := copy(p[n:], s.block[in:])
		n += c
		s.off += int64(c)
	}
	s.sum.Write(p)
	return n, nil
}

func newCRC() hash.Hash32 { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }

// procMem reads VmRSS and VmHWM, in bytes, of host pid.
func procMem(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// agentHostPid finds the host pid of sandbox id's agent: the process that
// is pid 1 in the sandbox's pid namespace.
func agentHostPid(t *testing.T, d *Daemon, id string) int {
	t.Helper()
	ns := strings.TrimSpace(mustExec(t, d, id, "readlink /proc/1/ns/pid").Stdout)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); l != ns {
			continue
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(st), "\n") {
			if f := strings.Fields(strings.TrimPrefix(line, "NSpid:")); strings.HasPrefix(line, "NSpid:") && len(f) > 1 && f[len(f)-1] == "1" {
				return pid
			}
		}
	}
	t.Fatalf("no host process is pid 1 of %s", ns)
	return 0
}

func TestFilesLargeFileBoundedMemory(t *testing.T) {
	d := StartDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sb := d.Client.Sandbox("big")
	mustExec(t, d, "big", "true")
	agentPid := agentHostPid(t, d, "big")
	daemonPid := d.cmd.Process.Pid

	const size = 1 << 30
	up := newBlockStream(size)
	t0 := time.Now()
	info, err := sb.WriteFile(ctx, "/workspace/big.bin", up, client.WithSize(size))
	if err != nil {
		t.Fatal(err)
	}
	upTime := time.Since(t0)
	if info.Size != size {
		t.Fatalf("wrote %d bytes", info.Size)
	}
	t0 = time.Now()
	down := newCRC()
	n, err := sb.CopyFile(ctx, "/workspace/big.bin", down)
	if err != nil || n != size {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	downTime := time.Since(t0)
	if down.Sum32() != up.sum.Sum32() {
		t.Fatal("1 GiB came back different")
	}
	t.Logf("1 GiB up in %v (%.0f MiB/s), down in %v (%.0f MiB/s)", upTime, 1024/upTime.Seconds(), downTime, 1024/downTime.Seconds())

	// Neither hop may hold the file: peak resident memory stays far below
	// its size.
	for _, p := range []struct {
		name  string
		pid   int
		limit int64
	}{{"sbx-agent", agentPid, 64 << 20}, {"sbxd", daemonPid, 128 << 20}} {
		rss, hwm := procMem(t, p.pid)
		t.Logf("%s (pid %d): VmRSS %d MiB, VmHWM %d MiB", p.name, p.pid, rss>>20, hwm>>20)
		if hwm > p.limit {
			t.Errorf("%s peak RSS %d MiB after moving 1 GiB; want < %d MiB", p.name, hwm>>20, p.limit>>20)
		}
	}
	res := mustExec(t, d, "big", "stat -c %s /workspace/big.bin && rm /workspace/big.bin")
	if strings.TrimSpace(res.Stdout) != strconv.Itoa(size) {
		t.Errorf("size seen in the sandbox: %q", res.Stdout)
	}
}

func TestFilesOperations(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("files")

	all := make([]byte, 256*16)
	for i := range all {
		all[i] = byte(i)
	}
	info, err := sb.WriteFile(ctx, "/workspace/bin/all.dat", bytes.NewReader(all), client.WithParents())
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(all)) || info.Type != api.FileTypeFile {
		t.Errorf("info %+v", info)
	}
	got, err := sb.ReadFile(ctx, "/workspace/bin/all.dat")
	if err != nil || !bytes.Equal(got, all) {
		t.Fatalf("binary round trip: %v", err)
	}
	// The sandbox sees the same bytes, owned by its user.
	res := mustExec(t, d, "files", "sha256sum < /workspace/bin/all.dat | cut -c1-16; stat -c '%U %a' /workspace/bin/all.dat")
	if want := fmt.Sprintf("%x\nroot 644\n", sha256Prefix(all)); res.Stdout != want {
		t.Errorf("in the sandbox: %q, want %q", res.Stdout, want)
	}
	// And the API sees what commands write, including /proc's sizeless
	// files.
	mustExec(t, d, "files", "printf 'héllo\\n' > /workspace/t.txt")
	if fc, err := sb.ReadFileContent(ctx, "/workspace/t.txt", ""); err != nil || fc.Content != "héllo\n" || fc.MimeType != "text/plain" {
		t.Errorf("text content: %+v %v", fc, err)
	}
	if b, err := sb.ReadFile(ctx, "/proc/self/status"); err != nil || !bytes.Contains(b, []byte("VmRSS")) {
		t.Errorf("/proc file: %q %v", b, err)
	}
	if b, err := sb.ReadFile(ctx, "/usr/bin/awk"); err != nil || len(b) == 0 {
		// awk is an absolute symlink chain through /etc/alternatives.
		t.Errorf("reading through absolute symlinks: %v", err)
	}

	if _, err := sb.Mkdir(ctx, "/workspace/a/b", true); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Move(ctx, "/workspace/t.txt", "/workspace/a/b/t.txt"); err != nil {
		t.Fatal(err)
	}
	// /tmp and /workspace may be different file systems; moves work
	// either way.
	if _, err := sb.Move(ctx, "/workspace/a", "/tmp/a"); err != nil {
		t.Fatal(err)
	}
	entries, err := sb.ListFiles(ctx, "/tmp/a", client.ListOptions{Recursive: true})
	var paths []string
	for _, e := range entries {
		paths = append(paths, e.Path+":"+e.Type)
	}
	if err != nil || !slices.Equal(paths, []string{"/tmp/a/b:directory", "/tmp/a/b/t.txt:file"}) {
		t.Errorf("list: %q %v", paths, err)
	}
	if ok, _ := sb.Exists(ctx, "/workspace/a"); ok {
		t.Error("moved directory still at its old path")
	}
	if err := sb.Remove(ctx, "/tmp/a", true); err != nil {
		t.Fatal(err)
	}

	// Every error code, through the daemon, naming the path.
	mustExec(t, d, "files", "mkdir -p /workspace/d && echo x > /workspace/f && mkfifo /workspace/fifo")
	errCases := []struct {
		name string
		call func() error
		code string
		path string
	}{
		{"not found", func() error { _, err := sb.ReadFile(ctx, "/workspace/missing"); return err }, api.CodeFileNotFound, "/workspace/missing"},
		{"is a directory", func() error { _, err := sb.ReadFile(ctx, "/workspace/d"); return err }, api.CodeIsADirectory, "/workspace/d"},
		{"not a directory", func() error { _, err := sb.ListFiles(ctx, "/workspace/f", client.ListOptions{}); return err }, api.CodeNotADirectory, "/workspace/f"},
		{"permission denied", func() error {
			_, err := sb.WriteFile(ctx, "/proc/sys/kernel/panic", strings.NewReader("1"))
			return err
		}, api.CodePermissionDenied, "/proc/sys/kernel"},
		{"read-only /sys", func() error { _, err := sb.WriteFile(ctx, "/sys/x", strings.NewReader("1")); return err }, api.CodePermissionDenied, "/sys"},
		{"file exists", func() error { _, err := sb.Mkdir(ctx, "/workspace/d", false); return err }, api.CodeFileExists, "/workspace/d"},
		{"fifo refused", func() error { _, err := sb.WriteFile(ctx, "/workspace/fifo", strings.NewReader("x")); return err }, api.CodeInvalidPath, "/workspace/fifo"},
		{"device refused", func() error { _, err := sb.WriteFile(ctx, "/dev/null", strings.NewReader("x")); return err }, api.CodeInvalidPath, "/dev/null"},
		{"no space", func() error {
			// /dev is a 64 MiB tmpfs.
			_, err := sb.WriteFile(ctx, "/dev/big", newBlockStream(100<<20))
			return err
		}, api.CodeNoSpace, "/dev/big"},
		{"dir without recursive", func() error { return sb.Remove(ctx, "/workspace/d", false) }, api.CodeIsADirectory, "/workspace/d"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var e *client.Error
			if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Message, tc.path) {
				t.Fatalf("got %v, want %s naming %s", err, tc.code, tc.path)
			}
		})
	}
	if ok, _ := sb.Exists(ctx, "/dev/big"); ok {
		t.Error("a failed write left a file behind")
	}
	if res := mustExec(t, d, "files", "ls -a /dev | grep -c sbx- || true"); strings.TrimSpace(res.Stdout) != "0" {
		t.Errorf("temporary files left in /dev: %s", res.Stdout)
	}

	// Paths the SDK would refuse, sent raw: refused by the daemon.
	for _, raw := range []string{"/files/workspace/%2E%2E/etc/passwd", "/files/", "/fs/stat?path=relative"} {
		req, _ := http.NewRequest("GET", d.URL+"/v1/sandboxes/files"+raw, nil)
		req.Header.Set("Authorization", "Bearer "+d.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), api.CodeInvalidPath) {
			t.Errorf("%s: %d %s", raw, resp.StatusCode, b)
		}
	}
}

func sha256Prefix(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:8]
}

func TestFilesConcurrentWritersOnePath(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("race")
	mustExec(t, d, "race", "true")
	const writers = 6
	contents := make([][]byte, writers)
	for i := range contents {
		contents[i] = bytes.Repeat([]byte{byte('A' + i)}, 4<<20)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*3)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if _, err := sb.WriteFile(ctx, "/workspace/shared", bytes.NewReader(contents[i])); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := sb.ReadFile(ctx, "/workspace/shared")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(contents, func(c []byte) bool { return bytes.Equal(c, got) }) {
		t.Errorf("final content (%d bytes) is not one writer's whole content", len(got))
	}
	if res := mustExec(t, d, "race", "ls -A /workspace"); res.Stdout != "shared\n" {
		t.Errorf("left in /workspace: %q", res.Stdout)
	}
}

func TestFilesTarTreesAndSlips(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("trees")
	mustExec(t, d, "trees", "mkdir -p /workspace/p/src /workspace/p/node_modules/m && echo main > /workspace/p/src/main.py && "+
		"echo dep > /workspace/p/node_modules/m/i.js && ln -s src/main.py /workspace/p/entry && chmod 750 /workspace/p/src")
	rc, err := sb.DownloadTar(ctx, "/workspace/p", "node_modules")
	if err != nil {
		t.Fatal(err)
	}
	res, err := sb.UploadTar(ctx, "/tmp/copy", rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 1 || res.Symlinks != 1 || res.Directories != 1 {
		t.Errorf("result %+v", res)
	}
	out := mustExec(t, d, "trees", "cd /tmp/copy && find . | sort && cat entry && stat -c %a src").Stdout
	if want := ".\n./entry\n./src\n./src/main.py\nmain\n750\n"; out != want {
		t.Errorf("copied tree:\n%s\nwant\n%s", out, want)
	}

	mustExec(t, d, "trees", "echo keep > /etc/keep && ln -s /etc /workspace/etc-link")
	slips := []struct {
		name string
		hdrs []tar.Header
	}{
		{"dot-dot", []tar.Header{{Name: "../../etc/keep", Typeflag: tar.TypeReg, Size: 5}}},
		{"absolute", []tar.Header{{Name: "/etc/keep", Typeflag: tar.TypeReg, Size: 5}}},
		{"symlink out", []tar.Header{{Name: "x", Typeflag: tar.TypeSymlink, Linkname: "/etc"}}},
		{"through symlink", []tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "."},
			{Name: "m", Typeflag: tar.TypeSymlink, Linkname: "l/.."}, {Name: "m/etc/keep", Typeflag: tar.TypeReg, Size: 5}}},
		{"hard link out", []tar.Header{{Name: "h", Typeflag: tar.TypeLink, Linkname: "../etc/keep"}}},
		{"device", []tar.Header{{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}},
		{"existing escaping symlink", []tar.Header{{Name: "etc-link/keep", Typeflag: tar.TypeReg, Size: 5}}},
	}
	for _, s := range slips {
		t.Run(s.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range s.hdrs {
				h.Mode = 0o644
				tw.WriteHeader(&h)
				if h.Size > 0 {
					tw.Write([]byte("pwnd\n"))
				}
			}
			tw.Close()
			_, err := sb.UploadTar(ctx, "/workspace", &buf)
			if client.ErrorCode(err) != api.CodeInvalidPath {
				t.Fatalf("got %v, want INVALID_PATH", err)
			}
			if out := mustExec(t, d, "trees", "cat /etc/keep").Stdout; out != "keep\n" {
				t.Fatalf("/etc/keep is now %q", out)
			}
		})
	}
}

func TestFilesWatchScripted(t *testing.T) {
	d := StartDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb := d.Client.Sandbox("watch")
	mustExec(t, d, "watch", "mkdir -p /workspace/w /workspace/out")

	want := []api.WatchEvent{
		{Type: "create", Path: "/workspace/w/a.txt"},
		{Type: "modify", Path: "/workspace/w/a.txt"},
		{Type: "create", Path: "/workspace/w/sub", IsDirectory: true},
		{Type: "create", Path: "/workspace/w/sub/b.txt"},
		{Type: "attrib", Path: "/workspace/w/a.txt"},
		{Type: "move", Path: "/workspace/w/sub/c.txt", From: "/workspace/w/a.txt", To: "/workspace/w/sub/c.txt"},
		{Type: "delete", Path: "/workspace/w/sub/b.txt"},
		{Type: "delete", Path: "/workspace/w/sub/c.txt"},
		{Type: "delete", Path: "/workspace/w", IsDirectory: true},
	}
	// One command, at full speed, started right after "watching".
	script := "cd /workspace/w && echo hi > a.txt && mkdir sub && echo b > sub/b.txt && touch x.swp && sleep 0.2 && " +
		"chmod 600 a.txt && mv a.txt sub/c.txt && rm sub/b.txt && sleep 0.2 && mv sub/c.txt /workspace/out/ && sleep 0.2 && rm -r /workspace/w"
	var seen []api.WatchEvent
	scriptDone := make(chan struct{})
	for ev, err := range sb.Watch(ctx, "/workspace/w", client.WatchOptions{Recursive: true, Exclude: []string{"*.swp"}}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == api.WatchWatching {
			go func() {
				defer close(scriptDone)
				res, err := sb.Exec(ctx, script)
				if err != nil || res.ExitCode != 0 {
					t.Errorf("script: %+v %v", res, err)
				}
			}()
			continue
		}
		seen = append(seen, ev)
		if strings.HasSuffix(ev.Path, ".swp") {
			t.Errorf("excluded path reported: %+v", ev)
		}
	}
	<-scriptDone
	// The stream ended with the directory; the events came in order.
	i := 0
	for _, ev := range seen {
		if i < len(want) && ev == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("missing %+v (and later) in order; saw %+v", want[i], seen)
	}
}

func TestFilesLongTransferHoldsSandbox(t *testing.T) {
	d := StartDaemon(t, "--reap-interval", "100ms")
	ctx := ctxT(t)
	sb := d.Client.Sandbox("slow")
	if _, err := sb.Create(ctx, &api.CreateSandboxRequest{SleepAfter: api.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	// An upload trickling for 3s, three times the idle limit.
	pr, pw := io.Pipe()
	go func() {
		for range 30 {
			pw.Write(bytes.Repeat([]byte("z"), 1000))
			time.Sleep(100 * time.Millisecond)
		}
		pw.Close()
	}()
	if _, err := sb.WriteFile(ctx, "/workspace/slow", pr); err != nil {
		t.Fatal(err)
	}
	if b, err := sb.ReadFile(ctx, "/workspace/slow"); err != nil || len(b) != 30000 {
		t.Fatalf("after a slow upload: %d bytes, %v", len(b), err)
	}
	// An open watch is activity too.
	wctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	for _, err := range sb.Watch(wctx, "/workspace", client.WatchOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if got, err := sb.Get(ctx); err != nil || got.Status != api.StatusRunning {
		t.Errorf("after a long watch: %+v %v", got, err)
	}
	if b, err := sb.ReadFile(ctx, "/workspace/slow"); err != nil || len(b) != 30000 {
		t.Errorf("the sandbox was restarted: %d bytes, %v", len(b), err)
	}
}

func TestFilesCLI(t *testing.T) {
	d := StartDaemon(t)
	local := t.TempDir()
	os.MkdirAll(filepath.Join(local, "proj/src"), 0o755)
	os.WriteFile(filepath.Join(local, "proj/src/app.py"), []byte("print('hi')\n"), 0o755)
	os.WriteFile(filepath.Join(local, "proj/debug.log"), []byte("noise"), 0o644)
	os.WriteFile(filepath.Join(local, "one.txt"), []byte("one\n"), 0o644)

	run := func(stdin io.Reader, args ...string) string {
		t.Helper()
		out, errOut, code := d.CLI(stdin, args...)
		if code != 0 {
			t.Fatalf("sbx %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	run(nil, "cp", filepath.Join(local, "one.txt"), "cli:/workspace/")
	run(nil, "cp", "--exclude", "*.log", filepath.Join(local, "proj"), "cli:/workspace/proj")
	if out := run(nil, "cat", "cli:one.txt", "cli:/workspace/proj/src/app.py"); out != "one\nprint('hi')\n" {
		t.Errorf("cat: %q", out)
	}
	if out := run(nil, "ls", "-R", "cli:/workspace"); out != "one.txt\nproj/\nproj/src/\nproj/src/app.py\n" {
		t.Errorf("ls -R: %q", out)
	}
	if out := run(nil, "ls", "-l", "cli:/workspace/proj/src"); !strings.Contains(out, "-rwxr-xr-x") || !strings.Contains(out, "app.py") {
		t.Errorf("ls -l: %q", out)
	}
	run(nil, "mkdir", "-p", "cli:/workspace/x/y")
	run(nil, "mv", "cli:/workspace/one.txt", "cli:/workspace/x/y")
	run(strings.NewReader("from stdin"), "cp", "-", "cli:/workspace/x/stdin.txt")
	run(nil, "cp", "cli:/workspace/x", filepath.Join(local, "back"))
	if b, _ := os.ReadFile(filepath.Join(local, "back/y/one.txt")); string(b) != "one\n" {
		t.Errorf("downloaded tree: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(local, "back/stdin.txt")); string(b) != "from stdin" {
		t.Errorf("stdin upload: %q", b)
	}
	run(nil, "cp", "cli:/workspace/proj/src/app.py", local)
	if fi, err := os.Stat(filepath.Join(local, "app.py")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("downloaded file: %v %v", fi, err)
	}
	if _, errOut, code := d.CLI(nil, "rm", "cli:/workspace/x"); code == 0 || !strings.Contains(errOut, api.CodeIsADirectory) {
		t.Errorf("rm of a directory without -r: %d %s", code, errOut)
	}
	run(nil, "rm", "-r", "cli:/workspace/x")
	if _, errOut, code := d.CLI(nil, "cat", "cli:/workspace/x/stdin.txt"); code == 0 || !strings.Contains(errOut, api.CodeFileNotFound) {
		t.Errorf("cat after rm: %d %s", code, errOut)
	}
	// The sandbox commands keep working beside the file forms.
	if out := run(nil, "ls"); !strings.Contains(out, "cli") {
		t.Errorf("ls of sandboxes: %q", out)
	}
	if out := run(nil, "ls", "--json", "cli:/workspace"); !strings.Contains(out, `"path": "/workspace/proj"`) {
		t.Errorf("ls --json: %q", out)
	}
}
