// Package local is the embedded default blob.Store: objects are files in a
// directory on the local filesystem, named by their keys, so an operator
// can read them with ordinary tools.
//
// Layout under the store directory:
//
//	objects/<key>   the object's bytes; metadata in the xattr user.sbx.meta
//	tmp/            objects being written
//
// Put writes a temporary file in tmp/ (the same filesystem), fsyncs it,
// renames it over objects/<key> and fsyncs the directory, so an object is
// either absent, the old one or the complete new one, even across a crash.
// Metadata lives in an extended attribute of the data file, set before the
// rename, so data and metadata change together. The filesystem must support
// user extended attributes (ext4, xfs, btrfs, tmpfs since Linux 6.6); New
// checks.
//
// Keys are file paths here, so "a" and "a/b" cannot both exist: Put of
// one beside the other fails with blob.ErrConflict.
package local

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/internal/blob"
)

const (
	objectsDir = "objects"
	tmpDir     = "tmp"
	// xattrName holds the metadata as lines "key=EscapeValue(value)".
	xattrName = "user.sbx.meta"
	// staleAfter is how long a temporary file may go unwritten before New
	// takes it for the leftover of a crashed Put.
	staleAfter  = time.Hour
	copyBufSize = 256 << 10
	// renameTries bounds the retries of a Put whose freshly made parent
	// directory a concurrent Delete removed (it prunes empty directories).
	renameTries = 10
)

// Store is a blob.Store on a local directory.
type Store struct {
	dir  string
	root *os.Root
}

var _ blob.Store = (*Store)(nil)

// New opens the store in dir, creating the directory if needed, and
// removes temporary files that crashed writers left behind.
func New(dir string) (*Store, error) {
	for _, d := range []string{dir, dir + "/" + objectsDir, dir + "/" + tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("local blob store: %w", err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("local blob store: %w", err)
	}
	s := &Store{dir: dir, root: root}
	if err := s.checkXattr(); err != nil {
		root.Close()
		return nil, err
	}
	s.removeStale()
	return s, nil
}

// Close releases the store's directory handle.
func (s *Store) Close() error { return s.root.Close() }

// String names the store in logs.
func (s *Store) String() string { return "local:" + s.dir }

func (s *Store) checkXattr() error {
	f, name, err := s.createTemp()
	if err != nil {
		return fmt.Errorf("local blob store: %w", err)
	}
	defer s.root.Remove(name)
	defer f.Close()
	if err := setMeta(f, map[string]string{"probe": "1"}); err != nil {
		return fmt.Errorf("local blob store: %s must be on a filesystem with user extended attributes, which hold object metadata (ext4, xfs, btrfs, tmpfs on Linux 6.6+): %w", s.dir, err)
	}
	return nil
}

func (s *Store) removeStale() {
	d, err := s.root.Open(tmpDir)
	if err != nil {
		return
	}
	defer d.Close()
	ents, _ := d.ReadDir(-1)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleAfter {
			s.root.Remove(tmpDir + "/" + e.Name())
		}
	}
}

func (s *Store) createTemp() (*os.File, string, error) {
	var b [12]byte
	rand.Read(b[:])
	name := tmpDir + "/" + hex.EncodeToString(b[:])
	f, err := s.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	return f, name, err
}

func objPath(key string) string { return objectsDir + "/" + key }

// source records the error of the caller's reader, so Put can tell a
// failing source from a failing disk, and stops once ctx is done.
type source struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (s *source) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err // reported as the context's, not the source's
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// writerOnly hides (*os.File).ReadFrom, whose generic path would ignore
// Put's larger buffer.
type writerOnly struct{ io.Writer }

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (info blob.Info, err error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := blob.ValidateMetadata(opts.Metadata); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("blob: put %q: %w", key, err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("blob: put %q: %w", key, err)
		}
	}()

	f, tmp, err := s.createTemp()
	if err != nil {
		return blob.Info{}, err
	}
	renamed := false
	defer func() {
		f.Close()
		if !renamed {
			s.root.Remove(tmp)
		}
	}()
	if len(opts.Metadata) > 0 {
		if err := setMeta(f, opts.Metadata); err != nil {
			return blob.Info{}, err
		}
	}
	src := &source{ctx: ctx, r: r}
	n, err := io.CopyBuffer(writerOnly{f}, src, make([]byte, copyBufSize))
	switch {
	case src.err != nil:
		return blob.Info{}, fmt.Errorf("reading the source: %w", src.err)
	case ctx.Err() != nil:
		return blob.Info{}, ctx.Err()
	case err != nil:
		return blob.Info{}, err
	}
	if err := f.Sync(); err != nil {
		return blob.Info{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err // last chance to back out before the commit
	}
	if err := s.commit(tmp, key); err != nil {
		return blob.Info{}, err
	}
	renamed = true
	return blob.Info{Key: key, Size: n, ModTime: fi.ModTime(), Metadata: copyMeta(opts.Metadata)}, nil
}

// commit renames the temporary file tmp to key's path, making the parent
// directories, and makes the result durable.
func (s *Store) commit(tmp, key string) error {
	parent := path.Dir(key)
	var err error
	for range renameTries {
		var created []string
		created, err = s.mkdirs(parent)
		if err == nil {
			err = s.root.Rename(tmp, objPath(key))
			if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
				// key's path is a directory. An empty one is a leftover
				// (Delete prunes them, but races); a full one holds
				// other keys.
				if s.root.Remove(objPath(key)) == nil {
					continue
				}
				return fmt.Errorf("%w: the local store holds keys below %q, so it cannot also be an object", blob.ErrConflict, key)
			}
		}
		if errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("%w: a parent of %q is an object in the local store, so %q cannot be a directory", blob.ErrConflict, key, parent)
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // a concurrent Delete pruned a directory we made
		}
		if err != nil {
			return err
		}
		// The rename is durable once its directory is; a directory we
		// created is durable once its own parent is.
		dirs := []string{parent}
		for _, d := range created {
			dirs = append(dirs, path.Dir(d))
		}
		slices.Sort(dirs)
		for _, d := range slices.Compact(dirs) {
			if err := s.syncDir(d); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("could not create the directories of %q: %w", key, err)
}

// mkdirs makes the directory dir under objects/ and its parents, and
// returns those it created, parents first.
func (s *Store) mkdirs(dir string) ([]string, error) {
	if dir == "." {
		return nil, nil
	}
	var created []string
	segs := strings.Split(dir, "/")
	for i := range segs {
		d := strings.Join(segs[:i+1], "/")
		err := s.root.Mkdir(objPath(d), 0o700)
		switch {
		case err == nil:
			created = append(created, d)
		case errors.Is(err, fs.ErrExist):
			// A directory, or a file that the rename will trip over
			// with ENOTDIR.
		default:
			return created, err
		}
	}
	return created, nil
}

func (s *Store) syncDir(dir string) error {
	p := objectsDir
	if dir != "." {
		p = objPath(dir)
	}
	d, err := s.root.Open(p)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// open opens key's file, or fails with blob.ErrNotFound.
func (s *Store) open(ctx context.Context, op, key string) (*os.File, blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, blob.Info{}, fmt.Errorf("blob: %s %q: %w", op, key, err)
	}
	f, err := s.root.OpenFile(objPath(key), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, blob.Info{}, fmt.Errorf("blob: %s %q: %w", op, key, blob.ErrNotFound)
	}
	if err != nil {
		return nil, blob.Info{}, fmt.Errorf("blob: %s %q: %w", op, key, err)
	}
	info, ok, err := infoOf(f, key)
	if err == nil && !ok {
		err = blob.ErrNotFound // a directory: keys below key exist
	}
	if err != nil {
		f.Close()
		return nil, blob.Info{}, fmt.Errorf("blob: %s %q: %w", op, key, err)
	}
	return f, info, nil
}

// infoOf describes the open file f; ok is false if it is not a regular
// file and so not an object.
func infoOf(f *os.File, key string) (blob.Info, bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return blob.Info{}, false, err
	}
	if !fi.Mode().IsRegular() {
		return blob.Info{}, false, nil
	}
	meta, err := getMeta(f)
	if err != nil {
		return blob.Info{}, false, err
	}
	return blob.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), Metadata: meta}, true, nil
}

// Get implements blob.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	f, info, err := s.open(ctx, "get", key)
	if err != nil {
		return nil, blob.Info{}, err
	}
	return &reader{ctx: ctx, f: f, key: key}, info, nil
}

// reader reads an object's file. The file was opened before any later
// rename or unlink of the key, so it keeps returning the object as it was.
type reader struct {
	ctx context.Context
	f   *os.File
	key string
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("blob: read %q: %w", r.key, err)
	}
	return r.f.Read(p)
}

func (r *reader) Close() error { return r.f.Close() }

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	f, info, err := s.open(ctx, "stat", key)
	if err != nil {
		return blob.Info{}, err
	}
	f.Close()
	return info, nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: delete %q: %w", key, err)
	}
	fi, err := s.root.Lstat(objPath(key))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || err == nil && fi.IsDir() {
		return nil // no object: done already
	}
	if err == nil {
		err = s.root.Remove(objPath(key))
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: delete %q: %w", key, err)
	}
	parent := path.Dir(key)
	if err := s.syncDir(parent); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: delete %q: %w", key, err)
	}
	// Prune directories left empty, so deleted prefixes leave no trace.
	// Removing a non-empty directory fails, which ends the climb; a Put
	// racing with this retries its mkdir.
	for d := parent; d != "."; d = path.Dir(d) {
		if s.root.Remove(objPath(d)) != nil {
			break
		}
	}
	return nil
}

// List implements blob.Store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[blob.Info, error] {
	return func(yield func(blob.Info, error) bool) {
		if err := blob.ValidatePrefix(prefix); err != nil {
			yield(blob.Info{}, err)
			return
		}
		if err := ctx.Err(); err != nil {
			yield(blob.Info{}, fmt.Errorf("blob: list %q: %w", prefix, err))
			return
		}
		// Walk from the deepest directory the prefix names in full; the
		// rest of it filters that directory's entries.
		dir, namePrefix := "", prefix
		if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
			dir, namePrefix = prefix[:i], prefix[i+1:]
		}
		p := objectsDir
		if dir != "" {
			p = objPath(dir)
		}
		d, err := s.root.OpenFile(p, os.O_RDONLY|syscall.O_DIRECTORY, 0)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return
		}
		if err != nil {
			yield(blob.Info{}, fmt.Errorf("blob: list %q: %w", prefix, err))
			return
		}
		defer d.Close()
		w := walker{ctx: ctx, yield: yield}
		if dir != "" {
			dir += "/"
		}
		if !w.walk(d, dir, namePrefix) && w.err != nil {
			yield(blob.Info{}, fmt.Errorf("blob: list %q: %w", prefix, w.err))
		}
	}
}

type walker struct {
	ctx   context.Context
	yield func(blob.Info, error) bool
	err   error
}

// walk yields the objects in directory d, whose keys start with keyDir,
// in key order, considering only entries whose names start with
// namePrefix. It returns false to stop: w.err is set on failure.
func (w *walker) walk(d *os.File, keyDir, namePrefix string) bool {
	ents, err := d.ReadDir(-1)
	if err != nil {
		w.err = err
		return false
	}
	type entry struct {
		name  string
		isDir bool
	}
	list := make([]entry, 0, len(ents))
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), namePrefix) {
			continue
		}
		if e.Type().IsDir() {
			list = append(list, entry{e.Name(), true})
		} else if e.Type().IsRegular() {
			list = append(list, entry{e.Name(), false})
		}
	}
	// Keys sort in byte order, and a directory's keys all continue with
	// '/', so a directory sorts as its name plus "/": "a-b" (0x2d) comes
	// before the keys under "a/", "a0" (0x30) after them.
	sortName := func(e entry) string {
		if e.isDir {
			return e.name + "/"
		}
		return e.name
	}
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(sortName(a), sortName(b)) })

	dfd := int(d.Fd())
	for _, e := range list {
		if err := w.ctx.Err(); err != nil {
			w.err = err
			return false
		}
		// Entry names are single components, so openat with O_NOFOLLOW
		// stays inside the store without os.Root's per-path walk.
		if e.isDir {
			fd, err := unix.Openat(dfd, e.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP {
				continue // pruned or replaced since ReadDir
			}
			if err != nil {
				w.err = fmt.Errorf("open %s%s: %w", keyDir, e.name, err)
				return false
			}
			sub := os.NewFile(uintptr(fd), e.name)
			ok := w.walk(sub, keyDir+e.name+"/", "")
			sub.Close()
			if !ok {
				return false
			}
			continue
		}
		fd, err := unix.Openat(dfd, e.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT || err == unix.ELOOP {
			continue // deleted since ReadDir
		}
		if err != nil {
			w.err = fmt.Errorf("open %s%s: %w", keyDir, e.name, err)
			return false
		}
		f := os.NewFile(uintptr(fd), e.name)
		info, ok, err := infoOf(f, keyDir+e.name)
		f.Close()
		if err != nil {
			w.err = err
			return false
		}
		if ok && !w.yield(info, nil) {
			return false
		}
	}
	return true
}

func copyMeta(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func setMeta(f *os.File, m map[string]string) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(blob.EscapeValue(m[k]))
		b.WriteByte('\n')
	}
	if err := unix.Fsetxattr(int(f.Fd()), xattrName, []byte(b.String()), 0); err != nil {
		return fmt.Errorf("set xattr %s: %w", xattrName, err)
	}
	return nil
}

func getMeta(f *os.File) (map[string]string, error) {
	m := map[string]string{}
	buf := make([]byte, 512)
	for {
		n, err := unix.Fgetxattr(int(f.Fd()), xattrName, buf)
		if err == unix.ENODATA {
			return m, nil
		}
		if err == unix.ERANGE {
			buf = make([]byte, 2*len(buf))
			if len(buf) > 64<<10 {
				return nil, fmt.Errorf("xattr %s is too large", xattrName)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get xattr %s: %w", xattrName, err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(buf[:n])))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), "=")
			if !ok {
				return nil, fmt.Errorf("xattr %s is corrupt: line %q has no '='", xattrName, sc.Text())
			}
			if m[k], err = blob.UnescapeValue(v); err != nil {
				return nil, fmt.Errorf("xattr %s is corrupt: %w", xattrName, err)
			}
		}
		return m, nil
	}
}
