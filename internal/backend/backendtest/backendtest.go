// Package backendtest is the conformance suite of backend.Backend: the
// behaviour and the isolation every backend, and every OCI runtime under
// the oci backend, must deliver. A backend's tests call Run with a Harness.
//
// The suite starts real sandboxes and needs root; it is skipped otherwise.
// Commands run inside a sandbox through its agent's POST /exec, so the
// checks see the sandbox as a user's command does: with its namespaces,
// capabilities, seccomp filter and cgroup.
package backendtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/backend"
)

// Harness describes the backend under test.
type Harness struct {
	// Open returns a Backend that keeps its host state under stateDir.
	// Called again with the same directory it must return a new value
	// over the same state, as a restarted sbxd would. Open registers its
	// own cleanup on t.
	Open func(t testing.TB, stateDir string) backend.Backend
	// OpenNetwork is Open for the network checks: the backend's sandboxes
	// must use nameservers for DNS. Backends with Capabilities.Egress
	// must set it.
	OpenNetwork func(t testing.TB, stateDir string, nameservers []netip.Addr) backend.Backend
	// Rootfs is the image root filesystem; empty means Rootfs(t).
	Rootfs string
}

// opTimeout bounds each backend call and agent request of the suite.
const opTimeout = 60 * time.Second

// Run runs the conformance suite against h.
func Run(t *testing.T, h Harness) {
	RequireRoot(t)
	if h.Rootfs == "" {
		h.Rootfs = Rootfs(t)
	}
	s := &suite{h: h}
	t.Run("Lifecycle", s.testLifecycle)
	t.Run("Isolation", s.testIsolation)
	t.Run("Escape", s.testEscape)
	t.Run("FilesystemIsolation", s.testFilesystemIsolation)
	t.Run("Resources", s.testResources)
	t.Run("DestroyTwice", s.testDestroyTwice)
	t.Run("ConcurrentDestroy", s.testConcurrentDestroy)
	t.Run("ConcurrentStart", s.testConcurrentStart)
	t.Run("StartConflict", s.testStartConflict)
	t.Run("StartFailureLeavesNothing", s.testStartFailure)
	t.Run("StartCancelledLeavesNothing", s.testStartCancelled)
	t.Run("Adopt", s.testAdopt)
	t.Run("Stopped", s.testStopped)
	t.Run("Network", s.testNetwork)
}

type suite struct {
	h Harness
}

// env is one backend over a fresh state directory.
type env struct {
	t     *testing.T
	s     *suite
	dir   string
	b     backend.Backend
	specs map[string]backend.Spec
}

func (s *suite) env(t *testing.T) *env {
	dir := StateDir(t)
	return &env{t: t, s: s, dir: dir, b: s.h.Open(t, dir), specs: map[string]backend.Spec{}}
}

// newID returns a sandbox id unique to this run, so that leftovers can be
// searched for by name.
func newID(t testing.TB, name string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "bt-" + hex.EncodeToString(b[:]) + "-" + name
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return c
}

func (e *env) spec(id string) backend.Spec {
	return backend.Spec{
		ID:     id,
		Rootfs: e.s.h.Rootfs,
		Resources: backend.Resources{
			MemoryBytes: 256 << 20,
			MilliCPU:    500,
			Pids:        256,
			DiskBytes:   1 << 30,
		},
		Env: []string{"SBX_TEST=1"},
	}
}

// start starts a sandbox and registers its destruction.
func (e *env) start(spec backend.Spec) *backend.Instance {
	t := e.t
	t.Helper()
	inst, err := e.b.Start(ctx(t), spec)
	if err != nil {
		t.Fatalf("Start(%s): %v", spec.ID, err)
	}
	t.Cleanup(func() {
		if err := e.b.Destroy(context.Background(), spec.ID); err != nil {
			t.Errorf("cleanup: Destroy(%s): %v", spec.ID, err)
		}
	})
	if inst.ID != spec.ID {
		t.Errorf("Instance.ID = %q, want %q", inst.ID, spec.ID)
	}
	return inst
}

// agentClient talks HTTP to a sandbox's agent over its unix socket.
func agentClient(socket string) *http.Client {
	return &http.Client{
		Timeout: opTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return backend.DialAgent(ctx, socket)
			},
		},
	}
}

func health(t testing.TB, inst *backend.Instance) {
	t.Helper()
	c := agentClient(inst.AgentSocket)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://agent/health")
	if err != nil {
		t.Fatalf("GET /health on %s: %v", inst.AgentSocket, err)
	}
	defer resp.Body.Close()
	var h api.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != http.StatusOK || h.Status != "ok" {
		t.Fatalf("GET /health: status %d, body %+v, err %v; want 200 {status: ok}", resp.StatusCode, h, err)
	}
}

// sh runs script with bash inside the sandbox, as root in /, and returns
// its result.
func sh(t testing.TB, inst *backend.Instance, script string) api.ExecResult {
	t.Helper()
	body, _ := json.Marshal(api.ExecRequest{Command: script, Cwd: "/", TimeoutMs: 30_000})
	c := agentClient(inst.AgentSocket)
	defer c.CloseIdleConnections()
	resp, err := c.Post("http://agent/exec", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /exec %q: %v", script, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /exec %q: status %d: %s", script, resp.StatusCode, raw)
	}
	var r api.ExecResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("POST /exec %q: %v: %s", script, err, raw)
	}
	return r
}

// output runs script and returns its trimmed stdout, failing t unless it
// exits 0.
func output(t testing.TB, inst *backend.Instance, script string) string {
	t.Helper()
	r := sh(t, inst, script)
	if r.ExitCode != 0 {
		t.Fatalf("%q exited %d: stdout %q stderr %q", script, r.ExitCode, r.Stdout, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout)
}

// procStart is the start time of a host pid, or "" if it is gone.
func procStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" {
		return ""
	}
	return f[19]
}

// assertGone checks that sandbox id has left no trace: the backend reports
// it absent and does not list it; no mount, cgroup, file or process of it
// remains on the host. pidStart is procStart(inst.Pid) taken while it ran.
func (e *env) assertGone(t testing.TB, id string, pid int, pidStart string) {
	t.Helper()
	c := ctx(t)
	if st, err := e.b.Status(c, id); err != nil || st != backend.StateAbsent {
		t.Errorf("Status(%s) = %q, %v; want absent", id, st, err)
	}
	if ids, err := e.b.List(c); err != nil {
		t.Errorf("List: %v", err)
	} else if contains(ids, id) {
		t.Errorf("List = %v still has %s", ids, id)
	}
	if _, err := e.b.Adopt(c, id); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Adopt(%s) = %v; want ErrNotExist", id, err)
	}
	if pid > 0 && pidStart != "" && procStart(pid) == pidStart {
		t.Errorf("sandbox init pid %d still runs", pid)
	}
	for _, m := range mountsNaming(t, id) {
		t.Errorf("mount left behind: %s", m)
	}
	for _, d := range cgroupsNaming(t, id) {
		t.Errorf("cgroup left behind: %s", d)
	}
	for _, d := range loopDevicesNaming(t, id) {
		t.Errorf("loop device left behind: %s", d)
	}
	_ = filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), id) {
			t.Errorf("file left behind: %s", p)
		}
		return nil
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// mountsNaming returns the host mount points with id in their path.
func mountsNaming(t testing.TB, id string) []string {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.Contains(fields[4], id) {
			out = append(out, fields[4])
		}
	}
	return out
}

// loopDevicesNaming returns the loop devices whose backing file has id in
// its path.
func loopDevicesNaming(t testing.TB, id string) []string {
	devs, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range devs {
		if b, err := os.ReadFile(d); err == nil && strings.Contains(string(b), id) {
			out = append(out, strings.Split(d, "/")[3]+" ("+strings.TrimSpace(string(b))+")")
		}
	}
	return out
}

// cgroupsNaming returns the cgroup directories, in any hierarchy, whose
// name contains id.
func cgroupsNaming(t testing.TB, id string) []string {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if fields := strings.Fields(pre); ok && len(fields) > 4 &&
			(strings.HasPrefix(post, "cgroup ") || strings.HasPrefix(post, "cgroup2 ")) {
			roots = append(roots, fields[4])
		}
	}
	var out []string
	for _, root := range roots {
		// Sandbox cgroups sit within a few levels of the root.
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if strings.Count(strings.TrimPrefix(p, root), "/") > 3 {
				return filepath.SkipDir
			}
			if strings.Contains(d.Name(), id) {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func (s *suite) testLifecycle(t *testing.T) {
	e := s.env(t)
	id := newID(t, "life")
	c := ctx(t)
	if st, err := e.b.Status(c, id); err != nil || st != backend.StateAbsent {
		t.Fatalf("Status before Start = %q, %v; want absent", st, err)
	}
	inst, err := e.b.Start(c, e.spec(id))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			e.b.Destroy(context.Background(), id)
		}
	})
	if inst.ID != id || inst.AgentSocket == "" {
		t.Fatalf("Start returned %+v", inst)
	}
	// Start returns only once the agent answers.
	health(t, inst)
	start := ""
	if inst.Pid > 0 {
		if start = procStart(inst.Pid); start == "" {
			t.Errorf("Instance.Pid %d is not a running process", inst.Pid)
		}
	}
	if st, err := e.b.Status(c, id); err != nil || st != backend.StateRunning {
		t.Errorf("Status = %q, %v; want running", st, err)
	}
	if ids, err := e.b.List(c); err != nil || !contains(ids, id) {
		t.Errorf("List = %v, %v; want it to include %s", ids, err, id)
	}
	if got := output(t, inst, "echo $SBX_TEST"); got != "1" {
		t.Errorf("Spec.Env not applied: SBX_TEST=%q", got)
	}

	if err := e.b.Destroy(c, id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	destroyed = true
	e.assertGone(t, id, inst.Pid, start)
}

func (s *suite) testIsolation(t *testing.T) {
	e := s.env(t)
	id := newID(t, "iso")
	inst := e.start(e.spec(id))
	caps := e.b.Capabilities()

	t.Run("Hostname", func(t *testing.T) {
		if got := output(t, inst, "hostname"); got != id {
			t.Errorf("hostname = %q, want %q", got, id)
		}
	})
	t.Run("Interfaces", func(t *testing.T) {
		want := "lo" // and eth0 with egress, see network.go
		if caps.Egress {
			want = "eth0\nlo"
		}
		if got := output(t, inst, "ls /sys/class/net"); got != want {
			t.Errorf("network interfaces = %q, want %q", got, want)
		}
	})
	t.Run("PidNamespace", func(t *testing.T) {
		if got := output(t, inst, "cat /proc/1/cmdline | tr '\\0' ' '"); !strings.Contains(got, "agent") {
			t.Errorf("pid 1 is %q, want the agent", got)
		}
		// The agent, bash, ls and grep: nothing from the host.
		n, _ := strconv.Atoi(output(t, inst, "ls /proc | grep -c '^[0-9]'"))
		if n == 0 || n > 5 {
			t.Errorf("%d processes visible, want only the sandbox's own", n)
		}
	})
	t.Run("NoNewPrivileges", func(t *testing.T) {
		if got := output(t, inst, "grep NoNewPrivs /proc/self/status"); !strings.HasSuffix(got, "1") {
			t.Errorf("%s, want 1", got)
		}
	})
	t.Run("Capabilities", func(t *testing.T) {
		hex := strings.TrimSpace(strings.TrimPrefix(output(t, inst, "grep CapBnd /proc/self/status"), "CapBnd:"))
		set, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			t.Fatalf("CapBnd %q: %v", hex, err)
		}
		for name, bit := range map[string]uint{"CAP_SYS_ADMIN": 21, "CAP_NET_RAW": 13, "CAP_MKNOD": 27, "CAP_SYS_MODULE": 16, "CAP_SYS_PTRACE": 19, "CAP_NET_ADMIN": 12, "CAP_SYS_RAWIO": 17} {
			if set&(1<<bit) != 0 {
				t.Errorf("sandbox has %s (bounding set %s)", name, hex)
			}
		}
	})
	t.Run("Seccomp", func(t *testing.T) {
		if !caps.Seccomp {
			t.Skip("backend reports no seccomp")
		}
		if got := output(t, inst, "grep '^Seccomp:' /proc/self/status"); !strings.HasSuffix(got, "2") {
			t.Errorf("%s, want 2 (filter)", got)
		}
	})
	t.Run("UserNamespace", func(t *testing.T) {
		m := strings.Fields(output(t, inst, "cat /proc/self/uid_map"))
		identity := len(m) == 3 && m[0] == "0" && m[1] == "0"
		if caps.UserNamespace == identity {
			t.Errorf("Capabilities.UserNamespace = %v but uid_map is %v", caps.UserNamespace, m)
		}
		if caps.UserNamespace {
			if got := output(t, inst, "id -u; stat -c %u /usr/bin /etc/passwd"); got != "0\n0\n0" {
				t.Errorf("sandbox root or image files not owned by root inside: %q", got)
			}
			// Sandbox root can write to the image it sees as its own.
			output(t, inst, "touch /etc/sbx-write-test && chown 1000:1000 /etc/sbx-write-test")
			if inst.Pid > 0 {
				status, err := os.ReadFile("/proc/" + strconv.Itoa(inst.Pid) + "/status")
				if err != nil {
					t.Fatal(err)
				}
				for _, line := range strings.Split(string(status), "\n") {
					if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] == "0" {
						t.Errorf("sandbox init runs as host root: %s", line)
					}
				}
			}
		}
	})
	t.Run("AgentSocketOnly", func(t *testing.T) {
		// The sandbox gets its agent's socket directory, nothing else of
		// the host's state.
		if got := output(t, inst, "ls /run/sbx"); got != "agent.sock" {
			t.Errorf("/run/sbx holds %q, want only agent.sock", got)
		}
	})
}

// testEscape checks, as root inside the sandbox, that the usual ways out or
// into the host kernel are shut.
func (s *suite) testEscape(t *testing.T) {
	e := s.env(t)
	inst := e.start(e.spec(newID(t, "esc")))
	hasPython := sh(t, inst, "command -v python3").ExitCode == 0
	mustFail := []struct {
		name, script string
		python       bool
	}{
		{"Mount", "mount -t tmpfs x /mnt", false},
		{"Remount", "mount -o remount,rw /sys", false},
		{"UnshareUser", "unshare -U true", false},
		{"UnshareMount", "unshare -m true", false},
		{"ProcSysWrite", "echo 3 > /proc/sys/vm/drop_caches", false},
		{"SysrqTrigger", "echo h > /proc/sysrq-trigger", false},
		{"SysWrite", "echo 1 > /sys/kernel/profiling", false},
		{"Mknod", "mknod /tmp/sda b 8 0", false},
		{"RawSocket", "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)'", true},
		{"Keyring", "python3 -c 'import ctypes, sys; l=ctypes.CDLL(None, use_errno=True); sys.exit(l.syscall(" + keyctlNr() + ", 0, -3, 0, 0, 0) == -1)'", true},
	}
	for _, tc := range mustFail {
		t.Run(tc.name, func(t *testing.T) {
			if tc.python && !hasPython {
				t.Skip("image has no python3")
			}
			if r := sh(t, inst, tc.script); r.ExitCode == 0 {
				t.Errorf("%q succeeded inside the sandbox; stdout %q", tc.script, r.Stdout)
			}
		})
	}
	t.Run("KernelModule", func(t *testing.T) {
		// init_module(NULL, 0, "") must be refused with EPERM, not
		// EFAULT: a fault would mean the kernel looked at the call.
		nr := map[string]int{"amd64": 175, "arm64": 105}[runtime.GOARCH]
		if nr == 0 {
			t.Skip("no syscall number for this architecture")
		}
		if !hasPython {
			t.Skip("image has no python3")
		}
		got := output(t, inst, fmt.Sprintf(`python3 -c 'import ctypes; l=ctypes.CDLL(None, use_errno=True); l.syscall(%d, 0, 0, b""); print(ctypes.get_errno())'`, nr))
		if got != "1" {
			t.Errorf("init_module errno = %s, want 1 (EPERM)", got)
		}
	})
	t.Run("CloneNewUser", func(t *testing.T) {
		// clone(CLONE_NEWUSER) must fail like unshare does; a child,
		// should one be created, exits at once.
		nr := map[string]int{"amd64": 56, "arm64": 220}[runtime.GOARCH]
		if nr == 0 || !hasPython {
			t.Skip("needs python3 on amd64 or arm64")
		}
		got := output(t, inst, fmt.Sprintf(`python3 -c 'import ctypes, os; l=ctypes.CDLL(None, use_errno=True); r=l.syscall(%d, 0x10000000|17, 0, 0, 0, 0); r == 0 and os._exit(0); print(ctypes.get_errno() if r < 0 else "created")'`, nr))
		if got != "1" {
			t.Errorf("clone(CLONE_NEWUSER): %s, want errno 1 (EPERM)", got)
		}
	})
	t.Run("NoHostDevices", func(t *testing.T) {
		allowed := map[string]bool{"null": true, "zero": true, "full": true, "random": true, "urandom": true,
			"tty": true, "ptmx": true, "pts": true, "shm": true, "mqueue": true, "console": true,
			"fd": true, "stdin": true, "stdout": true, "stderr": true, "core": true}
		for _, d := range strings.Fields(output(t, inst, "ls /dev")) {
			if !allowed[d] {
				t.Errorf("/dev/%s is visible in the sandbox", d)
			}
		}
		if r := sh(t, inst, "head -c1 /dev/vda || head -c1 /dev/sda"); r.ExitCode == 0 {
			t.Errorf("host disk readable")
		}
	})
	t.Run("MaskedProc", func(t *testing.T) {
		// Absent (kernels without it) or masked: nothing to read.
		for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"} {
			if got := output(t, inst, "cat "+p+" 2>/dev/null | head -c 64 | wc -c"); got != "0" {
				t.Errorf("%s readable: %s bytes", p, got)
			}
		}
		if got := output(t, inst, "ls -A /sys/firmware 2>/dev/null | wc -l"); got != "0" {
			t.Errorf("/sys/firmware has %s entries, want it masked", got)
		}
	})
	t.Run("ReadOnlySys", func(t *testing.T) {
		got := output(t, inst, "awk '$2 == \"/sys\" {print $4}' /proc/mounts")
		if !strings.HasPrefix(got, "ro") {
			t.Errorf("/sys mounted %q, want ro", got)
		}
	})
}

func (s *suite) testFilesystemIsolation(t *testing.T) {
	e := s.env(t)
	a := e.start(e.spec(newID(t, "fsa")))
	b := e.start(e.spec(newID(t, "fsb")))
	output(t, a, "echo secret > /root/marker && echo x > /etc/marker && rm /etc/hostname")
	if r := sh(t, b, "cat /root/marker /etc/marker"); r.ExitCode == 0 {
		t.Errorf("sandbox b sees a's files: %q", r.Stdout)
	}
	output(t, b, "test -e /etc/hostname")
	for _, p := range []string{"root/marker", "etc/marker"} {
		if _, err := os.Stat(filepath.Join(s.h.Rootfs, p)); err == nil {
			t.Errorf("write in a sandbox reached the image: %s", p)
		}
	}
	if _, err := os.Stat(filepath.Join(s.h.Rootfs, "etc/hostname")); err != nil {
		t.Errorf("delete in a sandbox reached the image: %v", err)
	}
	if got := output(t, a, "cat /root/marker"); got != "secret" {
		t.Errorf("a lost its own write: %q", got)
	}
}

// cgroupValue prints a cgroup setting of the sandbox as seen from inside,
// from the v2 file or the v1 one.
func cgroupValue(t testing.TB, inst *backend.Instance, v2, v1 string) string {
	return output(t, inst, fmt.Sprintf("cat /sys/fs/cgroup/%s 2>/dev/null || cat /sys/fs/cgroup/%s", v2, v1))
}

func (s *suite) testResources(t *testing.T) {
	e := s.env(t)
	spec := e.spec(newID(t, "res"))
	spec.Resources = backend.Resources{MemoryBytes: 128 << 20, MilliCPU: 250, Pids: 64, DiskBytes: 64 << 20}
	inst := e.start(spec)
	caps := e.b.Capabilities()

	t.Run("Disk", func(t *testing.T) {
		if !caps.DiskQuota {
			t.Skip("backend reports no disk quota")
		}
		// The sandbox sees its own size, a little less for the
		// filesystem's metadata.
		size, err := strconv.ParseInt(strings.TrimSpace(output(t, inst, "df -B1 --output=size / | tail -n 1")), 10, 64)
		if err != nil || size > 64<<20 || size < 48<<20 {
			t.Errorf("size of / = %d (%v), want a little under 64 MiB", size, err)
		}
		// Filling it fails inside the sandbox, with the usual error.
		r := sh(t, inst, "head -c 100M /dev/zero > /big")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "No space left on device") {
			t.Errorf("writing 100 MiB into a 64 MiB sandbox: exit %d, stderr %q; want ENOSPC", r.ExitCode, r.Stderr)
		}
		// Deleting frees the space again.
		if r := sh(t, inst, "rm /big && head -c 32M /dev/zero > /again && stat -c %s /again"); r.ExitCode != 0 || r.Stdout != "33554432\n" {
			t.Errorf("write after freeing space: exit %d, %q %q", r.ExitCode, r.Stdout, r.Stderr)
		}
		health(t, inst)
	})

	t.Run("Memory", func(t *testing.T) {
		if !caps.MemoryLimit {
			t.Skip("backend reports no memory limit")
		}
		if got := cgroupValue(t, inst, "memory.max", "memory/memory.limit_in_bytes"); got != strconv.Itoa(128<<20) {
			t.Errorf("memory limit = %s, want %d", got, 128<<20)
		}
		// A process that grows past the limit is killed, not swapped out.
		r := sh(t, inst, "head -c 400M /dev/zero | tail -n 1 > /dev/null")
		if r.ExitCode != 137 {
			t.Errorf("400 MiB in a 128 MiB sandbox: exit %d, want 137 (OOM-killed); stderr %q", r.ExitCode, r.Stderr)
		}
		health(t, inst) // the agent survives its command's OOM
	})
	t.Run("Pids", func(t *testing.T) {
		if !caps.PidsLimit {
			t.Skip("backend reports no pids limit")
		}
		if got := cgroupValue(t, inst, "pids.max", "pids/pids.max"); got != "64" {
			t.Errorf("pids limit = %s, want 64", got)
		}
	})
	t.Run("CPU", func(t *testing.T) {
		if !caps.CPULimit {
			t.Skip("backend reports no CPU limit")
		}
		got := output(t, inst, "cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)")
		f := strings.Fields(got)
		if len(f) != 2 {
			t.Fatalf("cpu quota %q", got)
		}
		q, _ := strconv.ParseFloat(f[0], 64)
		p, _ := strconv.ParseFloat(f[1], 64)
		if p == 0 || q/p != 0.25 {
			t.Errorf("cpu quota/period = %s, want 1/4 core", got)
		}
	})
}

func (s *suite) testDestroyTwice(t *testing.T) {
	e := s.env(t)
	id := newID(t, "twice")
	inst := e.start(e.spec(id))
	start := procStart(inst.Pid)
	c := ctx(t)
	for i := range 2 {
		if err := e.b.Destroy(c, id); err != nil {
			t.Fatalf("Destroy #%d: %v", i+1, err)
		}
	}
	e.assertGone(t, id, inst.Pid, start)
	if err := e.b.Destroy(c, newID(t, "never")); err != nil {
		t.Errorf("Destroy of a sandbox that never existed: %v", err)
	}
}

func (s *suite) testConcurrentDestroy(t *testing.T) {
	e := s.env(t)
	id := newID(t, "conc")
	inst := e.start(e.spec(id))
	start := procStart(inst.Pid)
	c := ctx(t)
	errs := make(chan error)
	const n = 8
	for range n {
		go func() { errs <- e.b.Destroy(c, id) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Destroy: %v", err)
		}
	}
	e.assertGone(t, id, inst.Pid, start)
}

func (s *suite) testConcurrentStart(t *testing.T) {
	e := s.env(t)
	const n = 4
	ids := make([]string, n)
	insts := make(chan *backend.Instance, n)
	errs := make(chan error, n)
	c := ctx(t)
	for i := range ids {
		ids[i] = newID(t, "many"+strconv.Itoa(i))
		t.Cleanup(func() { e.b.Destroy(context.Background(), ids[i]) })
		go func() {
			inst, err := e.b.Start(c, e.spec(ids[i]))
			insts <- inst
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Start: %v", err)
		}
		if inst := <-insts; inst != nil {
			health(t, inst)
		}
	}
	listed, err := e.b.List(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !contains(listed, id) {
			t.Errorf("List = %v, missing %s", listed, id)
		}
	}
}

func (s *suite) testStartConflict(t *testing.T) {
	e := s.env(t)
	id := newID(t, "dup")
	inst := e.start(e.spec(id))
	if _, err := e.b.Start(ctx(t), e.spec(id)); err == nil {
		t.Fatalf("second Start of %s succeeded; want an error", id)
	}
	// The failed Start must not have touched the running sandbox.
	health(t, inst)
	if st, _ := e.b.Status(ctx(t), id); st != backend.StateRunning {
		t.Errorf("Status after conflicting Start = %q, want running", st)
	}
}

func (s *suite) testStartFailure(t *testing.T) {
	e := s.env(t)
	for name, mutate := range map[string]func(*backend.Spec){
		"MissingRootfs":  func(s *backend.Spec) { s.Rootfs = filepath.Join(e.dir, "no-such-image") },
		"RootfsIsFile":   func(s *backend.Spec) { s.Rootfs = "/etc/hostname" },
		"NegativeMemory": func(s *backend.Spec) { s.Resources.MemoryBytes = -1 },
	} {
		t.Run(name, func(t *testing.T) {
			id := newID(t, "fail")
			spec := e.spec(id)
			mutate(&spec)
			inst, err := e.b.Start(ctx(t), spec)
			if err == nil {
				e.b.Destroy(context.Background(), id)
				t.Fatalf("Start succeeded: %+v", inst)
			}
			e.assertGone(t, id, 0, "")
		})
	}
}

// testStartCancelled cuts Start short at various points; whatever stage it
// reached, a failed Start leaves nothing behind.
func (s *suite) testStartCancelled(t *testing.T) {
	e := s.env(t)
	for _, d := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond} {
		id := newID(t, "cancel")
		c, cancel := context.WithTimeout(context.Background(), d)
		inst, err := e.b.Start(c, e.spec(id))
		cancel()
		if err == nil {
			health(t, inst)
			if err := e.b.Destroy(ctx(t), id); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("Start with %v deadline: %v", d, err)
		}
		e.assertGone(t, id, 0, "")
	}
}

func (s *suite) testAdopt(t *testing.T) {
	e := s.env(t)
	id := newID(t, "adopt")
	inst := e.start(e.spec(id))
	output(t, inst, "echo kept > /root/state")

	// A new Backend over the same state: sbxd after a restart.
	b2 := s.h.Open(t, e.dir)
	c := ctx(t)
	if ids, err := b2.List(c); err != nil || !contains(ids, id) {
		t.Errorf("List after restart = %v, %v; want it to include %s", ids, err, id)
	}
	if st, err := b2.Status(c, id); err != nil || st != backend.StateRunning {
		t.Errorf("Status after restart = %q, %v; want running", st, err)
	}
	got, err := b2.Adopt(c, id)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if got.ID != id || got.AgentSocket != inst.AgentSocket || got.Pid != inst.Pid {
		t.Errorf("Adopt = %+v, want %+v", got, inst)
	}
	health(t, got)
	if out := output(t, got, "cat /root/state"); out != "kept" {
		t.Errorf("adopted sandbox lost its state: %q", out)
	}
	if _, err := b2.Adopt(c, newID(t, "none")); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Adopt of an unknown id = %v, want ErrNotExist", err)
	}

	start := procStart(inst.Pid)
	if err := b2.Destroy(c, id); err != nil {
		t.Fatalf("Destroy through the new Backend: %v", err)
	}
	e.assertGone(t, id, inst.Pid, start)
}

// testStopped kills a sandbox's init behind the backend's back, as the
// kernel's OOM killer or a crash would.
func (s *suite) testStopped(t *testing.T) {
	e := s.env(t)
	id := newID(t, "stop")
	inst := e.start(e.spec(id))
	if inst.Pid <= 0 {
		t.Skip("backend reports no host pid")
	}
	p, err := os.FindProcess(inst.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := e.b.Status(c, id)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		if st == backend.StateStopped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status = %q 5s after the init was killed; want stopped", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := e.b.Adopt(c, id); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Adopt of a stopped sandbox = %v, want ErrNotExist", err)
	}
	if ids, _ := e.b.List(c); !contains(ids, id) {
		t.Errorf("List = %v; a stopped sandbox still has resources and must be listed", ids)
	}
	if err := e.b.Destroy(c, id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	e.assertGone(t, id, 0, "")
}

// keyctlNr is the number of keyctl(2), which the sandbox must not reach:
// kernel keyrings are not namespaced.
func keyctlNr() string {
	return map[string]string{"amd64": "250", "arm64": "219"}[runtime.GOARCH]
}
