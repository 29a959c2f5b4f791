// Package fstree moves directory trees as tar streams: Write archives a
// directory and Extract unpacks an archive into one, refusing every entry
// that would land outside it. sbx uses both ends: the agent inside a
// sandbox, and the CLI on the user's machine.
package fstree

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// copyBufSize is the buffer of file copies: big enough that a 1 GiB file
// costs a few thousand system calls, small enough to pool.
const copyBufSize = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// CopyBuffer copies src to dst through a pooled 1 MiB buffer. Unlike
// io.Copy it never hands the copy to dst's ReadFrom, whose fallback for
// non-file sources uses 32 KiB writes.
func CopyBuffer(dst io.Writer, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(writerOnly{dst}, src, *bp)
}

type writerOnly struct{ io.Writer }

// Stats counts what a Write or Extract handled.
type Stats struct {
	Files, Dirs, Symlinks, Hardlinks int
	// Bytes is the total size of regular file contents.
	Bytes int64
	// Skipped counts entries left out of an archive because tar cannot
	// carry them usefully: sockets, devices and fifos.
	Skipped int
}

// WriteOptions tunes Write.
type WriteOptions struct {
	// Exclude leaves out matching entries (and everything beneath
	// matching directories).
	Exclude *Globs
	// Skip, if set, leaves out the entries (and everything beneath the
	// directories) for which it returns true, given the path relative to
	// dir and whether it is a directory; GitIgnore.Match fits.
	Skip func(rel string, isDir bool) bool
}

// Write archives the tree under dir to w as an uncompressed tar stream.
// Entry names are relative to dir ("src/main.go", directories with a
// trailing slash); dir itself is not an entry. Symlinks are stored as
// symlinks, files with several links inside the tree as one file plus hard
// links, and devices, fifos and sockets are skipped. Entries that vanish
// while the tree is walked are skipped; a file that shrinks while it is read
// is padded with zeros, as GNU tar does, so the archive stays well formed.
//
// Owners are recorded numerically. On error the archive is incomplete and
// must be discarded.
func Write(w io.Writer, dir string, opts WriteOptions) (Stats, error) {
	var st Stats
	// The walk does not follow symlinks, not even dir itself.
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if dir, err = filepath.EvalSymlinks(dir); err != nil {
			return st, err
		}
	}
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil // vanished during the walk
			}
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if opts.Exclude.Match(rel) || opts.Skip != nil && opts.Skip(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch t := d.Type(); {
		case t.IsDir():
			info, err := d.Info()
			if err != nil {
				return skipVanished(err)
			}
			if err := writeHeader(tw, info, rel+"/", ""); err != nil {
				return err
			}
			st.Dirs++
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return skipVanished(err)
			}
			info, err := d.Info()
			if err != nil {
				return skipVanished(err)
			}
			if err := writeHeader(tw, info, rel, target); err != nil {
				return err
			}
			st.Symlinks++
		case t.IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return skipVanished(err)
			}
			defer f.Close()
			info, err := f.Stat()
			if err != nil {
				return err
			}
			if sys, ok := info.Sys().(*syscall.Stat_t); ok && sys.Nlink > 1 {
				key := inode{uint64(sys.Dev), sys.Ino}
				if first, ok := links[key]; ok {
					hdr := header(info, rel, "")
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
					if err := tw.WriteHeader(hdr); err != nil {
						return err
					}
					st.Hardlinks++
					return nil
				}
				links[key] = rel
			}
			if err := writeHeader(tw, info, rel, ""); err != nil {
				return err
			}
			n, err := CopyBuffer(tw, io.LimitReader(f, info.Size()))
			if err != nil {
				return fmt.Errorf("reading %s: %w", p, err)
			}
			if n < info.Size() {
				if _, err := CopyBuffer(tw, io.LimitReader(zeros{}, info.Size()-n)); err != nil {
					return err
				}
			}
			st.Files++
			st.Bytes += info.Size()
		default:
			st.Skipped++
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	return st, tw.Close()
}

func skipVanished(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func header(info fs.FileInfo, name, link string) *tar.Header {
	hdr, _ := tar.FileInfoHeader(info, link)
	if hdr == nil { // only for types Write never passes
		hdr = &tar.Header{}
	}
	hdr.Name = name
	// Let the writer pick the format; it rounds times to seconds and
	// leaves out access and change times, which nobody restores.
	hdr.Format = tar.FormatUnknown
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	return hdr
}

func writeHeader(tw *tar.Writer, info fs.FileInfo, name, link string) error {
	return tw.WriteHeader(header(info, name, link))
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
