package oci

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupMount is one mounted cgroup hierarchy.
type cgroupMount struct {
	path string
	v2   bool
	// opts are the super options of a v1 hierarchy: its controllers,
	// "name=…" for named ones.
	opts []string
}

// cgroupMounts lists the cgroup hierarchies mounted in this mount
// namespace.
func cgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cgroupMount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional…] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 {
			continue
		}
		switch tail[0] {
		case "cgroup":
			var opts []string
			for _, o := range strings.Split(tail[2], ",") {
				if o != "rw" && o != "ro" && !strings.HasPrefix(o, "release_agent") {
					opts = append(opts, o)
				}
			}
			out = append(out, cgroupMount{path: unescapeMountinfo(fields[4]), opts: opts})
		case "cgroup2":
			out = append(out, cgroupMount{path: unescapeMountinfo(fields[4]), v2: true})
		}
	}
	return out, sc.Err()
}

// ensureV1Controllers moves every controller that sits on the cgroup2
// mount of a hybrid host to a v1 hierarchy of its own.
//
// crun 1.8 refuses to run on a hybrid host whose cgroup2 mount has any
// controller enabled ("cgroups in hybrid mode not supported"). Systemd
// hosts leave hugetlb there when it is not mounted as v1. Mounting a v1
// hierarchy for it takes it off cgroup2; the mount is a host setting that
// must stay as long as crun runs containers, so it is left in place. It is
// a no-op on pure v1 or pure v2 hosts and when already done.
func ensureV1Controllers(mounts []cgroupMount) ([]cgroupMount, error) {
	var v2 string
	var v1Base string
	for _, m := range mounts {
		if m.v2 {
			v2 = m.path
		} else if v1Base == "" {
			v1Base = filepath.Dir(m.path)
		}
	}
	if v2 == "" || v1Base == "" {
		return mounts, nil
	}
	raw, err := os.ReadFile(filepath.Join(v2, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("read cgroup2 controllers: %w", err)
	}
	for _, c := range strings.Fields(string(raw)) {
		dir := filepath.Join(v1Base, c)
		if err := os.Mkdir(dir, 0o555); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("move cgroup controller %s off cgroup2 for crun: %w", c, err)
		}
		if err := unix.Mount("cgroup", dir, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, c); err != nil {
			return nil, fmt.Errorf("move cgroup controller %s off cgroup2 for crun: mount v1 hierarchy at %s: %w", c, dir, err)
		}
		mounts = append(mounts, cgroupMount{path: dir, opts: []string{c}})
	}
	return mounts, nil
}

// removeCgroup removes the cgroup rel (absolute within each hierarchy) from
// every hierarchy. A cgroup whose last task is still exiting is busy for a
// moment; that is retried until deadline.
func removeCgroup(mounts []cgroupMount, rel string, deadline time.Time) error {
	var errs []error
	for _, m := range mounts {
		dir := filepath.Join(m.path, rel)
		for {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if errors.Is(err, unix.EBUSY) && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
				continue
			}
			errs = append(errs, &os.PathError{Op: "rmdir cgroup", Path: dir, Err: err})
			break
		}
	}
	return errors.Join(errs...)
}

// killCgroupProcs sends SIGKILL to every process in cgroup rel. Normally
// there is none left: the sandbox's init has died and taken its pid
// namespace with it.
func killCgroupProcs(mounts []cgroupMount, rel string) {
	for _, m := range mounts {
		raw, err := os.ReadFile(filepath.Join(m.path, rel, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(raw)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
}

// swapAccounting reports whether memory+swap can be limited.
func swapAccounting(mounts []cgroupMount) bool {
	for _, m := range mounts {
		if m.v2 {
			continue
		}
		for _, o := range m.opts {
			if o == "memory" {
				_, err := os.Stat(filepath.Join(m.path, "memory.memsw.limit_in_bytes"))
				return err == nil
			}
		}
	}
	for _, m := range mounts {
		if m.v2 {
			_, err := os.Stat(filepath.Join(m.path, "memory.swap.max"))
			if err == nil {
				return true
			}
			// The root cgroup has no memory.swap.max; a child would.
			raw, _ := os.ReadFile(filepath.Join(m.path, "cgroup.controllers"))
			return strings.Contains(string(raw), "memory")
		}
	}
	return false
}
