package backend

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSunPath is the longest path a unix socket address holds (108 bytes
// with the terminating NUL).
const maxSunPath = 107

// SocketAddr returns an address by which the unix socket at path can be
// reached even when path is longer than a socket address allows: such paths
// are reached through /proc/self/fd/N/NAME, N being an O_PATH descriptor of
// the socket's directory. Call release when done connecting.
func SocketAddr(path string) (addr string, release func(), err error) {
	if len(path) <= maxSunPath {
		return path, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open socket directory: %w", err)
	}
	addr = fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	if len(addr) > maxSunPath {
		unix.Close(fd)
		return "", nil, fmt.Errorf("socket name %q is too long", filepath.Base(path))
	}
	return addr, func() { unix.Close(fd) }, nil
}

// DialAgent connects to the agent socket at path, whatever its length.
func DialAgent(ctx context.Context, path string) (net.Conn, error) {
	addr, release, err := SocketAddr(path)
	if err != nil {
		return nil, err
	}
	defer release()
	var d net.Dialer
	return d.DialContext(ctx, "unix", addr)
}
