package oci

import (
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sbx-dev/sbx/internal/backend"
)

// Paths inside the sandbox.
const (
	agentInSandbox  = "/.sbx/sbx-agent"
	runInSandbox    = "/run/sbx"
	socketInSandbox = runInSandbox + "/agent.sock"
)

// cpuPeriod is the CFS period the CPU quota is expressed in (100 ms, the
// kernel default), and minQuota the smallest quota the kernel accepts.
const (
	cpuPeriod = 100_000
	minQuota  = 1_000
)

// defaultEnv is the agent's environment before Spec.Env is applied.
var defaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
	"TERM=xterm-256color",
}

// sandboxCaps is the capability set of the agent and so of everything it
// runs: the set containerd and Docker grant by default, less CAP_NET_RAW
// (raw sockets forge packets) and CAP_MKNOD (the device cgroup is the only
// thing between a device node and the host disk).
var sandboxCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// maskedPaths are hidden (bound to /dev/null or an empty read-only tmpfs):
// they leak host details or offer kernel interfaces the sandbox must not
// use. The list is runc's and containerd's default.
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore",
	"/proc/keys", "/proc/latency_stats", "/proc/timer_list",
	"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

// readonlyPaths are remounted read-only: writes there change the host
// kernel, not the sandbox.
var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// specParams is everything buildSpec needs besides the backend.Spec.
type specParams struct {
	// rootfs is the host path of the mounted overlay.
	rootfs string
	// agent is the host path of the sbx-agent binary.
	agent string
	// runDir is the host directory bound to /run/sbx.
	runDir string
	// cgroupsPath is linux.cgroupsPath, absolute.
	cgroupsPath string
	// idMap, when non-nil, puts the sandbox in a user namespace with this
	// mapping for both uids and gids.
	idMap *idRange
	// swapAccounting is true when the host can limit memory+swap.
	swapAccounting bool
	// nofile is the RLIMIT_NOFILE of the agent.
	nofile uint64
	// extraMounts are added after the default ones (network.go).
	extraMounts []specs.Mount
}

// buildSpec returns the OCI runtime configuration of a sandbox.
func buildSpec(s backend.Spec, p specParams) (*specs.Spec, error) {
	res, err := resources(s.Resources, p.swapAccounting)
	if err != nil {
		return nil, err
	}
	args, err := agentArgs(s.Agent)
	if err != nil {
		return nil, err
	}
	namespaces := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.NetworkNamespace},
		{Type: specs.CgroupNamespace},
	}
	spec := &specs.Spec{
		// The newest version both runc 1.1 and crun 1.8 were built for;
		// nothing here needs a later one.
		Version: "1.0.2",
		Root:    &specs.Root{Path: p.rootfs},
		Process: &specs.Process{
			User: specs.User{UID: 0, GID: 0},
			Args: args,
			Env:  mergeEnv(defaultEnv, s.Env),
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  sandboxCaps,
				Effective: sandboxCaps,
				Permitted: sandboxCaps,
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: p.nofile, Soft: p.nofile},
			},
			NoNewPrivileges: true,
		},
		Hostname: s.ID,
		Mounts:   mounts(p),
		Linux: &specs.Linux{
			Resources:     res,
			CgroupsPath:   p.cgroupsPath,
			Namespaces:    namespaces,
			Seccomp:       defaultSeccomp(),
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
		},
	}
	if p.idMap != nil {
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: p.idMap.host, Size: p.idMap.size}}
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		spec.Linux.UIDMappings = m
		spec.Linux.GIDMappings = m
	}
	return spec, nil
}

// agentArgs is the agent's command line. Only options that are set become
// flags, so unset ones keep the agent's defaults.
func agentArgs(o backend.AgentOptions) ([]string, error) {
	if o.OutputCap < 0 || o.ProcessLogCap < 0 {
		return nil, fmt.Errorf("agent output caps must not be negative (exec output %d, process log %d)",
			o.OutputCap, o.ProcessLogCap)
	}
	args := []string{agentInSandbox, "--socket", socketInSandbox}
	if o.OutputCap > 0 {
		args = append(args, "--output-cap", strconv.FormatInt(o.OutputCap, 10))
	}
	if o.ProcessLogCap > 0 {
		args = append(args, "--process-log-cap", strconv.FormatInt(o.ProcessLogCap, 10))
	}
	switch {
	case o.InterpreterPool > 0:
		args = append(args, "--interpreter-pool", strconv.Itoa(o.InterpreterPool))
	case o.InterpreterPool < 0:
		args = append(args, "--interpreter-pool", "0")
	}
	return args, nil
}

func mounts(p specParams) []specs.Mount {
	return append([]specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		{Destination: agentInSandbox, Type: "bind", Source: p.agent, Options: []string{"bind", "ro", "nosuid", "nodev"}},
		{Destination: runInSandbox, Type: "bind", Source: p.runDir, Options: []string{"bind", "rw", "nosuid", "nodev", "noexec"}},
	}, p.extraMounts...)
}

// resources converts sandbox limits to cgroup settings. Zero means no
// limit; the device list denies everything but the runtime's defaults.
func resources(r backend.Resources, swapAccounting bool) (*specs.LinuxResources, error) {
	if r.MemoryBytes < 0 || r.MilliCPU < 0 || r.Pids < 0 || r.DiskBytes < 0 {
		return nil, fmt.Errorf("resource limits must not be negative (memory %d, milliCPU %d, pids %d, disk %d)",
			r.MemoryBytes, r.MilliCPU, r.Pids, r.DiskBytes)
	}
	res := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if r.MemoryBytes > 0 {
		limit := r.MemoryBytes
		res.Memory = &specs.LinuxMemory{Limit: &limit}
		if swapAccounting {
			// memory+swap equal to memory: the sandbox cannot swap, so
			// its limit is what it gets and the host's swap stays the
			// host's.
			swap := r.MemoryBytes
			res.Memory.Swap = &swap
		}
	}
	if r.MilliCPU > 0 {
		quota := max(r.MilliCPU*cpuPeriod/1000, minQuota)
		period := uint64(cpuPeriod)
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if r.Pids > 0 {
		pids := r.Pids
		res.Pids = &specs.LinuxPids{Limit: &pids}
	}
	return res, nil
}

// mergeEnv returns base with every KEY=value of over applied: a key in
// over replaces the same key in base, the rest are appended in order.
func mergeEnv(base, over []string) []string {
	out := make([]string, 0, len(base)+len(over))
	index := make(map[string]int, len(base)+len(over))
	for _, list := range [][]string{base, over} {
		for _, kv := range list {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := index[k]; ok {
				out[i] = kv
				continue
			}
			index[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}
