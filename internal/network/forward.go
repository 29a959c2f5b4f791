package network

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Host-wide state shared by every sbx instance on the machine lives in
// runDir, a tmpfs directory the OCI backend also uses: it dies with a
// reboot, as the kernel settings it records do.
//
//   - The directory itself is flock(2)ed around every change of host-wide
//     state (bridges, subnets, IP forwarding), so concurrent instances do
//     not pick the same subnet or undo each other's forwarding.
//   - ip_forward.orig holds net.ipv4.ip_forward as it was before the first
//     instance turned it on; ip_forward.users/<name> marks each instance
//     that needs it. The last one out restores the original value.
var runDir = "/run/sbx"

const ipForward = "net/ipv4/ip_forward"

// hostLock holds the host-wide lock until release is called.
func hostLock() (release func(), err error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(runDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", runDir, err)
	}
	return func() { unix.Close(fd) }, nil
}

func forwardUsers() string { return filepath.Join(runDir, "ip_forward.users") }
func forwardOrig() string  { return filepath.Join(runDir, "ip_forward.orig") }

// acquireForwarding turns IPv4 forwarding on for instance name, recording
// the original setting when it is the first user. Caller holds hostLock.
func acquireForwarding(name string) error {
	cur, err := os.ReadFile("/proc/sys/" + ipForward)
	if err != nil {
		return err
	}
	if _, err := os.Stat(forwardOrig()); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(forwardOrig(), cur, 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(forwardUsers(), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(forwardUsers(), name), nil, 0o644); err != nil {
		return err
	}
	if strings.TrimSpace(string(cur)) != "1" {
		return writeSysctl(ipForward, "1")
	}
	return nil
}

// releaseForwarding drops instance name's claim. When no instance with a
// bridge is left it restores the original setting and removes the
// records. Caller holds hostLock.
func releaseForwarding(name string) error {
	if err := os.Remove(filepath.Join(forwardUsers(), name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	entries, err := os.ReadDir(forwardUsers())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		// An instance that crashed and whose bridge is gone needs
		// nothing any more.
		if _, err := netlink.LinkByName(bridgeName(e.Name())); err == nil {
			return nil
		}
		_ = os.Remove(filepath.Join(forwardUsers(), e.Name()))
	}
	if orig, err := os.ReadFile(forwardOrig()); err == nil {
		if v := string(bytes.TrimSpace(orig)); v == "0" || v == "1" {
			if err := writeSysctl(ipForward, v); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	_ = os.Remove(forwardOrig())
	_ = os.Remove(forwardUsers())
	return nil
}
