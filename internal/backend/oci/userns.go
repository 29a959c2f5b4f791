package oci

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// idRange is a block of host uids (and the same gids) that a sandbox's
// user namespace maps to 0…size-1.
type idRange struct {
	host, size uint32
}

// Host id ranges for sandboxes: 65536 ids (a full 16-bit uid space, what
// images assume) starting at 2^30 plus a multiple of 65536 picked from the
// data directory, so that two sbxd instances on one host use distinct
// ranges and neither collides with the 100000-based ranges useradd hands
// out in /etc/subuid.
const (
	idRangeSize  = 1 << 16
	idRangeBase  = 1 << 30
	idRangeSlots = 1 << 13 // keeps the top of every range below 2^31
)

func idRangeFor(dataDir string) idRange {
	sum := sha256.Sum256([]byte(dataDir))
	slot := binary.BigEndian.Uint32(sum[:4]) % idRangeSlots
	return idRange{host: idRangeBase + slot*idRangeSize, size: idRangeSize}
}

// newUserns returns an fd of a fresh user namespace with m as its uid and
// gid mapping, for idmapped mounts. Go cannot unshare a user namespace in
// its multi-threaded process, so a short-lived /bin/sh is started in one
// and holds it while its namespace file is opened.
func newUserns(m idRange) (*os.File, error) {
	mapping := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.host), Size: int(m.size)}}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	defer w.Close()
	cmd := exec.Command("/bin/sh", "-c", "read _")
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: mapping,
		GidMappings: mapping,
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start user namespace holder: %w", err)
	}
	// The child blocks reading the pipe, so its pid is still its own
	// while the namespace is opened; the open fd keeps the namespace
	// alive after the child is gone.
	ns, openErr := os.Open("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/user")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if openErr != nil {
		return nil, fmt.Errorf("open user namespace: %w", openErr)
	}
	return ns, nil
}

// probeIDMap reports whether the filesystem holding dir supports idmapped
// mounts, by creating one and throwing it away.
func probeIDMap(dir string, userns *os.File) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return &os.PathError{Op: "open_tree", Path: dir, Err: err}
	}
	defer unix.Close(fd) // closing a detached tree unmounts it
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return &os.PathError{Op: "mount_setattr idmap", Path: dir, Err: err}
	}
	return nil
}
