package fstree

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	// ErrUnsafe marks entries that Extract refuses: absolute names, names
	// with "..", symlinks and hard links leading outside the target
	// directory, entries reached through such a symlink, devices and
	// fifos.
	ErrUnsafe = errors.New("unsafe tar entry")
	// ErrBadArchive marks a stream that is not a readable tar archive.
	ErrBadArchive = errors.New("malformed tar stream")
)

// Extract unpacks the tar stream r into the existing directory dir and
// reports what it wrote. A gzip-compressed stream is recognised by its
// magic number and decompressed.
//
// Every file system access goes through an os.Root on dir, so nothing is
// created, replaced or followed outside it, whatever the archive or the
// existing tree contains. Regular files are written to a temporary name and
// renamed into place, so an existing file is either replaced whole or left
// as it was. Directory permissions and times are applied last, so that a
// read-only directory can still be filled. Entries are owned by the
// extracting user, not by the owners recorded in the archive; set-id bits
// are dropped.
//
// Extraction stops at the first refused or failing entry; entries before it
// stay extracted. The error names the entry and wraps ErrUnsafe,
// ErrBadArchive or the underlying file system error.
func Extract(r io.Reader, dir string, opts ExtractOptions) (Stats, error) {
	var st Stats
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, err
	}
	defer root.Close()

	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return st, fmt.Errorf("%w: %w", ErrBadArchive, err)
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}

	x := extractor{root: root, opts: opts}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("%w: %w", ErrBadArchive, err)
		}
		if err := x.entry(hdr, tr, &st); err != nil {
			return st, fmt.Errorf("tar entry %q: %w", hdr.Name, classifyRootErr(err))
		}
	}
	if err := x.finish(); err != nil {
		return st, err
	}
	return st, nil
}

// ExtractOptions relax Extract's refusals.
type ExtractOptions struct {
	// AnySymlinkTarget stores symlinks whatever they point at (an
	// absolute path, or ../ out of the tree), as in a Python virtualenv.
	// Extraction itself still never follows one out of the directory:
	// an entry reached through such a link is refused. For trees that
	// come back from where they were (backup restores); tar uploads keep
	// the default, which refuses links that lead out.
	AnySymlinkTarget bool
	// KeepOwners gives entries the numeric owners the archive records
	// (the extracting user must be allowed to chown: root). For restores;
	// otherwise entries belong to the extracting user.
	KeepOwners bool
}

type dirMeta struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

type extractor struct {
	root     *os.Root
	opts     ExtractOptions
	dirs     []dirMeta
	symlinks []string // to re-check at the end
}

func (x *extractor) entry(hdr *tar.Header, tr io.Reader, st *Stats) error {
	name, err := entryName(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeDir:
		if name == "." {
			return nil // the target itself: its mode is the caller's
		}
		if err := x.root.MkdirAll(name, 0o700); err != nil {
			return err
		}
		if err := x.chown(name, hdr); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirMeta{name, fs.FileMode(hdr.Mode)&fs.ModePerm | stickyOf(hdr.Mode), hdr.ModTime})
		st.Dirs++
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if name == "." {
			return fmt.Errorf("%w: a file entry names the target directory itself", ErrUnsafe)
		}
		if err := x.parents(name); err != nil {
			return err
		}
		n, err := x.writeFile(name, tr, fs.FileMode(hdr.Mode)&fs.ModePerm, hdr.ModTime, hdr)
		if err != nil {
			return err
		}
		st.Files++
		st.Bytes += n
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return fmt.Errorf("%w: symlink has an empty target", ErrUnsafe)
		}
		if !x.opts.AnySymlinkTarget {
			if err := checkSymlink(name, hdr.Linkname); err != nil {
				return err
			}
			x.symlinks = append(x.symlinks, name) // for the chain check
		}
		if err := x.replace(name); err != nil {
			return err
		}
		if err := x.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		if err := x.chown(name, hdr); err != nil {
			return err
		}
		st.Symlinks++
	case tar.TypeLink:
		target, err := entryName(hdr.Linkname)
		if err != nil || target == "." {
			return fmt.Errorf("%w: hard link to %q leads outside the target directory", ErrUnsafe, hdr.Linkname)
		}
		if err := x.replace(name); err != nil {
			return err
		}
		if err := x.root.Link(target, name); err != nil {
			return err
		}
		st.Hardlinks++
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return fmt.Errorf("%w: devices and fifos are refused", ErrUnsafe)
	default:
		return fmt.Errorf("%w: unsupported entry type %q", ErrUnsafe, hdr.Typeflag)
	}
	return nil
}

func stickyOf(mode int64) fs.FileMode {
	if mode&0o1000 != 0 {
		return fs.ModeSticky
	}
	return 0
}

// entryName cleans an archive name into a name relative to the target,
// "." for the target itself, refusing absolute names and "..".
func entryName(n string) (string, error) {
	switch {
	case strings.IndexByte(n, 0) >= 0:
		return "", fmt.Errorf("%w: name contains a NUL byte", ErrUnsafe)
	case strings.HasPrefix(n, "/"):
		return "", fmt.Errorf("%w: absolute names are refused", ErrUnsafe)
	case slices.Contains(strings.Split(n, "/"), ".."):
		return "", fmt.Errorf("%w: names with '..' are refused", ErrUnsafe)
	}
	return path.Clean("./" + n), nil
}

// checkSymlink refuses a symlink at name whose target, read as written,
// leads outside the target directory. Chains of in-tree symlinks are
// checked once the whole archive is in place (see finish).
func checkSymlink(name, target string) error {
	switch {
	case target == "":
		return fmt.Errorf("%w: symlink has an empty target", ErrUnsafe)
	case strings.HasPrefix(target, "/"):
		return fmt.Errorf("%w: symlink to absolute path %q leads outside the target directory", ErrUnsafe, target)
	}
	if r := path.Join(path.Dir(name), target); r == ".." || strings.HasPrefix(r, "../") {
		return fmt.Errorf("%w: symlink to %q leads outside the target directory", ErrUnsafe, target)
	}
	return nil
}

func (x *extractor) parents(name string) error {
	if d := path.Dir(name); d != "." {
		return x.root.MkdirAll(d, 0o755)
	}
	return nil
}

// replace prepares name for a new symlink or hard link: its parents exist
// and whatever non-directory was there is gone.
func (x *extractor) replace(name string) error {
	if name == "." {
		return &fs.PathError{Op: "replace", Path: name, Err: syscall.EISDIR}
	}
	if err := x.parents(name); err != nil {
		return err
	}
	fi, err := x.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return &fs.PathError{Op: "replace", Path: name, Err: syscall.EISDIR}
	}
	return x.root.Remove(name)
}

// writeFile writes r to a temporary file beside name and renames it into
// place.
// chown gives name the archive's owner with KeepOwners; it never follows
// a symlink.
func (x *extractor) chown(name string, hdr *tar.Header) error {
	if !x.opts.KeepOwners {
		return nil
	}
	return x.root.Lchown(name, hdr.Uid, hdr.Gid)
}

func (x *extractor) writeFile(name string, r io.Reader, mode fs.FileMode, mtime time.Time, hdr *tar.Header) (int64, error) {
	if fi, err := x.root.Lstat(name); err == nil && fi.IsDir() {
		return 0, &fs.PathError{Op: "write", Path: name, Err: syscall.EISDIR}
	}
	var (
		f   *os.File
		tmp string
		err error
	)
	for range 10 {
		tmp = path.Join(path.Dir(name), ".sbx-tar-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err = x.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	n, err := CopyBuffer(f, r)
	if err == nil && x.opts.KeepOwners {
		err = f.Chown(hdr.Uid, hdr.Gid) // before Chmod, which chown would strip of set-id bits
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !mtime.IsZero() {
		err = x.root.Chtimes(tmp, mtime, mtime)
	}
	if err == nil {
		err = x.root.Rename(tmp, name)
	}
	if err != nil {
		_ = x.root.Remove(tmp)
		return 0, err
	}
	return n, nil
}

// finish re-checks the symlinks, which together may lead outside the
// target even when each one alone does not (a -> b/.., b -> .), and then
// applies directory permissions and times, deepest first.
func (x *extractor) finish() error {
	for _, name := range x.symlinks {
		if _, err := x.root.Stat(name); err != nil && isEscape(err) {
			_ = x.root.Remove(name)
			return fmt.Errorf("tar entry %q: %w: symlink chain leads outside the target directory", name, ErrUnsafe)
		}
	}
	slices.SortFunc(x.dirs, func(a, b dirMeta) int { return strings.Compare(b.name, a.name) })
	for _, d := range x.dirs {
		if err := x.root.Chmod(d.name, d.mode); err != nil {
			return fmt.Errorf("tar entry %q: %w", d.name, err)
		}
		if !d.mtime.IsZero() {
			if err := x.root.Chtimes(d.name, d.mtime, d.mtime); err != nil {
				return fmt.Errorf("tar entry %q: %w", d.name, err)
			}
		}
	}
	return nil
}

// isEscape reports os.Root's refusal to leave its directory. The os
// package does not export that error, only its text.
func isEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// classifyRootErr turns os.Root's escape refusal into ErrUnsafe.
func classifyRootErr(err error) error {
	if isEscape(err) && !errors.Is(err, ErrUnsafe) {
		return fmt.Errorf("%w: the entry's path passes through a symlink that leads outside the target directory (%v)", ErrUnsafe, err)
	}
	return err
}
