package oci

import (
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM inside every sandbox. The profile allows
// everything else: like Docker's, it exists to shut the kernel interfaces a
// sandbox has no business with and that are a common source of privilege
// escalations, while the dropped capabilities and the namespaces do the rest.
// Names unknown to the runtime's libseccomp (newer syscalls) are skipped by
// runc and crun alike.
var deniedSyscalls = []string{
	// Kernel modules.
	"init_module", "finit_module", "delete_module", "create_module",
	"query_module", "get_kernel_syms",
	// Keyrings are not namespaced.
	"add_key", "request_key", "keyctl",
	// Mounts: a sandbox's filesystem layout is fixed at start.
	"mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree",
	"fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	// Namespaces: no new user namespaces (see cloneRules) and no joining.
	"setns",
	// Kernel attack surface with no use in a sandbox.
	"bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
	"io_uring_enter", "io_uring_register", "lookup_dcookie", "nfsservctl",
	"uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old",
	// Host-wide state.
	"kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
	"settimeofday", "stime", "clock_settime", "clock_settime64",
	"clock_adjtime", "clock_adjtime64", "acct", "quotactl", "quotactl_fd",
	"syslog", "vhangup",
	// Raw I/O port access.
	"iopl", "ioperm",
	// File handles bypass path-based confinement ("shocker").
	"open_by_handle_at",
}

// defaultSeccomp returns the sandbox syscall filter.
func defaultSeccomp() *specs.LinuxSeccomp {
	eperm := uint(unix.EPERM)
	enosys := uint(unix.ENOSYS)
	newUser := uint64(unix.CLONE_NEWUSER)
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		// Only the native architecture: the runtime's libseccomp refuses
		// syscalls of other ABIs (i386 int 0x80, x32) outright, so the
		// deny list cannot be sidestepped through a compat entry point.
		Architectures: nativeArch(),
		Syscalls: []specs.LinuxSyscall{
			{Names: deniedSyscalls, Action: specs.ActErrno, ErrnoRet: &eperm},
			// clone3 passes its flags in memory that a filter cannot
			// read; ENOSYS makes glibc fall back to clone, where the
			// flags are an argument the next rules can check.
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		},
	}
	// clone and unshare with CLONE_NEWUSER would hand the caller every
	// capability in a fresh user namespace and with it mount, netfilter
	// and other interfaces the sandbox must not reach. The flags are the
	// first argument of both on amd64 and arm64.
	for _, name := range []string{"clone", "unshare"} {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names:    []string{name},
			Action:   specs.ActErrno,
			ErrnoRet: &eperm,
			Args: []specs.LinuxSeccompArg{{
				Index: 0, Value: newUser, ValueTwo: newUser, Op: specs.OpMaskedEqual,
			}},
		})
	}
	return s
}

func nativeArch() []specs.Arch {
	switch runtime.GOARCH {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64}
	case "arm64":
		return []specs.Arch{specs.ArchAARCH64}
	}
	return nil // the runtime then uses its native architecture only
}
