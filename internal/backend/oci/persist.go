package oci

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/internal/backend"
)

// Persistence: a sandbox's writable layer is its overlay upper directory,
// which holds every file the sandbox created or changed, a whiteout (a 0/0
// character device) for every image file it deleted, and the xattr
// trusted.overlay.opaque on directories it replaced. Snapshot writes that
// directory as a PAX tar stream, read as host root without following any
// symlink: numeric owners (host ids, which with a user namespace lie in
// the data directory's id range), full mode bits, nanosecond mtimes,
// extended attributes (SCHILY.xattr records), hard links, whiteouts and
// fifos. A global header records the id range, so that a snapshot
// restored under another range (another data directory) is shifted into
// it. Start with Spec.Upper extracts such a stream into the fresh upper
// directory before the overlay is mounted, through an os.Root and
// *at system calls on it, so that no entry can land or write outside it.

const (
	upperFormat  = "SBX.upper" // global record: format version
	upperIDMap   = "SBX.idmap" // global record: "host:size" of the id range
	xattrRecord  = "SCHILY.xattr."
	upperVersion = "1"
)

// persistedXattr reports whether an extended attribute is part of a
// snapshot: overlayfs' own (opaque directories, redirects), file
// capabilities, ACLs and user attributes. Others (security labels of the
// host) are not the sandbox's.
func persistedXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.") ||
		name == "security.capability" || name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

var _ backend.Persister = (*Backend)(nil)

// Snapshot writes the upper layer of sandbox id to w (see backend.Persister).
// A running sandbox is paused (cgroup freezer, through the runtime) while
// its layer is read and resumed afterwards.
func (b *Backend) Snapshot(ctx context.Context, id string, w io.Writer) error {
	if err := validateID(id); err != nil {
		return err
	}
	unlock := b.locks.lock(id)
	defer unlock()
	dir := b.dir(id)
	upper := upperDir(dir)
	if _, err := os.Lstat(upper); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("snapshot sandbox %q: %w", id, backend.ErrNotExist)
	} else if err != nil {
		return err
	}
	p, err := readInit(dir)
	if err == nil && p.alive() {
		cid := b.containerID(id)
		if err := b.rt.call(ctx, "pause", cid); err != nil {
			return fmt.Errorf("snapshot sandbox %q: freezing its processes: %w", id, err)
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
			defer cancel()
			if err := b.rt.call(rctx, "resume", cid); err != nil {
				b.log.Error("resuming sandbox after snapshot", "id", id, "err", err)
			}
		}()
	} else if err := sameBoot(dir); err != nil {
		return fmt.Errorf("snapshot sandbox %q: %w", id, err)
	}
	begin := time.Now()
	st, err := writeUpper(ctx, w, upper, b.idMapPtr())
	if err != nil {
		return fmt.Errorf("snapshot sandbox %q: %w", id, err)
	}
	b.log.Debug("sandbox snapshot", "id", id, "entries", st.entries, "bytes", st.bytes, "took", time.Since(begin))
	return nil
}

// sameBoot refuses the upper layer of a sandbox that last ran before the
// host booted: the overlay is volatile (never synced), so after a crash
// its upper directory may hold torn files, and a snapshot of it would
// replace the last good one.
func sameBoot(dir string) error {
	fi, err := os.Stat(filepath.Join(dir, initFile))
	if err != nil {
		fi, err = os.Stat(dir)
		if err != nil {
			return err
		}
	}
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			bt, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil && fi.ModTime().Unix() < bt {
				return errors.New("it last ran before the host booted; its volatile upper layer may be torn, so the previous snapshot is kept")
			}
			return nil
		}
	}
	return nil
}

type upperStats struct {
	entries int
	bytes   int64
}

// upperWriter walks an upper directory through directory file
// descriptors, never following a symlink.
type upperWriter struct {
	ctx   context.Context
	tw    *tar.Writer
	links map[[2]uint64]string
	buf   []byte
	st    upperStats
}

func writeUpper(ctx context.Context, w io.Writer, upper string, idm *idRange) (upperStats, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	uw := &upperWriter{ctx: ctx, tw: tar.NewWriter(bw), links: map[[2]uint64]string{}, buf: make([]byte, 1<<20)}
	idmap := "0:0"
	if idm != nil {
		idmap = fmt.Sprintf("%d:%d", idm.host, idm.size)
	}
	if err := uw.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "sbx-upper", Format: tar.FormatPAX,
		PAXRecords: map[string]string{upperFormat: upperVersion, upperIDMap: idmap}}); err != nil {
		return uw.st, err
	}
	fd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return uw.st, &os.PathError{Op: "open", Path: upper, Err: err}
	}
	root := os.NewFile(uintptr(fd), upper)
	defer root.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return uw.st, err
	}
	hdr := statHeader("./", &st)
	hdr.Typeflag = tar.TypeDir
	if err := uw.xattrs(hdr, func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) },
		func(n string, buf []byte) (int, error) { return unix.Fgetxattr(fd, n, buf) }); err != nil {
		return uw.st, err
	}
	if err := uw.tw.WriteHeader(hdr); err != nil {
		return uw.st, err
	}
	if err := uw.dir(root, ""); err != nil {
		return uw.st, err
	}
	if err := uw.tw.Close(); err != nil {
		return uw.st, err
	}
	return uw.st, bw.Flush()
}

func statHeader(name string, st *unix.Stat_t) *tar.Header {
	return &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Format:  tar.FormatPAX,
	}
}

// dir writes the entries of directory d (at rel, "" for the root), sorted
// by name, recursing into subdirectories.
func (uw *upperWriter) dir(d *os.File, rel string) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", rel, err)
	}
	slices.Sort(names)
	dfd := int(d.Fd())
	for _, name := range names {
		if err := uw.ctx.Err(); err != nil {
			return err
		}
		if err := uw.entry(dfd, rel, name); err != nil {
			return err
		}
	}
	return nil
}

func (uw *upperWriter) entry(dfd int, rel, name string) error {
	p := path.Join(rel, name)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	hdr := statHeader(p, &st)
	proc := "/proc/self/fd/" + strconv.Itoa(dfd) + "/" + name
	lxattrs := func() error {
		return uw.xattrs(hdr, func(buf []byte) (int, error) { return unix.Llistxattr(proc, buf) },
			func(n string, buf []byte) (int, error) { return unix.Lgetxattr(proc, n, buf) })
	}
	uw.st.entries++
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
		if err := lxattrs(); err != nil {
			return err
		}
		if err := uw.tw.WriteHeader(hdr); err != nil {
			return err
		}
		fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: p, Err: err}
		}
		sub := os.NewFile(uintptr(fd), p)
		defer sub.Close()
		return uw.dir(sub, p)
	case unix.S_IFREG:
		if st.Nlink > 1 {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, ok := uw.links[key]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return uw.tw.WriteHeader(hdr)
			}
			uw.links[key] = p
		}
		fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: p, Err: err}
		}
		f := os.NewFile(uintptr(fd), p)
		defer f.Close()
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		if err := uw.xattrs(hdr, func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) },
			func(n string, buf []byte) (int, error) { return unix.Fgetxattr(fd, n, buf) }); err != nil {
			return err
		}
		if err := uw.tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.CopyBuffer(uw.tw, io.LimitReader(f, st.Size), uw.buf)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if n != st.Size {
			return fmt.Errorf("read %s: it shrank from %d to %d bytes while being read", p, st.Size, n)
		}
		uw.st.bytes += n
		return nil
	case unix.S_IFLNK:
		target := make([]byte, st.Size+1)
		n, err := unix.Readlinkat(dfd, name, target)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: p, Err: err}
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, string(target[:n])
		if err := lxattrs(); err != nil {
			return err
		}
		return uw.tw.WriteHeader(hdr)
	case unix.S_IFCHR:
		if st.Rdev != 0 {
			// Only overlayfs whiteouts: a sandbox cannot make devices.
			uw.st.entries--
			return nil
		}
		hdr.Typeflag = tar.TypeChar
		if err := lxattrs(); err != nil {
			return err
		}
		return uw.tw.WriteHeader(hdr)
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
		return uw.tw.WriteHeader(hdr)
	}
	uw.st.entries-- // sockets and the like do not outlive their process
	return nil
}

// xattrs adds the persisted extended attributes of an entry to hdr.
func (uw *upperWriter) xattrs(hdr *tar.Header, list func([]byte) (int, error), get func(string, []byte) (int, error)) error {
	names, err := readXattr(func(buf []byte) (int, error) { return list(buf) })
	if err != nil || len(names) == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list xattrs of %s: %w", hdr.Name, err)
		}
		return nil
	}
	for _, n := range strings.Split(strings.TrimSuffix(string(names), "\x00"), "\x00") {
		if !persistedXattr(n) {
			continue
		}
		v, err := readXattr(func(buf []byte) (int, error) { return get(n, buf) })
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read xattr %s of %s: %w", n, hdr.Name, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[xattrRecord+n] = string(v)
	}
	return nil
}

// readXattr calls f with a growing buffer until it fits.
func readXattr(f func([]byte) (int, error)) ([]byte, error) {
	n, err := f(nil)
	if err != nil {
		return nil, err
	}
	for {
		buf := make([]byte, n)
		m, err := f(buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = f(nil); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:m], nil
	}
}

// restoreUpper extracts a snapshot stream into the empty upper directory
// and reads the stream to its end.
func (b *Backend) restoreUpper(r io.Reader, upper string) error {
	begin := time.Now()
	n, err := extractUpper(r, upper, b.idMapPtr())
	if err != nil {
		return fmt.Errorf("restore writable layer: %w", err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("restore writable layer: %w", err)
	}
	b.log.Debug("writable layer restored", "entries", n, "took", time.Since(begin))
	return nil
}

// idShift maps owners of a snapshot taken under one id range into another.
type idShift struct{ from, to idRange }

func (s idShift) id(v int) int {
	u := uint32(v)
	switch {
	case s.from == s.to:
		return v
	case s.from.size > 0 && u >= s.from.host && u-s.from.host < s.from.size:
		u = u - s.from.host + s.to.host
	case s.from.size == 0 && s.to.size > 0 && u < s.to.size:
		u += s.to.host
	}
	return int(u)
}

type dirAttrs struct {
	name  string
	mode  uint32
	mtime time.Time
}

type upperExtractor struct {
	root    *os.Root
	shift   idShift
	parent  string
	parentF *os.File
	dirs    []dirAttrs
	buf     []byte
}

func extractUpper(r io.Reader, upper string, idm *idRange) (int, error) {
	root, err := os.OpenRoot(upper)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	x := &upperExtractor{root: root, parent: "\x00", buf: make([]byte, 1<<20)}
	if idm != nil {
		x.shift.to = *idm
	}
	x.shift.from = x.shift.to
	defer func() {
		if x.parentF != nil {
			x.parentF.Close()
		}
	}()
	tr := tar.NewReader(r)
	n := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("malformed snapshot: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			if v := hdr.PAXRecords[upperFormat]; v != upperVersion {
				return n, fmt.Errorf("snapshot format %q is not supported (want %q)", v, upperVersion)
			}
			if err := x.parseIDMap(hdr.PAXRecords[upperIDMap]); err != nil {
				return n, err
			}
			continue
		}
		if err := x.entry(hdr, tr); err != nil {
			return n, fmt.Errorf("snapshot entry %q: %w", hdr.Name, err)
		}
		n++
	}
	// Directory modes and times last: creating children changes times.
	slices.SortFunc(x.dirs, func(a, b dirAttrs) int { return strings.Compare(b.name, a.name) })
	for _, d := range x.dirs {
		f, err := root.Open(d.name)
		if err != nil {
			return n, err
		}
		err = unix.Fchmod(int(f.Fd()), d.mode)
		f.Close()
		if err == nil {
			err = root.Chtimes(d.name, d.mtime, d.mtime)
		}
		if err != nil {
			return n, fmt.Errorf("snapshot entry %q: %w", d.name, err)
		}
	}
	return n, nil
}

func (x *upperExtractor) parseIDMap(v string) error {
	h, s, ok := strings.Cut(v, ":")
	host, err1 := strconv.ParseUint(h, 10, 32)
	size, err2 := strconv.ParseUint(s, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("snapshot id map %q is malformed", v)
	}
	x.shift.from = idRange{host: uint32(host), size: uint32(size)}
	return nil
}

// dirFile returns the open directory dir ("." for the root), reusing the
// last one: entries arrive grouped by directory.
func (x *upperExtractor) dirFile(dir string) (*os.File, error) {
	if dir == x.parent {
		return x.parentF, nil
	}
	f, err := x.root.Open(dir)
	if err != nil {
		return nil, err
	}
	if x.parentF != nil {
		x.parentF.Close()
	}
	x.parent, x.parentF = dir, f
	return f, nil
}

func (x *upperExtractor) entry(hdr *tar.Header, r io.Reader) error {
	name := hdr.Name
	switch {
	case strings.IndexByte(name, 0) >= 0, strings.HasPrefix(name, "/"), slices.Contains(strings.Split(name, "/"), ".."):
		return errors.New("unsafe name")
	}
	name = path.Clean("./" + name)
	uid, gid := x.shift.id(hdr.Uid), x.shift.id(hdr.Gid)
	mode := uint32(hdr.Mode & 0o7777)
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return errors.New("the root entry is not a directory")
		}
		f, err := x.dirFile(".")
		if err != nil {
			return err
		}
		fd := int(f.Fd())
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return err
		}
		if err := setXattrs(hdr, func(n string, v []byte) error { return unix.Fsetxattr(fd, n, v, 0) }); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirAttrs{name, mode, hdr.ModTime})
		return nil
	}
	dir, base := path.Split(name)
	if dir == "" {
		dir = "."
	}
	d, err := x.dirFile(path.Clean(dir))
	if err != nil {
		return err
	}
	dfd := int(d.Fd())
	proc := "/proc/self/fd/" + strconv.Itoa(dfd) + "/" + base
	lset := func(n string, v []byte) error { return unix.Lsetxattr(proc, n, v, 0) }
	chown := func() error { return unix.Fchownat(dfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW) }
	times := func() error {
		ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
		return unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(dfd, base, 0o700); err != nil {
			return err
		}
		if err := chown(); err != nil {
			return err
		}
		if err := setXattrs(hdr, lset); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirAttrs{name, mode, hdr.ModTime})
		return nil
	case tar.TypeReg:
		fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), name)
		_, err = io.CopyBuffer(f, r, x.buf)
		if err == nil {
			err = unix.Fchown(fd, uid, gid)
		}
		if err == nil {
			// After chown, which clears set-id bits.
			err = unix.Fchmod(fd, mode)
		}
		if err == nil {
			err = setXattrs(hdr, func(n string, v []byte) error { return unix.Fsetxattr(fd, n, v, 0) })
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return times()
	case tar.TypeLink:
		target := hdr.Linkname
		if strings.HasPrefix(target, "/") || slices.Contains(strings.Split(target, "/"), "..") {
			return errors.New("unsafe hard link target")
		}
		tdir, tbase := path.Split(path.Clean("./" + target))
		if tdir == "" {
			tdir = "."
		}
		tf, err := x.root.Open(path.Clean(tdir))
		if err != nil {
			return err
		}
		defer tf.Close()
		return unix.Linkat(int(tf.Fd()), tbase, dfd, base, 0)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, dfd, base); err != nil {
			return err
		}
		if err := chown(); err != nil {
			return err
		}
		if err := setXattrs(hdr, lset); err != nil {
			return err
		}
		return times()
	case tar.TypeChar, tar.TypeFifo:
		kind := uint32(unix.S_IFIFO)
		if hdr.Typeflag == tar.TypeChar {
			if hdr.Devmajor != 0 || hdr.Devminor != 0 {
				return errors.New("device nodes other than overlay whiteouts (0/0) are refused")
			}
			kind = unix.S_IFCHR
		}
		if err := unix.Mknodat(dfd, base, kind|mode&0o777, 0); err != nil {
			return err
		}
		if err := chown(); err != nil {
			return err
		}
		if err := unix.Fchmodat(dfd, base, mode, 0); err != nil {
			return err
		}
		if err := setXattrs(hdr, lset); err != nil {
			return err
		}
		return times()
	}
	return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
}

func setXattrs(hdr *tar.Header, set func(name string, value []byte) error) error {
	for k, v := range hdr.PAXRecords {
		n, ok := strings.CutPrefix(k, xattrRecord)
		if !ok || !persistedXattr(n) {
			continue
		}
		if err := set(n, []byte(v)); err != nil {
			return fmt.Errorf("set xattr %s: %w", n, err)
		}
	}
	return nil
}
