package backendtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// DefaultRootfs is the image used when SBX_TEST_ROOTFS is not set.
const DefaultRootfs = "/var/lib/sbx/images/default/rootfs"

// Rootfs returns the root filesystem sandboxes under test start from:
// $SBX_TEST_ROOTFS, else default/rootfs in $SBX_TEST_IMAGES, else
// DefaultRootfs. Without one the test fails when $CI is set and is skipped
// otherwise.
func Rootfs(t testing.TB) string {
	t.Helper()
	p := os.Getenv("SBX_TEST_ROOTFS")
	if p == "" && os.Getenv("SBX_TEST_IMAGES") != "" {
		p = filepath.Join(os.Getenv("SBX_TEST_IMAGES"), "default", "rootfs")
	}
	if p == "" {
		p = DefaultRootfs
	}
	if fi, err := os.Stat(filepath.Join(p, "bin")); err != nil || !fi.IsDir() {
		msg := "no sandbox root filesystem at " + p + "; build an image or set SBX_TEST_ROOTFS to a Debian rootfs"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// RequireRoot skips t unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("backend tests need root")
	}
}

var agentBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// AgentBinary returns the path of a static sbx-agent: $SBX_TEST_AGENT, or
// one built once per test binary from ./cmd/sbx-agent. Call Cleanup (or use
// Main) to remove the build when the tests are done.
func AgentBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SBX_TEST_AGENT"); p != "" {
		return p
	}
	b := &agentBuild
	b.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		if b.dir, b.err = os.MkdirTemp("", "sbx-agent-"); b.err != nil {
			return
		}
		// Sandbox root may be an unprivileged host user that must
		// reach the binary to bind it into the sandbox.
		if b.err = os.Chmod(b.dir, 0o755); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "sbx-agent")
		cmd := exec.Command("go", "build", "-trimpath", "-o", b.path, "./cmd/sbx-agent")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		b.out, b.err = cmd.CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("build sbx-agent: %v\n%s", b.err, b.out)
	}
	return b.path
}

// Cleanup removes what AgentBinary built.
func Cleanup() {
	if agentBuild.dir != "" {
		os.RemoveAll(agentBuild.dir)
	}
}

// Main runs the tests of m and then Cleanup; use it as
// `func TestMain(m *testing.M) { backendtest.Main(m) }`.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// StateDir returns a fresh directory for a backend's host state, removed
// when t ends. Its path is short (unix socket paths are limited to 107
// bytes) and searchable by others (sandbox root may be an unprivileged
// host user).
func StateDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "sb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}
