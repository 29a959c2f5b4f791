// Package backend defines the contract between the sandbox manager and the
// machinery that actually runs sandboxes (OCI runtimes today, Kubernetes
// later). Every implementation must pass the conformance suite in
// backend/backendtest.
package backend

import (
	"context"
	"errors"
	"io"
)

// ErrNotExist is wrapped by the error of Adopt when the backend has no
// running sandbox of that id. Status reports absence as StateAbsent with a
// nil error, and Destroy of an absent sandbox returns nil.
var ErrNotExist = errors.New("sandbox does not exist in backend")

// Resources are the limits applied to one sandbox.
type Resources struct {
	// MemoryBytes caps resident memory; the kernel OOM-kills inside the
	// sandbox past it.
	MemoryBytes int64
	// MilliCPU is the CPU quota in thousandths of a core (250 = 1/4 core).
	MilliCPU int64
	// Pids caps the number of tasks (processes and threads).
	Pids int64
	// DiskBytes is the intended size of the writable layer. Backends that
	// cannot enforce it report Capabilities.DiskQuota = false.
	DiskBytes int64
}

// Spec describes a sandbox to start.
type Spec struct {
	// ID is the sandbox id, already validated by the caller; it is also
	// the hostname inside the sandbox.
	ID string
	// Rootfs is the host path of the read-only image root filesystem
	// used as the lower layer.
	Rootfs string
	// Resources are the cgroup limits.
	Resources Resources
	// Env is the environment of the agent (and so the default of every
	// command it starts).
	Env []string
	// Network is the sandbox's network policy; the zero value is
	// internet egress (on backends with Capabilities.Egress).
	Network Network
	// Upper, if set, is a snapshot stream written by Persister.Snapshot
	// (of this or an earlier sandbox of the same id) that the writable
	// layer starts from, instead of empty. Start reads it to io.EOF before
	// the sandbox runs; if reading fails (a checksum error at the end
	// included), Start fails and leaves nothing behind. Only backends
	// with Capabilities.Persistence accept it.
	Upper io.Reader
	// Agent tunes the sandbox's agent; the zero value keeps the agent's
	// defaults.
	Agent AgentOptions
}

// AgentOptions tune the agent of a sandbox. A zero field leaves the agent's
// default; Start refuses negative caps. Every backend passes them on to the
// agent it starts.
type AgentOptions struct {
	// OutputCap is the most bytes kept per output stream of a
	// non-streaming exec (agent default 16 MiB); the rest is dropped and
	// the result says so.
	OutputCap int64
	// ProcessLogCap is the most bytes kept per output stream of a
	// background process (agent default 1 MiB); older bytes are dropped.
	ProcessLogCap int64
	// InterpreterPool is how many started interpreters per language wait
	// for new code contexts (agent default 1); negative means none, so
	// every context starts its own.
	InterpreterPool int
}

// Network is the network policy of a sandbox. Whatever it says, a sandbox
// never reaches the host, other sandboxes or api.BlockedNetworks.
type Network struct {
	// None gives the sandbox a loopback interface only.
	None bool
	// Allow, when not empty, limits outbound connections to these
	// destinations; Deny refuses destinations and takes precedence.
	// Entries are IPv4 addresses, CIDR prefixes or host names as
	// api.Network.Validate accepts them; host names are resolved by Start.
	Allow, Deny []string
}

// Instance is a started sandbox.
type Instance struct {
	ID string
	// AgentSocket is the host path of the unix socket on which the
	// sandbox's agent serves its HTTP API.
	AgentSocket string
	// Pid is the host pid of the sandbox's init process (the agent).
	Pid int
}

// State is what a backend knows of a sandbox.
type State string

const (
	StateRunning State = "running"
	// StateStopped means resources exist but the init process is gone.
	StateStopped State = "stopped"
	StateAbsent  State = "absent"
)

// Capabilities describe optional features of a backend.
type Capabilities struct {
	// Name identifies the backend and runtime, e.g. "oci/crun".
	Name string
	// UserNamespace is true when sandbox root is not host root.
	UserNamespace bool
	// Seccomp is true when a syscall filter is applied.
	Seccomp bool
	// DiskQuota is true when Resources.DiskBytes is enforced.
	DiskQuota bool
	// CPULimit, MemoryLimit and PidsLimit report which cgroup limits apply.
	CPULimit, MemoryLimit, PidsLimit bool
	// Egress is true when sandboxes get outbound IPv4 and DNS and
	// Spec.Network is enforced. Without it every sandbox has a loopback
	// interface only.
	Egress bool
	// Persistence is true when the backend implements Persister and
	// accepts Spec.Upper.
	Persistence bool
}

// Persister is implemented by backends that can save a sandbox's writable
// layer and start a sandbox from it (Capabilities.Persistence).
type Persister interface {
	// Snapshot writes the writable layer of sandbox id (every file the
	// sandbox created, changed or deleted relative to its image, with
	// owners, modes, times and extended attributes) to w as a stream that
	// Spec.Upper accepts. The sandbox may be running: its processes are
	// frozen while the layer is read, so the snapshot is consistent, and
	// thawed afterwards; whether Snapshot succeeds or not, the sandbox is
	// left as it was. A sandbox whose processes are gone can be
	// snapshotted too, as long as Destroy has not removed it. An absent
	// sandbox is an error wrapping ErrNotExist. Callers serialise
	// Snapshot with the other operations on id.
	Snapshot(ctx context.Context, id string, w io.Writer) error
}

// Backend runs sandboxes.
//
// Contract:
//   - Start creates every resource of the sandbox (filesystem, namespaces,
//     cgroups, network, container) and returns once the agent's socket
//     accepts connections. If it fails it leaves nothing behind: no mount,
//     cgroup, process, network interface, firewall rule or directory.
//     Starting an id that already has resources is an error; callers
//     Destroy first.
//   - Start runs the sandbox's agent with Spec.Agent applied; negative caps
//     are an error (and leave nothing behind, like any failed Start).
//   - Destroy removes every resource of the sandbox and kills its processes.
//     It is idempotent (destroying an absent sandbox returns nil) and safe to
//     call concurrently with itself.
//   - Status never changes anything.
//   - List returns the ids of every sandbox with resources on this host,
//     including ones started by an earlier process of sbxd, so that the
//     manager can re-adopt or clean them after a restart.
//   - Adopt returns the Instance of a running sandbox started earlier, or an
//     error wrapping ErrNotExist.
//
// Implementations are safe for concurrent use on different ids. Callers
// serialise operations on one id.
type Backend interface {
	Capabilities() Capabilities
	Start(ctx context.Context, spec Spec) (*Instance, error)
	Adopt(ctx context.Context, id string) (*Instance, error)
	Destroy(ctx context.Context, id string) error
	Status(ctx context.Context, id string) (State, error)
	List(ctx context.Context) ([]string, error)
}
