// Package integration drives the real sbx binaries: it builds sbxd, sbx and
// sbx-agent once per test binary, starts sbxd on a loopback port with a
// throw-away data dir, and talks to it over HTTP, like a user would. The
// end-to-end tests live here and the benchmarks in bench/ reuse it.
package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/client"
)

// TB is the subset of testing.TB the harness needs.
type TB = testing.TB

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// moduleRoot finds the repository root from this source file.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binaries builds sbxd, sbx and sbx-agent once and returns their directory.
func Binaries(t TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sbx-bin-")
		if buildErr != nil {
			return
		}
		root := moduleRoot()
		for _, b := range []struct{ pkg, out string }{
			{"./cmd/sbxd", "sbxd"}, {"./cmd/sbx", "sbx"}, {"./cmd/sbx-agent", "sbx-agent"},
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b.out), b.pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// CleanupBinaries removes the built binaries; call it from TestMain.
func CleanupBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// ImagesDir is where the tests find built images: $SBX_TEST_IMAGES or
// /var/lib/sbx/images (what `sbxd image build` and .ci/run produce).
func ImagesDir() string {
	if d := os.Getenv("SBX_TEST_IMAGES"); d != "" {
		return d
	}
	return "/var/lib/sbx/images"
}

// RequireRoot skips tests that need root and a built image when they are
// missing, except in CI (CI is set), where missing prerequisites fail.
func RequireRoot(t TB) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("needs root (sandboxes use namespaces, cgroups and mounts)")
	}
	if _, err := os.Stat(filepath.Join(ImagesDir(), "default", "rootfs", "bin", "bash")); err != nil {
		fail("default image not built in %s: run `sbxd image build --images-dir %s` (or set SBX_TEST_IMAGES)", ImagesDir(), ImagesDir())
	}
}

// Daemon is a running sbxd.
type Daemon struct {
	t       TB
	Bin     string
	DataDir string
	Addr    string
	URL     string
	Token   string
	args    []string
	cmd     *exec.Cmd
	logs    *logBuffer
	Client  *client.Client
}

// StartDaemon starts sbxd with a fresh data dir and extra flags. It is
// stopped, and every sandbox it made destroyed, when the test ends.
func StartDaemon(t TB, extra ...string) *Daemon {
	t.Helper()
	RequireRoot(t)
	bin := Binaries(t)
	dataDir, err := os.MkdirTemp("", "sbx")
	if err != nil {
		t.Fatal(err)
	}
	// Sandbox root is an unprivileged host uid that must traverse it.
	if err := os.Chmod(dataDir, 0o711); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{t: t, Bin: bin, DataDir: dataDir, args: extra}
	t.Cleanup(func() { d.cleanup() })
	d.Start()
	return d
}

// Start (re)starts the daemon process on a new loopback port, keeping the
// data dir.
func (d *Daemon) Start() {
	d.t.Helper()
	if err := d.start(); err != nil {
		d.t.Fatal(err)
	}
}

func (d *Daemon) start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.Addr = ln.Addr().String()
	ln.Close()
	args := append([]string{
		"--listen", d.Addr, "--data-dir", d.DataDir, "--images-dir", ImagesDir(),
		"--agent", filepath.Join(d.Bin, "sbx-agent"), "--no-image-build", "--log-level", "debug",
	}, d.args...)
	d.cmd = exec.Command(filepath.Join(d.Bin, "sbxd"), args...)
	d.logs = &logBuffer{}
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		return err
	}
	d.URL = "http://" + d.Addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", d.Addr, 100*time.Millisecond); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) || !alive(d.cmd.Process.Pid) {
			d.Kill()
			return fmt.Errorf("sbxd did not start:\n%s", d.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if tok, err := os.ReadFile(filepath.Join(d.DataDir, "token")); err == nil {
		d.Token = strings.TrimSpace(string(tok))
	}
	d.Client, err = client.New(client.WithURL(d.URL), client.WithToken(d.Token))
	return err
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// State Z means it exited and waits to be reaped.
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// Stop stops the daemon process (SIGTERM, then SIGKILL). Sandboxes keep
// running.
func (d *Daemon) Stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
	}
	d.cmd = nil
}

// Kill kills the daemon with SIGKILL, as a crash would.
func (d *Daemon) Kill() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
	d.cmd = nil
}

// Restart stops and starts the daemon on the same data dir.
func (d *Daemon) Restart() {
	d.Stop()
	d.Start()
}

// Logs returns what the daemon logged so far.
func (d *Daemon) Logs() string { return d.logs.String() }

// CLI runs the sbx CLI against this daemon and returns its stdout, stderr
// and exit code.
func (d *Daemon) CLI(stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	d.t.Helper()
	cmd := exec.Command(filepath.Join(d.Bin, "sbx"), args...)
	cmd.Env = append(os.Environ(), "SBX_URL="+d.URL, "SBX_TOKEN="+d.Token)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &so, &se, stdin
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		d.t.Fatalf("running sbx: %v", err)
	}
	return so.String(), se.String(), code
}

// cleanup destroys every sandbox of this daemon, stops it and removes its
// data dir; whatever a failed test left behind goes too.
func (d *Daemon) cleanup() {
	if d.cmd == nil {
		_ = d.start()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if d.Client == nil {
		// Never started; the cleanup command below removes leftovers.
	} else if list, err := d.Client.List(ctx); err == nil {
		for _, sb := range list {
			if err := d.Client.Sandbox(sb.ID).Destroy(ctx); err != nil {
				d.t.Errorf("cleanup: destroying %s: %v", sb.ID, err)
			}
		}
	}
	d.Stop()
	// The cleanup command also removes leftovers with no record.
	out, err := exec.Command(filepath.Join(d.Bin, "sbxd"), "cleanup", "--data-dir", d.DataDir,
		"--agent", filepath.Join(d.Bin, "sbx-agent")).CombinedOutput()
	if err != nil {
		d.t.Errorf("sbxd cleanup: %v\n%s", err, out)
	}
	if d.t.Failed() {
		d.t.Logf("sbxd logs:\n%s", d.Logs())
	}
	if err := os.RemoveAll(d.DataDir); err != nil {
		d.t.Errorf("removing data dir: %v", err)
	}
}

// logBuffer collects daemon output safely across goroutines, keeping the
// last 1 MiB.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 1<<20 {
		b.buf = b.buf[len(b.buf)-1<<20:]
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
