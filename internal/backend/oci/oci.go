// Package oci is the sandbox backend that runs each sandbox as an OCI
// container under runc or crun.
//
// A sandbox is a directory <DataDir>/sandboxes/<id>/ holding an overlay
// (the image as lower layer, disk/upper/ and disk/work/ of its own,
// mounted on rootfs/; disk/ is the sandbox's own size-limited filesystem,
// see disk.go), the runtime bundle (bundle/config.json), the directory run/
// bound to /run/sbx inside, where the agent listens on agent.sock, and
// the agent's log. The container's init is sbx-agent, bound read-only from
// the host. The runtime keeps its state under /run/sbx/<hash>/<runtime>,
// where <hash> names the data directory, so that several sbxd instances
// (and tests) share a host without seeing each other's sandboxes.
//
// Isolation: pid, mount, uts, ipc, network (egress only, through the
// host's firewall; see network.go) and cgroup namespaces, a user namespace
// mapping sandbox root to an unprivileged host uid range (see userns.go),
// a reduced capability set, no new privileges, a seccomp filter
// (seccomp.go), masked and read-only /proc paths, read-only /sys, no host
// devices, memory, CPU and pids limits in a cgroup /sbx-<hash>/<id>, and
// a disk quota.
//
// Host setting: on a hybrid cgroup host whose cgroup2 mount carries
// controllers (systemd leaves hugetlb there), New with crun mounts a v1
// hierarchy for each such controller, because crun refuses to run
// otherwise. The mounts are left in place: crun needs them for as long as
// it runs containers.
package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/internal/backend"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/network"
)

// Config configures a Backend.
type Config struct {
	// DataDir holds the sandboxes, in <DataDir>/sandboxes/<id>/. Agent
	// sockets under long paths are reached with backend.SocketAddr.
	DataDir string
	// AgentPath is the host path of the static sbx-agent binary.
	AgentPath string
	// Runtime is "crun" or "runc", looked up in PATH.
	Runtime string
	// Logger receives diagnostics; nil means slog.Default().
	Logger *slog.Logger
	// DisableUserNamespace runs sandbox root as host root. Use it only
	// where idmapped mounts are unavailable; Capabilities reports it.
	DisableUserNamespace bool
	// DisableDiskQuota keeps every sandbox's writable layer on the data
	// directory's filesystem, unbounded, instead of on a loop-mounted
	// filesystem of Resources.DiskBytes (see disk.go); Capabilities
	// reports it. Without mkfs.ext4 or loop devices it is implied.
	DisableDiskQuota bool
	// DisableNetwork gives every sandbox a loopback interface only and
	// leaves the host's network configuration alone; Capabilities
	// reports it. See network.go.
	DisableNetwork bool
	// Subnet is the IPv4 prefix sandboxes take addresses from; the zero
	// value picks a free /22 of network.DefaultPool.
	Subnet netip.Prefix
	// Nameservers are the DNS servers of sandboxes; nil means the
	// host's.
	Nameservers []netip.Addr
}

// Backend runs sandboxes with an OCI runtime. It implements
// backend.Backend.
type Backend struct {
	log       *slog.Logger
	rt        runtimeCLI
	agent     string
	sandboxes string // <DataDir>/sandboxes
	hash      string // names this data dir in container ids, cgroups, state
	cgroups   []cgroupMount
	swap      bool
	nofile    uint64
	caps      backend.Capabilities

	// userns is a user namespace with mapping idMap, used to create the
	// idmapped lower layers; nil without user namespaces.
	userns *os.File
	idMap  idRange

	net *network.Host // nil with DisableNetwork

	disks *diskPool // formatted spare disks; nil without disk quota (disk.go)

	locks idLocks
}

var _ backend.Backend = (*Backend)(nil)

// maxIDLen is the longest sandbox id sbx accepts.
const maxIDLen = 63

// New returns a Backend for cfg. It creates <DataDir>/sandboxes, and with
// crun on a hybrid cgroup host it moves cgroup2 controllers to v1
// hierarchies (see the package comment). Call Close when done with it.
func New(cfg Config) (*Backend, error) {
	if cfg.Runtime != "crun" && cfg.Runtime != "runc" {
		return nil, fmt.Errorf("%w: OCI runtime %q is not supported; use \"crun\" or \"runc\"", errdefs.ErrInvalidArgument, cfg.Runtime)
	}
	rtPath, err := exec.LookPath(cfg.Runtime)
	if err != nil {
		return nil, fmt.Errorf("OCI runtime %s: %w; install it or choose the other runtime", cfg.Runtime, err)
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: DataDir is empty", errdefs.ErrInvalidArgument)
	}
	agent, err := filepath.Abs(cfg.AgentPath)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(agent); err != nil {
		return nil, fmt.Errorf("%w: agent binary: %w", errdefs.ErrInvalidArgument, err)
	} else if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("%w: agent binary %s is not an executable file", errdefs.ErrInvalidArgument, agent)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	// Mount points are compared with /proc/self/mountinfo, which shows
	// resolved paths.
	if err := os.MkdirAll(dataDir, 0o711); err != nil {
		return nil, err
	}
	if dataDir, err = filepath.EvalSymlinks(dataDir); err != nil {
		return nil, err
	}
	sandboxes := filepath.Join(dataDir, "sandboxes")
	if agent, err = installAgent(agent, dataDir); err != nil {
		return nil, fmt.Errorf("installing agent binary: %w", err)
	}
	if err := pruneAgents(dataDir, agent, sandboxes); err != nil {
		return nil, fmt.Errorf("removing old agent binaries: %w", err)
	}

	sum := sha256.Sum256([]byte(dataDir))
	b := &Backend{
		log:       cfg.Logger,
		agent:     agent,
		sandboxes: sandboxes,
		hash:      hex.EncodeToString(sum[:4]),
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.log = b.log.With("backend", "oci/"+cfg.Runtime)
	b.rt = runtimeCLI{name: cfg.Runtime, path: rtPath, root: filepath.Join("/run/sbx", b.hash, cfg.Runtime)}

	// 0711: a sandbox's root, mapped to an unprivileged host uid, must be
	// able to reach its rootfs and run directory, never to list others.
	if err := os.MkdirAll(sandboxes, 0o711); err != nil {
		return nil, err
	}
	if err := os.Chmod(sandboxes, 0o711); err != nil {
		return nil, err
	}

	if b.cgroups, err = cgroupMounts(); err != nil {
		return nil, fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	if cfg.Runtime == "crun" {
		if b.cgroups, err = ensureV1Controllers(b.cgroups); err != nil {
			return nil, err
		}
	}
	b.swap = swapAccounting(b.cgroups)

	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil, err
	}
	b.nofile = min(lim.Max, 1<<20)

	if !cfg.DisableUserNamespace {
		if err := b.initUserns(dataDir); err != nil {
			return nil, fmt.Errorf("user namespaces: %w (set DisableUserNamespace to run sandbox root as host root)", err)
		}
	}

	if err := b.initNetwork(cfg); err != nil {
		if b.userns != nil {
			b.userns.Close()
		}
		return nil, err
	}

	if !cfg.DisableDiskQuota {
		if mkfs, err := mkfsPath(); err != nil {
			b.log.Warn("sandboxes get no disk quota", "err", err)
		} else if b.disks, err = newDiskPool(filepath.Join(dataDir, "disks"), mkfs, b.log); err != nil {
			b.closeNetwork()
			if b.userns != nil {
				b.userns.Close()
			}
			return nil, fmt.Errorf("disk pool: %w", err)
		}
	}

	b.caps = backend.Capabilities{
		Name:          "oci/" + cfg.Runtime,
		UserNamespace: b.userns != nil,
		Seccomp:       true,
		CPULimit:      b.hasController("cpu"),
		MemoryLimit:   b.hasController("memory"),
		PidsLimit:     b.hasController("pids"),
		Egress:        b.net != nil,
		Persistence:   true,
		DiskQuota:     b.disks != nil,
	}
	return b, nil
}

// initUserns prepares idmapped lower layers: a user namespace with the data
// directory's id range and a check that the filesystem supports them, and
// that the paths the runtime opens from inside the sandbox's user
// namespace are reachable by its unprivileged root.
func (b *Backend) initUserns(dataDir string) error {
	for _, p := range []string{b.sandboxes, filepath.Dir(b.agent)} {
		for d := p; ; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				return err
			}
			if fi.Mode().Perm()&0o001 == 0 {
				return fmt.Errorf("%w: directory %s is not searchable by others (mode %v); sandbox root is an unprivileged host user that must reach %s: chmod o+x it",
					errdefs.ErrInvalidArgument, d, fi.Mode().Perm(), p)
			}
			if d == "/" {
				break
			}
		}
	}
	if fi, err := os.Stat(b.agent); err != nil {
		return err
	} else if fi.Mode().Perm()&0o005 != 0o005 {
		return fmt.Errorf("%w: agent binary %s must be readable and executable by others (mode %v)", errdefs.ErrInvalidArgument, b.agent, fi.Mode().Perm())
	}
	b.idMap = idRangeFor(dataDir)
	ns, err := newUserns(b.idMap)
	if err != nil {
		return err
	}
	if err := probeIDMap(dataDir, ns); err != nil {
		ns.Close()
		return fmt.Errorf("idmapped mounts unsupported on %s: %w", dataDir, err)
	}
	b.userns = ns
	return nil
}

func (b *Backend) hasController(name string) bool {
	for _, m := range b.cgroups {
		if m.v2 {
			raw, _ := os.ReadFile(filepath.Join(m.path, "cgroup.controllers"))
			if slices.Contains(strings.Fields(string(raw)), name) {
				return true
			}
		} else if slices.Contains(m.opts, name) {
			return true
		}
	}
	return false
}

// Close releases what the Backend holds and removes the per-data-directory
// parent cgroups and runtime state directory if no sandbox uses them.
// Sandboxes keep running. It must not be called concurrently with other
// methods.
func (b *Backend) Close() error {
	if b.userns != nil {
		b.userns.Close()
		b.userns = nil
	}
	netErr := b.closeNetwork()
	if b.disks != nil {
		if err := b.disks.close(); err != nil {
			netErr = errors.Join(netErr, err)
		}
		b.disks = nil
	}
	for _, m := range b.cgroups {
		_ = unix.Rmdir(filepath.Join(m.path, b.cgroupParent())) // busy while sandboxes run
	}
	if err := os.Remove(b.rt.root); err == nil || errors.Is(err, fs.ErrNotExist) {
		_ = os.Remove(filepath.Dir(b.rt.root))
	}
	return netErr
}

// Capabilities reports the runtime and what it enforces.
func (b *Backend) Capabilities() backend.Capabilities { return b.caps }

func (b *Backend) dir(id string) string         { return filepath.Join(b.sandboxes, id) }
func (b *Backend) containerID(id string) string { return "sbx-" + b.hash + "-" + id }
func (b *Backend) cgroupParent() string         { return "/sbx-" + b.hash }
func (b *Backend) cgroupPath(id string) string  { return b.cgroupParent() + "/" + id }
func socketPath(dir string) string              { return filepath.Join(dir, "run", "agent.sock") }

// upperDir is the overlay's upper directory in sandbox directory dir: on
// the sandbox's own filesystem when it has a disk quota (disk.go).
func upperDir(dir string) string { return filepath.Join(dir, diskDir, "upper") }

// Files in a sandbox directory.
const (
	initFile = "init"      // initProc of the container's init
	pidFile  = "pid"       // written by the runtime
	logFile  = "agent.log" // the container's stdout and stderr
)

// Start creates the sandbox and returns once its agent accepts
// connections. On failure everything created so far is removed.
func (b *Backend) Start(ctx context.Context, spec backend.Spec) (_ *backend.Instance, err error) {
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	unlock := b.locks.lock(spec.ID)
	defer unlock()

	begin := time.Now()
	dir := b.dir(spec.ID)
	cid := b.containerID(spec.ID)
	if b.rt.exists(cid) {
		return nil, fmt.Errorf("%w: sandbox %q already has a container; destroy it first", errdefs.ErrConflict, spec.ID)
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: sandbox %q already has resources; destroy it first", errdefs.ErrConflict, spec.ID)
		}
		return nil, err
	}
	defer func() {
		if err == nil {
			return
		}
		// ctx may be what failed; the cleanup needs time of its own.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		defer cancel()
		if cerr := b.destroy(cctx, spec.ID); cerr != nil {
			b.log.Error("clean up after failed start", "id", spec.ID, "err", cerr)
		}
	}()

	inst, err := b.start(ctx, spec, dir, cid)
	if err != nil {
		return nil, fmt.Errorf("start sandbox %q: %w", spec.ID, err)
	}
	b.log.Debug("sandbox started", "id", spec.ID, "pid", inst.Pid, "took", time.Since(begin))
	return inst, nil
}

func (b *Backend) start(ctx context.Context, spec backend.Spec, dir, cid string) (*backend.Instance, error) {
	var (
		upper  = upperDir(dir)
		work   = filepath.Join(dir, diskDir, "work")
		rootfs = filepath.Join(dir, "rootfs")
		run    = filepath.Join(dir, "run")
		bundle = filepath.Join(dir, "bundle")
		lower  = spec.Rootfs
	)
	// Made here rather than in New, so that a Backend that never runs a
	// sandbox leaves nothing in /run (and after another Backend's Close).
	if err := os.MkdirAll(b.rt.root, 0o700); err != nil {
		return nil, err
	}
	if b.disks != nil && spec.Resources.DiskBytes > 0 {
		if _, err := b.makeDisk(ctx, dir, spec.Resources.DiskBytes); err != nil {
			return nil, fmt.Errorf("writable layer of %d bytes: %w", spec.Resources.DiskBytes, err)
		}
	} else if err := os.Mkdir(filepath.Join(dir, diskDir), 0o711); err != nil {
		return nil, err
	}
	for _, d := range []string{upper, work, rootfs, run, bundle} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if b.userns != nil {
		// The sandbox's root must own its / (the upper layer's root
		// directory) and the directory it creates its socket in.
		for _, d := range []string{upper, run} {
			if err := os.Chown(d, int(b.idMap.host), int(b.idMap.host)); err != nil {
				return nil, err
			}
		}
		lower = filepath.Join(dir, "lower")
		if err := os.Mkdir(lower, 0o700); err != nil {
			return nil, err
		}
		if err := mountIDMapped(spec.Rootfs, lower, int(b.userns.Fd())); err != nil {
			return nil, err
		}
	}
	if spec.Upper != nil {
		if err := b.restoreUpper(spec.Upper, upper); err != nil {
			return nil, err
		}
	}
	if err := mountOverlay(lower, upper, work, rootfs); err != nil {
		return nil, err
	}
	if b.userns != nil {
		// overlayfs holds private clones of its layers; the attached
		// idmapped tree is no longer needed.
		if err := unmount(lower); err != nil {
			return nil, err
		}
		if err := os.Remove(lower); err != nil {
			return nil, err
		}
	}

	att, netMounts, err := b.prepareNetwork(ctx, spec, dir)
	if err != nil {
		return nil, err
	}
	cfg, err := buildSpec(spec, specParams{
		rootfs:         rootfs,
		agent:          b.agent,
		runDir:         run,
		cgroupsPath:    b.cgroupPath(spec.ID),
		idMap:          b.idMapPtr(),
		swapAccounting: b.swap,
		nofile:         b.nofile,
		extraMounts:    netMounts,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o600); err != nil {
		return nil, err
	}

	log, err := os.OpenFile(filepath.Join(dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	err = b.rt.run(ctx, cid, bundle, filepath.Join(dir, pidFile), log)
	log.Close()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	p, err := b.recordInit(dir)
	if err != nil {
		return nil, err
	}
	// The network is plugged in while the agent comes up; both are done
	// before anyone gets the sandbox.
	netDone := make(chan error, 1)
	go func() { netDone <- b.connectNetwork(ctx, att, p) }()
	sock := socketPath(dir)
	err = waitAgent(ctx, p, sock)
	if nerr := <-netDone; nerr != nil && err == nil {
		return nil, nerr
	}
	if err != nil {
		if msg := strings.TrimSpace(string(tail(filepath.Join(dir, logFile), 1024))); msg != "" {
			err = fmt.Errorf("%w; agent log: %s", err, msg)
		}
		return nil, err
	}
	return &backend.Instance{ID: spec.ID, AgentSocket: sock, Pid: p.pid}, nil
}

func (b *Backend) idMapPtr() *idRange {
	if b.userns == nil {
		return nil
	}
	m := b.idMap
	return &m
}

// recordInit reads the pid the runtime wrote and stores it with its start
// time, which later tells the process from a successor with the same pid.
func (b *Backend) recordInit(dir string) (initProc, error) {
	raw, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return initProc{}, fmt.Errorf("read container pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return initProc{}, fmt.Errorf("runtime wrote a malformed pid file %q", raw)
	}
	_, start, err := procStat(pid)
	if err != nil {
		return initProc{}, fmt.Errorf("sandbox init %d exited during start: %w", pid, err)
	}
	p := initProc{pid: pid, start: start}
	// Written aside and renamed: a crash leaves the record whole or absent.
	tmp := filepath.Join(dir, initFile+".tmp")
	if err := os.WriteFile(tmp, []byte(p.String()), 0o600); err != nil {
		return initProc{}, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, initFile)); err != nil {
		return initProc{}, err
	}
	return p, nil
}

// waitAgent polls the agent's socket until it accepts a connection, the
// agent exits or ctx ends. The 1 ms pause is a poll on the agent's pidfd,
// so an agent that dies is noticed at once.
func waitAgent(ctx context.Context, p initProc, sock string) error {
	pidfd, err := p.open()
	if err != nil {
		return err
	}
	if pidfd < 0 {
		return fmt.Errorf("agent (pid %d) exited during start", p.pid)
	}
	defer unix.Close(pidfd)
	name, release, err := backend.SocketAddr(sock)
	if err != nil {
		return err
	}
	defer release()
	addr := &unix.SockaddrUnix{Name: name}
	for {
		s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = unix.Connect(s, addr)
		unix.Close(s)
		if err == nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("agent did not listen on %s: %w", sock, err)
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if n > 0 {
			return fmt.Errorf("agent (pid %d) exited during start", p.pid)
		}
	}
}

// Destroy kills the sandbox and removes every resource it has. It is
// idempotent.
func (b *Backend) Destroy(ctx context.Context, id string) error {
	if err := validateID(id); err != nil {
		return err
	}
	unlock := b.locks.lock(id)
	defer unlock()
	begin := time.Now()
	if err := b.destroy(ctx, id); err != nil {
		return fmt.Errorf("destroy sandbox %q: %w", id, err)
	}
	b.log.Debug("sandbox destroyed", "id", id, "took", time.Since(begin))
	return nil
}

// destroy removes whatever exists of sandbox id, in the reverse order of
// Start, and goes on past failures so that a retry has less to do.
func (b *Backend) destroy(ctx context.Context, id string) error {
	dir := b.dir(id)
	cid := b.containerID(id)
	var errs []error

	// Kill the init ourselves, and wait for it on a pidfd: runc's
	// `delete --force` polls for the death in 100 ms steps.
	killed := false
	if p, err := readInit(dir); err == nil {
		if err := p.kill(ctx); err != nil {
			errs = append(errs, err)
		} else {
			killed = true
		}
	}
	if b.rt.exists(cid) {
		err := b.rt.delete(ctx, cid, !killed)
		if err != nil && killed {
			err = b.rt.delete(ctx, cid, true)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}

	mounts, err := mountsUnder(dir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range slices.Backward(mounts) {
		if err := unmount(m); err != nil {
			errs = append(errs, err)
		}
	}

	deadline := time.Now().Add(time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// A runtime killed half-way through `run` (a cancelled Start) can
	// leave a container process that no state file names; the cgroup
	// does.
	killCgroupProcs(b.cgroups, b.cgroupPath(id))
	if err := removeCgroup(b.cgroups, b.cgroupPath(id), deadline); err != nil {
		errs = append(errs, err)
	}
	if err := b.releaseNetwork(ctx, id); err != nil {
		errs = append(errs, err)
	}

	// Never remove files through a mount that is still there: the
	// lower layer is the shared image.
	if left, err := mountsUnder(dir); err != nil || len(left) > 0 {
		errs = append(errs, fmt.Errorf("%s still has mounts %v (%v); leaving it in place", dir, left, err))
	} else if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func readInit(dir string) (initProc, error) {
	raw, err := os.ReadFile(filepath.Join(dir, initFile))
	if err != nil {
		return initProc{}, err
	}
	return parseInitProc(raw)
}

// Status reports whether the sandbox runs, has resources without a live
// init, or does not exist. It reads two small files and starts no process.
func (b *Backend) Status(ctx context.Context, id string) (backend.State, error) {
	if err := validateID(id); err != nil {
		return "", err
	}
	dir := b.dir(id)
	p, err := readInit(dir)
	if err == nil {
		if p.alive() {
			return backend.StateRunning, nil
		}
		return backend.StateStopped, nil
	}
	// No usable init record: a start in progress or one that failed
	// midway. Whatever exists is a stopped sandbox for Destroy to clear.
	_, dirErr := os.Lstat(dir)
	if dirErr == nil || b.rt.exists(b.containerID(id)) {
		return backend.StateStopped, nil
	}
	if !errors.Is(dirErr, fs.ErrNotExist) {
		return "", dirErr
	}
	return backend.StateAbsent, nil
}

// Adopt returns the Instance of a running sandbox, typically one started by
// an earlier sbxd process.
func (b *Backend) Adopt(ctx context.Context, id string) (*backend.Instance, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	dir := b.dir(id)
	p, err := readInit(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("adopt sandbox %q: %w", id, backend.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("adopt sandbox %q: unusable init record (%v): %w", id, err, backend.ErrNotExist)
	}
	if !p.alive() {
		return nil, fmt.Errorf("adopt sandbox %q: its agent (pid %d) is gone: %w", id, p.pid, backend.ErrNotExist)
	}
	return &backend.Instance{ID: id, AgentSocket: socketPath(dir), Pid: p.pid}, nil
}

// List returns the ids of the sandboxes of this data directory that have a
// directory or a container.
func (b *Backend) List(ctx context.Context) ([]string, error) {
	var ids []string
	entries, err := os.ReadDir(b.sandboxes)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() && validateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	cids, err := b.rt.list()
	if err != nil {
		return nil, err
	}
	netIDs, err := b.networkIDs()
	if err != nil {
		return nil, err
	}
	for _, id := range netIDs {
		if validateID(id) == nil {
			ids = append(ids, id)
		}
	}
	prefix := b.containerID("")
	for _, c := range cids {
		if id, ok := strings.CutPrefix(c, prefix); ok && validateID(id) == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

func validateSpec(s backend.Spec) error {
	if err := validateID(s.ID); err != nil {
		return err
	}
	if !filepath.IsAbs(s.Rootfs) {
		return fmt.Errorf("%w: rootfs %q is not an absolute path", errdefs.ErrInvalidArgument, s.Rootfs)
	}
	fi, err := os.Stat(s.Rootfs)
	if err != nil {
		return fmt.Errorf("%w: rootfs %s: %w", errdefs.ErrImageNotFound, s.Rootfs, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: rootfs %s is not a directory", errdefs.ErrImageNotFound, s.Rootfs)
	}
	if _, err := resources(s.Resources, false); err != nil {
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	for _, kv := range s.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("%w: environment entry %q is not KEY=value", errdefs.ErrInvalidArgument, kv)
		}
	}
	return nil
}

// validateID accepts what can safely name a directory, a container and a
// cgroup. Callers validate ids more strictly; this guards the file system.
func validateID(id string) error {
	if id == "" || len(id) > maxIDLen || id == "." || id == ".." {
		return fmt.Errorf("%w: %q must be 1-%d characters", errdefs.ErrInvalidSandboxID, id, maxIDLen)
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: %q may contain only letters, digits, '-', '_' and '.'", errdefs.ErrInvalidSandboxID, id)
		}
	}
	return nil
}

// idLocks serialises operations on one sandbox id. Entries live only while
// someone holds or waits for them.
type idLocks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	mu   sync.Mutex
	refs int
}

func (l *idLocks) lock(id string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*idLock)
	}
	e := l.m[id]
	if e == nil {
		e = &idLock{}
		l.m[id] = e
	}
	e.refs++
	l.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}
