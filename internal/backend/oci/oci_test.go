package oci

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/internal/backend"
	"github.com/sbx-dev/sbx/internal/backend/backendtest"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

func TestMain(m *testing.M) { backendtest.Main(m) }

// variants are the configurations held to the conformance suite.
var variants = []struct {
	name     string
	runtime  string
	noUserns bool
}{
	{"crun", "crun", false},
	{"runc", "runc", false},
	{"crun-no-userns", "crun", true},
}

func requireRuntime(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
}

func harness(runtime string, noUserns bool) backendtest.Harness {
	open := func(t testing.TB, dir string, nameservers []netip.Addr) backend.Backend {
		b, err := New(Config{
			DataDir:              dir,
			AgentPath:            backendtest.AgentBinary(t),
			Runtime:              runtime,
			Logger:               slog.New(slog.NewTextHandler(io.Discard, nil)),
			DisableUserNamespace: noUserns,
			Nameservers:          nameservers,
		})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return b
	}
	return backendtest.Harness{
		Open:        func(t testing.TB, dir string) backend.Backend { return open(t, dir, nil) },
		OpenNetwork: open,
	}
}

func TestConformance(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			backendtest.RequireRoot(t)
			requireRuntime(t, v.runtime)
			backendtest.Run(t, harness(v.runtime, v.noUserns))
		})
	}
}

// TestCapabilities checks what the backend claims about itself.
func TestCapabilities(t *testing.T) {
	backendtest.RequireRoot(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			requireRuntime(t, v.runtime)
			b := harness(v.runtime, v.noUserns).Open(t, backendtest.StateDir(t)).(*Backend)
			got := b.Capabilities()
			want := backend.Capabilities{
				Name:          "oci/" + v.runtime,
				UserNamespace: !v.noUserns,
				Seccomp:       true,
				CPULimit:      true,
				MemoryLimit:   true,
				PidsLimit:     true,
				Egress:        true,
				Persistence:   true,
				DiskQuota:     true,
			}
			if got != want {
				t.Errorf("Capabilities = %+v, want %+v", got, want)
			}
		})
	}
}

// TestDestroyRemovesRuntimeState checks what the generic suite cannot see:
// the runtime's own record of the container.
func TestDestroyRemovesRuntimeState(t *testing.T) {
	backendtest.RequireRoot(t)
	rootfs := backendtest.Rootfs(t)
	for _, v := range variants[:2] {
		t.Run(v.name, func(t *testing.T) {
			requireRuntime(t, v.runtime)
			b := harness(v.runtime, false).Open(t, backendtest.StateDir(t)).(*Backend)
			ctx := context.Background()
			if _, err := b.Start(ctx, backend.Spec{ID: "state", Rootfs: rootfs}); err != nil {
				t.Fatal(err)
			}
			cid := b.containerID("state")
			if !b.rt.exists(cid) {
				t.Fatalf("no runtime state for %s under %s", cid, b.rt.root)
			}
			st, err := b.rt.state(ctx, cid)
			if err != nil || st.Status != "running" {
				t.Errorf("runtime state = %+v, %v; want running", st, err)
			}
			if err := b.Destroy(ctx, "state"); err != nil {
				t.Fatal(err)
			}
			if b.rt.exists(cid) {
				t.Errorf("runtime state of %s survived Destroy", cid)
			}
		})
	}
}

// BenchmarkStartDestroy reports the median Start and Destroy latency of each
// runtime; run with -benchtime=20x.
func BenchmarkStartDestroy(b *testing.B) {
	backendtest.RequireRoot(b)
	rootfs := backendtest.Rootfs(b)
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			requireRuntime(b, v.runtime)
			be := harness(v.runtime, v.noUserns).Open(b, backendtest.StateDir(b))
			ctx := context.Background()
			spec := backend.Spec{ID: "bench", Rootfs: rootfs, Resources: backend.Resources{MemoryBytes: 256 << 20, MilliCPU: 500, Pids: 256}}
			var starts, destroys []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := be.Start(ctx, spec); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := be.Destroy(ctx, spec.ID); err != nil {
					b.Fatal(err)
				}
				starts = append(starts, t1.Sub(t0))
				destroys = append(destroys, time.Since(t1))
			}
			b.ReportMetric(median(starts), "start-p50-ms")
			b.ReportMetric(median(destroys), "destroy-p50-ms")
		})
	}
}

func median(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}

// The tests below need neither root nor a runtime.

func TestResources(t *testing.T) {
	ptr := func(v int64) *int64 { return &v }
	tests := []struct {
		name    string
		in      backend.Resources
		swap    bool
		mem     *int64
		memsw   *int64
		quota   *int64
		pids    *int64
		wantErr bool
	}{
		{name: "none"},
		{name: "all", in: backend.Resources{MemoryBytes: 256 << 20, MilliCPU: 500, Pids: 100}, swap: true,
			mem: ptr(256 << 20), memsw: ptr(256 << 20), quota: ptr(50_000), pids: ptr(100)},
		{name: "no swap accounting", in: backend.Resources{MemoryBytes: 1 << 30}, mem: ptr(1 << 30)},
		{name: "four cores", in: backend.Resources{MilliCPU: 4000}, quota: ptr(400_000)},
		{name: "tiny cpu clamps to kernel minimum", in: backend.Resources{MilliCPU: 5}, quota: ptr(1000)},
		{name: "disk only", in: backend.Resources{DiskBytes: 2 << 30}},
		{name: "negative memory", in: backend.Resources{MemoryBytes: -1}, wantErr: true},
		{name: "negative pids", in: backend.Resources{Pids: -5}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := resources(tc.in, tc.swap)
			if tc.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Devices) != 1 || r.Devices[0].Allow || r.Devices[0].Access != "rwm" {
				t.Errorf("devices = %+v, want deny-all (the runtime adds its defaults)", r.Devices)
			}
			var mem, memsw, quota, pids *int64
			if r.Memory != nil {
				mem, memsw = r.Memory.Limit, r.Memory.Swap
			}
			if r.CPU != nil {
				quota = r.CPU.Quota
				if *r.CPU.Period != cpuPeriod {
					t.Errorf("period = %d", *r.CPU.Period)
				}
			}
			if r.Pids != nil {
				pids = r.Pids.Limit
			}
			for _, c := range []struct {
				what      string
				got, want *int64
			}{{"memory", mem, tc.mem}, {"memory+swap", memsw, tc.memsw}, {"cpu quota", quota, tc.quota}, {"pids", pids, tc.pids}} {
				if (c.got == nil) != (c.want == nil) || c.got != nil && *c.got != *c.want {
					t.Errorf("%s = %v, want %v", c.what, deref(c.got), deref(c.want))
				}
			}
		})
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func testSpec() backend.Spec {
	return backend.Spec{ID: "box-1", Rootfs: "/img", Env: []string{"PATH=/opt/bin", "FOO=bar"}}
}

func TestBuildSpec(t *testing.T) {
	params := specParams{
		rootfs:      "/data/sandboxes/box-1/rootfs",
		agent:       "/usr/libexec/sbx-agent",
		runDir:      "/data/sandboxes/box-1/run",
		cgroupsPath: "/sbx-1234/box-1",
		nofile:      4096,
	}
	for _, tc := range []struct {
		name  string
		idMap *idRange
	}{{"host ids", nil}, {"user namespace", &idRange{host: 1 << 30, size: 65536}}} {
		t.Run(tc.name, func(t *testing.T) {
			p := params
			p.idMap = tc.idMap
			s, err := buildSpec(testSpec(), p)
			if err != nil {
				t.Fatal(err)
			}
			if s.Hostname != "box-1" {
				t.Errorf("hostname = %q", s.Hostname)
			}
			if s.Root.Path != p.rootfs || s.Linux.CgroupsPath != p.cgroupsPath {
				t.Errorf("root %q cgroupsPath %q", s.Root.Path, s.Linux.CgroupsPath)
			}
			if got := strings.Join(s.Process.Args, " "); got != "/.sbx/sbx-agent --socket /run/sbx/agent.sock" {
				t.Errorf("args = %q", got)
			}
			if s.Process.User.UID != 0 || s.Process.Cwd != "/" || !s.Process.NoNewPrivileges {
				t.Errorf("process = %+v", s.Process)
			}
			wantEnv := []string{"PATH=/opt/bin", "HOME=/root", "LANG=C.UTF-8", "TERM=xterm-256color", "FOO=bar"}
			if !slices.Equal(s.Process.Env, wantEnv) {
				t.Errorf("env = %q, want %q", s.Process.Env, wantEnv)
			}

			var ns []string
			for _, n := range s.Linux.Namespaces {
				if n.Path != "" {
					t.Errorf("namespace %s joins %s; every namespace must be new", n.Type, n.Path)
				}
				ns = append(ns, string(n.Type))
			}
			sort.Strings(ns)
			wantNS := []string{"cgroup", "ipc", "mount", "network", "pid", "uts"}
			if tc.idMap != nil {
				wantNS = []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"}
				if len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0].HostID != 1<<30 || s.Linux.UIDMappings[0].ContainerID != 0 ||
					!slices.Equal(s.Linux.UIDMappings, s.Linux.GIDMappings) {
					t.Errorf("id mappings uid %+v gid %+v", s.Linux.UIDMappings, s.Linux.GIDMappings)
				}
			} else if len(s.Linux.UIDMappings) != 0 {
				t.Errorf("uid mappings without a user namespace: %+v", s.Linux.UIDMappings)
			}
			if !slices.Equal(ns, wantNS) {
				t.Errorf("namespaces = %v, want %v", ns, wantNS)
			}

			c := s.Process.Capabilities
			for _, set := range [][]string{c.Effective, c.Permitted} {
				if !slices.Equal(set, c.Bounding) {
					t.Errorf("capability sets differ: %v vs bounding %v", set, c.Bounding)
				}
			}
			if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
				t.Errorf("inheritable %v ambient %v, want none", c.Inheritable, c.Ambient)
			}
			for _, forbidden := range []string{"CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_MKNOD", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_NET_ADMIN", "CAP_SYS_RAWIO", "CAP_DAC_READ_SEARCH", "CAP_SYS_TIME", "CAP_SYSLOG", "CAP_BPF"} {
				if slices.Contains(c.Bounding, forbidden) {
					t.Errorf("bounding set has %s", forbidden)
				}
			}
			for _, needed := range []string{"CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_NET_BIND_SERVICE"} {
				if !slices.Contains(c.Bounding, needed) {
					t.Errorf("bounding set lacks %s, which images need", needed)
				}
			}

			for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"} {
				if !slices.Contains(s.Linux.MaskedPaths, p) {
					t.Errorf("%s not masked", p)
				}
			}
			for _, p := range []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq"} {
				if !slices.Contains(s.Linux.ReadonlyPaths, p) {
					t.Errorf("%s not read-only", p)
				}
			}
			if len(s.Linux.Devices) != 0 {
				t.Errorf("host devices passed in: %+v", s.Linux.Devices)
			}
			if s.Linux.Seccomp == nil {
				t.Error("no seccomp profile")
			}

			mounts := map[string][]string{}
			for _, m := range s.Mounts {
				mounts[m.Destination] = m.Options
			}
			for dest, opt := range map[string]string{"/sys": "ro", "/sys/fs/cgroup": "ro", "/.sbx/sbx-agent": "ro", "/run/sbx": "rw", "/proc": "nosuid"} {
				if !slices.Contains(mounts[dest], opt) {
					t.Errorf("mount %s options %v lack %s", dest, mounts[dest], opt)
				}
			}
		})
	}
}

func TestSeccompProfile(t *testing.T) {
	s := defaultSeccomp()
	if s.DefaultAction != "SCMP_ACT_ALLOW" {
		t.Errorf("default action %s", s.DefaultAction)
	}
	action := map[string]string{} // syscall → "ERRNO <n>" for unconditional rules
	conditional := map[string]bool{}
	for _, r := range s.Syscalls {
		for _, n := range r.Names {
			if len(r.Args) > 0 {
				conditional[n] = r.Action == "SCMP_ACT_ERRNO" && r.Args[0].Op == "SCMP_CMP_MASKED_EQ" && r.Args[0].Value&0x10000000 != 0
				continue
			}
			if r.ErrnoRet == nil {
				t.Errorf("%s: rule without errno", n)
				continue
			}
			action[n] = string(r.Action) + " " + map[uint]string{1: "EPERM", 38: "ENOSYS"}[*r.ErrnoRet]
		}
	}
	for _, n := range []string{
		"init_module", "finit_module", "delete_module", "add_key", "request_key", "keyctl",
		"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
		"bpf", "perf_event_open", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
		"settimeofday", "clock_settime", "clock_adjtime", "open_by_handle_at", "userfaultfd", "setns",
		"acct", "quotactl", "syslog", "iopl", "ioperm", "io_uring_setup",
	} {
		if action[n] != "SCMP_ACT_ERRNO EPERM" {
			t.Errorf("%s: %q, want EPERM", n, action[n])
		}
	}
	if action["clone3"] != "SCMP_ACT_ERRNO ENOSYS" {
		t.Errorf("clone3: %q, want ENOSYS so that libc falls back to clone", action["clone3"])
	}
	for _, n := range []string{"clone", "unshare"} {
		if !conditional[n] {
			t.Errorf("%s with CLONE_NEWUSER is not refused", n)
		}
		if _, ok := action[n]; ok {
			t.Errorf("%s refused unconditionally; processes could not be created", n)
		}
	}
	for _, n := range []string{"ptrace", "read", "execve", "socket"} {
		if _, ok := action[n]; ok {
			t.Errorf("%s is refused; the sandbox needs it", n)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	for _, tc := range []struct {
		base, over, want []string
	}{
		{[]string{"A=1", "B=2"}, nil, []string{"A=1", "B=2"}},
		{[]string{"A=1", "B=2"}, []string{"B=3", "C=4"}, []string{"A=1", "B=3", "C=4"}},
		{[]string{"A=1"}, []string{"C=x=y", "C=z"}, []string{"A=1", "C=z"}},
		{[]string{"A=1"}, []string{"A="}, []string{"A="}},
	} {
		if got := mergeEnv(tc.base, tc.over); !slices.Equal(got, tc.want) {
			t.Errorf("mergeEnv(%q, %q) = %q, want %q", tc.base, tc.over, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for id, ok := range map[string]bool{
		"a": true, "my-box_1.x": true, strings.Repeat("a", 63): true,
		"": false, ".": false, "..": false, "a/b": false, strings.Repeat("a", 64): false, "a b": false, "é": false,
	} {
		err := validateID(id)
		if (err == nil) != ok {
			t.Errorf("validateID(%q) = %v, want ok=%v", id, err, ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidSandboxID) {
			t.Errorf("validateID(%q) = %v, want ErrInvalidSandboxID", id, err)
		}
	}
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		spec backend.Spec
		want error
	}{
		"relative rootfs": {backend.Spec{ID: "a", Rootfs: "img"}, errdefs.ErrInvalidArgument},
		"missing rootfs":  {backend.Spec{ID: "a", Rootfs: dir + "/none"}, errdefs.ErrImageNotFound},
		"bad env":         {backend.Spec{ID: "a", Rootfs: dir, Env: []string{"NOEQUALS"}}, errdefs.ErrInvalidArgument},
		"empty env key":   {backend.Spec{ID: "a", Rootfs: dir, Env: []string{"=x"}}, errdefs.ErrInvalidArgument},
		"negative cpu":    {backend.Spec{ID: "a", Rootfs: dir, Resources: backend.Resources{MilliCPU: -1}}, errdefs.ErrInvalidArgument},
		"bad id":          {backend.Spec{ID: "../x", Rootfs: dir}, errdefs.ErrInvalidSandboxID},
		"ok":              {backend.Spec{ID: "a", Rootfs: dir, Env: []string{"A=", "B=c=d"}}, nil},
	} {
		if err := validateSpec(tc.spec); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: validateSpec = %v, want %v", name, err, tc.want)
		}
	}
}

// TestLongDataDir checks that a data dir too long for a unix socket address
// still works: the agent socket is reached through /proc/self/fd.
func TestLongDataDir(t *testing.T) {
	backendtest.RequireRoot(t)
	requireRuntime(t, "crun")
	rootfs := backendtest.Rootfs(t)
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, strings.Repeat("d", 60))
	b := harness("crun", false).Open(t, dir)
	id := strings.Repeat("x", 63)
	ctx := context.Background()
	inst, err := b.Start(ctx, backend.Spec{ID: id, Rootfs: rootfs,
		Resources: backend.Resources{MemoryBytes: 256 << 20, MilliCPU: 500, Pids: 128}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(ctx, id)
	if len(inst.AgentSocket) <= 107 {
		t.Fatalf("socket path %s is short; the test proves nothing", inst.AgentSocket)
	}
	conn, err := backend.DialAgent(ctx, inst.AgentSocket)
	if err != nil {
		t.Fatalf("dialing a long socket path: %v", err)
	}
	conn.Close()
	if err := b.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	for name, cfg := range map[string]Config{
		"runtime":   {DataDir: data, AgentPath: "/bin/true", Runtime: "docker"},
		"data dir":  {AgentPath: "/bin/true", Runtime: "runc"},
		"agent":     {DataDir: data, AgentPath: "/nonexistent/agent", Runtime: "runc"},
		"agent dir": {DataDir: data, AgentPath: "/tmp", Runtime: "runc"},
	} {
		if name != "runtime" {
			requireRuntime(t, "runc")
		}
		if _, err := New(cfg); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: New = %v, want ErrInvalidArgument", name, err)
		}
		if _, err := os.Stat(data); err == nil {
			t.Fatalf("%s: New created %s although it refused the configuration", name, data)
		}
	}
}

func TestParseInitProc(t *testing.T) {
	p, err := parseInitProc([]byte(initProc{pid: 42, start: 123456}.String()))
	if err != nil || p.pid != 42 || p.start != 123456 {
		t.Errorf("round trip = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "42", "x 1", "42 y", "0 5", "1 2 3"} {
		if _, err := parseInitProc([]byte(bad)); err == nil {
			t.Errorf("parseInitProc(%q) accepted", bad)
		}
	}
}

func TestProcStat(t *testing.T) {
	state, start, err := procStat(os.Getpid())
	if err != nil || state == 0 || start == 0 {
		t.Fatalf("procStat(self) = %c %d %v", state, start, err)
	}
	if !(initProc{pid: os.Getpid(), start: start}).alive() {
		t.Error("self not alive")
	}
	if (initProc{pid: os.Getpid(), start: start + 1}).alive() {
		t.Error("a different start time must mean a different process")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:         "/a/b",
		`/a\040b`:      "/a b",
		`/tab\011x`:    "/tab\tx",
		`/back\134s`:   `/back\s`,
		`/trailing\04`: `/trailing\04`,
		`/not\99octal`: `/not\99octal`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIDRange(t *testing.T) {
	seen := map[uint32]bool{}
	for _, d := range []string{"/var/lib/sbx", "/tmp/a", "/tmp/b", "/srv/sbx"} {
		r := idRangeFor(d)
		if r != idRangeFor(d) {
			t.Errorf("%s: range not stable", d)
		}
		if r.size != 65536 || r.host < 1<<30 || uint64(r.host)+uint64(r.size) > 1<<31 || r.host%65536 != 0 {
			t.Errorf("%s: range %+v outside [2^30, 2^31) or misaligned", d, r)
		}
		seen[r.host] = true
	}
	if len(seen) < 2 {
		t.Error("every data directory got the same id range")
	}
}

// TestEnsureV1Controllers moves a controller listed on a (fake) cgroup2
// mount to a v1 hierarchy. The hierarchy it mounts is the host's hugetlb
// one, mounted a second time in a temporary directory and unmounted after.
func TestEnsureV1Controllers(t *testing.T) {
	backendtest.RequireRoot(t)
	if _, err := os.Stat("/sys/fs/cgroup/hugetlb/tasks"); err != nil {
		t.Skip("no v1 hugetlb hierarchy on this host")
	}
	v2, v1 := t.TempDir(), t.TempDir()
	mounts := []cgroupMount{{path: v2, v2: true}, {path: filepath.Join(v1, "cpu"), opts: []string{"cpu"}}}

	if err := os.WriteFile(filepath.Join(v2, "cgroup.controllers"), []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ensureV1Controllers(mounts)
	if err != nil || len(got) != len(mounts) {
		t.Fatalf("with no cgroup2 controllers: %v, %v; want no change", got, err)
	}

	if err := os.WriteFile(filepath.Join(v2, "cgroup.controllers"), []byte("hugetlb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = ensureV1Controllers(mounts)
	target := filepath.Join(v1, "hugetlb")
	t.Cleanup(func() { unix.Unmount(target, 0) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].path != target || !slices.Equal(got[2].opts, []string{"hugetlb"}) {
		t.Errorf("mounts = %+v, want hugetlb at %s added", got, target)
	}
	if _, err := os.Stat(filepath.Join(target, "hugetlb.2MB.limit_in_bytes")); err != nil {
		t.Errorf("no hugetlb hierarchy at %s: %v", target, err)
	}
}
