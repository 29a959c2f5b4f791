package image

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountEntry is the part of a mountinfo line this package uses. Mount
// tables are read from /proc/thread-self: inMountNamespace may have moved
// the process's main thread into a private namespace for good (a locked
// goroutine that ends on the main thread wedges it there), and
// /proc/self shows the main thread's view.
type mountEntry struct {
	Point   string // mount point, unescaped
	FSType  string
	Options string // super block options, e.g. "lowerdir=...,upperdir=..."
}

// parseMountInfo parses the format of /proc/PID/mountinfo (see proc(5)).
func parseMountInfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			return nil, fmt.Errorf("malformed mountinfo line %q", sc.Text())
		}
		out = append(out, mountEntry{Point: unescapeOctal(f[4]), FSType: g[0], Options: g[2]})
	}
	return out, sc.Err()
}

// unescapeOctal undoes the \ooo escaping the kernel applies to white space
// and backslashes in mountinfo paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readMountInfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountInfo(f)
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// mountsUnder returns the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	ms, err := readMountInfo()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if within(m.Point, dir) {
			out = append(out, m.Point)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, nil
}

// removeTree deletes dir and everything in it, after unmounting whatever is
// mounted below it. Builds mount only in a private mount namespace, so this
// normally finds nothing; it is the safety net that keeps RemoveAll from
// ever descending into a mounted /proc or /dev.
func removeTree(dir string) error {
	dir = filepath.Clean(dir)
	for range 3 { // stacked mounts come off one layer per pass
		points, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(points) == 0 {
			return os.RemoveAll(dir)
		}
		for _, p := range points {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
		}
	}
	return fmt.Errorf("refusing to delete %s: filesystems stay mounted below it", dir)
}

// overlayUsers counts the overlay mounts that use dir (or a directory below
// it) as a lower layer. The kernel reports the lowerdir paths as they were
// given at mount time.
func overlayUsers(dir string) (int, error) {
	ms, err := readMountInfo()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range ms {
		if m.FSType == "overlay" && usesLower(m.Options, dir) {
			n++
		}
	}
	return n, nil
}

func usesLower(options, dir string) bool {
	for _, opt := range strings.Split(options, ",") {
		k, v, ok := strings.Cut(opt, "=")
		if !ok || (k != "lowerdir" && k != "lowerdir+" && k != "datadir+") {
			continue
		}
		for _, l := range strings.Split(v, ":") {
			if within(filepath.Clean(unescapeOctal(l)), dir) {
				return true
			}
		}
	}
	return false
}

// inMountNamespace runs fn on an OS thread of its own that has been moved
// into a new private mount namespace. Everything fn mounts, and everything
// mounted by the processes it starts (os/exec forks from the calling
// thread), lives only in that namespace: the host never sees it, and the
// kernel tears it all down when the thread and its children are gone, even
// if this process is killed. The thread is never returned to the Go
// scheduler; it exits with fn.
func inMountNamespace(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // deliberately never unlocked: the thread dies with its namespace
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("create mount namespace: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make mounts private: %w", err)
			}
			return fn()
		}()
	}()
	return <-errc
}

// mountChrootFS mounts what package scripts expect inside root: /proc,
// /sys (read-only) and a /dev tmpfs with the usual device nodes, so that
// nothing of the host's /dev is reachable from the chroot. It must run in
// the namespace of inMountNamespace; the returned function unmounts.
func mountChrootFS(root string) (unmount func(), err error) {
	var points []string
	unmount = func() {
		for _, p := range slices.Backward(points) {
			_ = unix.Unmount(p, unix.MNT_DETACH)
		}
	}
	defer func() {
		if err != nil {
			unmount()
		}
	}()
	mnt := func(src, rel, fstype string, flags uintptr, data string) error {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(src, p, fstype, flags, data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", fstype, p, err)
		}
		points = append(points, p)
		return nil
	}
	if err := mnt("proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, err
	}
	if err := mnt("sysfs", "sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, ""); err != nil {
		return nil, err
	}
	if err := mnt("sbx-dev", "dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755,size=1m"); err != nil {
		return nil, err
	}
	dev := filepath.Join(root, "dev")
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		p := filepath.Join(dev, d.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return nil, fmt.Errorf("mknod %s: %w", p, err)
		}
		if err := os.Chmod(p, 0o666); err != nil { // mknod's mode is cut by the umask
			return nil, err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return nil, err
		}
	}
	if err := mnt("devpts", "dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620"); err != nil {
		return nil, err
	}
	if err := os.Symlink("pts/ptmx", filepath.Join(dev, "ptmx")); err != nil {
		return nil, err
	}
	return unmount, nil
}
