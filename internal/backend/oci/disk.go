package oci

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Disk quota. A sandbox with Resources.DiskBytes keeps its writable layer
// (upper/ and work/) on a filesystem of exactly that size: a sparse file,
// <dir>/disk.img, formatted ext4 and mounted through a loop device at
// <dir>/disk. Filling it gives the sandbox ENOSPC and leaves the host's
// disk alone; `df /` inside shows the size.
//
// Why not quotas on the data directory's own filesystem: project quotas
// need a filesystem mounted with them (and a kernel with CONFIG_QUOTA,
// which this kind of machine lacks), and cannot be switched on under a
// running host. A loop filesystem works on any host with loop devices.
//
// What it costs, measured: mkfs.ext4 of an 8 GB sparse file, without
// journal or reserved growth blocks and with lazily initialised inode
// tables, takes ~5 ms and allocates under 1 MiB, and is done ahead of time
// (diskPool); the loop device and the mount are a few ioctls. The file
// stays sparse: the sandbox's writes allocate it, and mounting with
// discard punches the blocks of deleted files back out. No journal,
// because the overlay on top is volatile and a sandbox's writable layer
// never outlives a host crash (see mountOverlay). The image is written
// only by the kernel on behalf of the sandbox's file operations; the
// sandbox never sees the raw file.
//
// The loop device is set to clear itself on the last unmount, so
// unmounting <dir>/disk (which destroy does for every mount under the
// sandbox's directory) releases the device too.

// diskImage and diskDir are names in a sandbox directory.
const (
	diskImage = "disk.img"
	diskDir   = "disk"
)

// mkfsPath is mkfs.ext4 when the host has it.
func mkfsPath() (string, error) {
	p, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return "", fmt.Errorf("mkfs.ext4 not found (install e2fsprogs): %w", err)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return "", fmt.Errorf("no loop devices (load the loop module): %w", err)
	}
	return p, nil
}

// makeDisk creates and mounts the writable filesystem of a sandbox in dir
// and returns its mount point.
func (b *Backend) makeDisk(ctx context.Context, dir string, size int64) (string, error) {
	img := filepath.Join(dir, diskImage)
	mnt := filepath.Join(dir, diskDir)
	if err := b.disks.take(ctx, img, size); err != nil {
		return "", err
	}
	f, err := os.OpenFile(img, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := os.Mkdir(mnt, 0o711); err != nil {
		return "", err
	}
	if err := mountLoop(ctx, f, mnt); err != nil {
		return "", err
	}
	return mnt, nil
}

// diskPool keeps a few freshly formatted images of every size asked for,
// in <DataDir>/disks, so that a start only renames one into place and the
// ~5 ms of mkfs happen off its path. Images are plain sparse files; the
// pool is emptied when the Backend opens and closes.
type diskPool struct {
	dir  string
	mkfs string
	log  *slog.Logger

	mu      sync.Mutex
	ready   map[int64][]string
	filling map[int64]bool
	closed  bool
	wg      sync.WaitGroup
}

// diskPoolDepth is how many images of one size wait formatted.
const diskPoolDepth = 2

func newDiskPool(dir, mkfs string, log *slog.Logger) (*diskPool, error) {
	// Left by a Backend that did not close: never mounted, just files.
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	return &diskPool{dir: dir, mkfs: mkfs, log: log, ready: map[int64][]string{}, filling: map[int64]bool{}}, nil
}

// take puts a formatted image of size bytes at dst: one from the pool, or
// a new one when the pool has none.
func (p *diskPool) take(ctx context.Context, dst string, size int64) error {
	p.mu.Lock()
	var src string
	if l := p.ready[size]; len(l) > 0 {
		src, p.ready[size] = l[len(l)-1], l[:len(l)-1]
	}
	p.refillLocked(size)
	p.mu.Unlock()
	if src != "" {
		if err := os.Rename(src, dst); err == nil {
			return nil
		}
		os.Remove(src)
	}
	return format(ctx, p.mkfs, dst, size)
}

func (p *diskPool) refillLocked(size int64) {
	if p.closed || p.filling[size] || len(p.ready[size]) >= diskPoolDepth {
		return
	}
	p.filling[size] = true
	p.wg.Go(func() {
		for {
			p.mu.Lock()
			if p.closed || len(p.ready[size]) >= diskPoolDepth {
				p.filling[size] = false
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			path := filepath.Join(p.dir, fmt.Sprintf("%d-%s.img", size, rand.Text()))
			if err := format(context.Background(), p.mkfs, path, size); err != nil {
				p.log.Warn("formatting a spare sandbox disk", "err", err)
				os.Remove(path)
				p.mu.Lock()
				p.filling[size] = false
				p.mu.Unlock()
				return
			}
			p.mu.Lock()
			p.ready[size] = append(p.ready[size], path)
			p.mu.Unlock()
		}
	})
}

// close stops refilling and removes the spare images.
func (p *diskPool) close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
	return os.RemoveAll(p.dir)
}

// format makes path a sparse file of size bytes holding an empty ext4.
func format(ctx context.Context, mkfs, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return fmt.Errorf("size %s: %w", path, err)
	}
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-m", "0",
		"-O", "^has_journal,^resize_inode",
		"-E", "lazy_itable_init=1,nodiscard",
		path)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mountLoop attaches img to a free loop device and mounts its ext4 at
// target. The device clears itself when target is unmounted.
func mountLoop(ctx context.Context, img *os.File, target string) error {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("find a free loop device: %w", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		err = attachAndMount(img, dev, target)
		// Another process can take the device between GET_FREE and
		// the configure call; ask again.
		if errors.Is(err, unix.EBUSY) && attempt < 50 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
			continue
		}
		return err
	}
}

func attachAndMount(img *os.File, dev, target string) error {
	d, err := openLoopDevice(dev)
	if err != nil {
		return err
	}
	// Closing d releases the device unless the mount holds it: with
	// autoclear, the last close or unmount detaches it.
	defer d.Close()
	// Direct I/O on the image file: buffered, every block would sit in
	// the page cache twice (the sandbox's ext4 and the image file) and
	// be copied between them; a 1 GiB upload ran at 292 MiB/s that way
	// against 594 with direct I/O and 644 without a disk quota at all.
	cfg := unix.LoopConfig{
		Fd:   uint32(img.Fd()),
		Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO},
	}
	copy(cfg.Info.File_name[:], img.Name())
	if err := unix.IoctlLoopConfigure(int(d.Fd()), &cfg); err != nil {
		return &os.PathError{Op: "configure loop device", Path: dev, Err: err}
	}
	if err := unix.Mount(dev, target, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, "noinit_itable,discard"); err != nil {
		// Detach now rather than on close, so a retry finds it free.
		unix.IoctlSetInt(int(d.Fd()), unix.LOOP_CLR_FD, 0)
		return &os.PathError{Op: "mount " + dev, Path: target, Err: err}
	}
	return nil
}

// openLoopDevice opens a loop device node; devtmpfs creates it when
// loop-control hands out a new number, which can take a moment.
func openLoopDevice(dev string) (*os.File, error) {
	for i := 0; ; i++ {
		d, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if errors.Is(err, os.ErrNotExist) && i < 100 {
			time.Sleep(time.Millisecond)
			continue
		}
		return d, err
	}
}
