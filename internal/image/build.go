package image

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

// BuildOptions tune Store.Build.
type BuildOptions struct {
	// Recipe names the recipe to build; empty means the image name.
	Recipe string
	// Force rebuilds even if the image is up to date.
	Force bool
	// Mirror overrides the Debian archive URL found in the host's apt
	// sources.
	Mirror string
	// SecurityMirror overrides the Debian security archive URL found in the
	// host's apt sources; "none" builds without security updates.
	SecurityMirror string
	// Progress receives progress for a person: a live bar if it is a
	// terminal, plain lines otherwise. Nil discards it.
	Progress io.Writer
}

// Step titles and their estimated shares of a build's time.
var (
	stepTitles  = []string{"debootstrap minbase", "apt update and upgrade", "apt-get install", "clean up", "install image"}
	stepWeights = []float64{0.30, 0.07, 0.55, 0.04, 0.04}
)

const (
	stepBootstrap = iota
	stepUpdate
	stepInstall
	stepCleanup
	stepFinish
)

// plan is what a populate function needs to build one image.
type plan struct {
	recipe  Recipe
	mirrors mirrors
	rep     *reporter
	log     *buildLog
}

// Build builds the image name from its recipe (BuildOptions.Recipe, else
// the recipe with the image's name) and returns its Info. If the image
// exists with the same recipe hash and Force is not set, Build says so on
// Progress and returns at once. The new image replaces an existing one
// atomically; an old tree still used as an overlay lower layer is kept
// aside until it is unused. Cancelling ctx stops the build, removes its
// partial tree and returns an error wrapping ctx.Err().
func (s *Store) Build(ctx context.Context, name string, opts BuildOptions) (Info, error) {
	if err := ValidateName(name); err != nil {
		return Info{}, err
	}
	rec, err := LookupRecipe(cmp.Or(opts.Recipe, name))
	if err != nil {
		return Info{}, err
	}
	out := opts.Progress
	if out == nil {
		out = io.Discard
	}
	dir, err := s.dir()
	if err != nil {
		return Info{}, err
	}
	if err := os.MkdirAll(filepath.Join(dir, ".logs"), 0o755); err != nil {
		return Info{}, err
	}
	unlock, err := lockDir(ctx, dir, out)
	if err != nil {
		return Info{}, err
	}
	defer unlock()

	hash := rec.Hash()
	if old, err := readInfo(filepath.Join(dir, name), name); err == nil {
		if old.RecipeHash == hash && !opts.Force {
			fmt.Fprintf(out, "image %s is up to date (recipe %s %s, built %s); use --force to rebuild\n",
				name, rec.Name, shortHash(hash), old.Created.Local().Format(time.DateTime))
			return old, nil
		}
		if old.RecipeHash != hash {
			fmt.Fprintf(out, "image %s was built from another recipe (%s); rebuilding\n", name, shortHash(old.RecipeHash))
		}
	}
	collectGarbage(dir, out)

	m, err := resolveMirrors(rec.Suite, opts)
	if err != nil {
		return Info{}, err
	}

	logPath := filepath.Join(dir, ".logs", name+".log")
	blog, err := createBuildLog(logPath)
	if err != nil {
		return Info{}, err
	}
	defer blog.Close()
	fmt.Fprintf(blog, "sbx image build %s: recipe %s %s, suite %s, mirror %s, security %s, packages %s, started %s\n",
		name, rec.Name, hash, rec.Suite, m.Main, cmp.Or(m.Security, "none"), strings.Join(rec.Packages, " "), time.Now().Format(time.RFC3339))

	tmp, err := os.MkdirTemp(dir, ".tmp-"+name+"-")
	if err != nil {
		return Info{}, err
	}
	installed := false
	defer func() {
		if !installed {
			if err := removeTree(tmp); err != nil {
				fmt.Fprintf(out, "warning: could not remove partial build %s: %v (the next build retries)\n", tmp, err)
			}
		}
	}()
	// MkdirTemp makes 0700; the image directory must be traversable by the
	// unprivileged users sandboxes may map root to.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Info{}, err
	}

	rep := newReporter(out, stepTitles, stepWeights)
	defer rep.close()
	fmt.Fprintf(out, "building image %s (recipe %s, %d packages, %s from %s)\n", name, rec.Name, len(rec.Packages), rec.Suite, m.Main)
	started := time.Now()
	populate := s.populate
	if populate == nil {
		populate = debianPopulate
	}
	p := &plan{recipe: rec, mirrors: m, rep: rep, log: blog}
	root := filepath.Join(tmp, "rootfs")

	fail := func(err error) (Info, error) {
		rep.finish(err)
		rep.close()
		fmt.Fprintf(blog, "\nFAILED: %v\n", err)
		if ctx.Err() != nil {
			return Info{}, fmt.Errorf("build of image %s interrupted: %w", name, ctx.Err())
		}
		if tail := blog.Tail(); len(tail) > 0 {
			fmt.Fprintf(out, "--- last lines of %s ---\n%s\n---\n", logPath, strings.Join(tail, "\n"))
		}
		return Info{}, fmt.Errorf("build image %s: %w (full log: %s)", name, err, logPath)
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		return fail(err)
	}
	if err := populate(ctx, root, p); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}

	rep.start(stepFinish, "")
	size, err := diskUsage(root)
	if err != nil {
		return fail(fmt.Errorf("measure %s: %w", root, err))
	}
	info := Info{
		Name: name, Recipe: rec.Name, RecipeHash: hash, Suite: rec.Suite,
		Packages: slices.Clone(rec.Packages), Mirror: m.Main,
		Created: time.Now().UTC().Truncate(time.Second), SizeBytes: size,
		BuildSeconds: time.Since(started).Round(100 * time.Millisecond).Seconds(),
	}
	if err := writeInfo(tmp, info); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil { // last moment to honour an interrupt
		return fail(err)
	}
	if err := install(tmp, filepath.Join(dir, name), out, rep); err != nil {
		return fail(err)
	}
	installed = true
	rep.finish(nil)
	rep.close()
	fmt.Fprintf(blog, "\nbuilt in %.1fs, %s\n", time.Since(started).Seconds(), humanBytes(size))
	info.Rootfs = filepath.Join(dir, name, "rootfs")
	fmt.Fprintf(out, "image %s built in %s: %s at %s\n", name, time.Since(started).Round(100*time.Millisecond), humanBytes(size), info.Rootfs)
	return info, nil
}

// resolveMirrors applies the overrides in opts to the host's apt sources.
func resolveMirrors(suite string, opts BuildOptions) (mirrors, error) {
	var m mirrors
	if opts.Mirror == "" || opts.SecurityMirror == "" {
		srcs, err := readHostSources("/etc/apt")
		if err == nil {
			m, err = chooseMirrors(srcs, suite)
		}
		if err != nil && opts.Mirror == "" {
			return m, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
		}
	}
	if opts.Mirror != "" {
		if !fetchable(opts.Mirror) {
			return m, fmt.Errorf("%w: mirror %q is not an http, https or file URL", errdefs.ErrInvalidArgument, opts.Mirror)
		}
		m.Main = opts.Mirror
	}
	switch opts.SecurityMirror {
	case "":
	case "none":
		m.Security = ""
	default:
		if !fetchable(opts.SecurityMirror) {
			return m, fmt.Errorf("%w: security mirror %q is not an http, https or file URL (or \"none\")", errdefs.ErrInvalidArgument, opts.SecurityMirror)
		}
		m.Security = opts.SecurityMirror
	}
	return m, nil
}

// install moves the complete image directory tmp to target. If target
// exists, the two are swapped in one atomic rename, so readers see either
// the old image or the new one, never neither; the old one then sits at
// tmp and is retired.
func install(tmp, target string, out io.Writer, rep *reporter) error {
	// rename(2) moves a directory onto a missing or empty one and refuses a
	// non-empty one, which is what tells us there is an image to replace.
	err := os.Rename(tmp, target)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.ENOTEMPTY) {
		return fmt.Errorf("install image: %w", err)
	}
	usersBefore, err := overlayUsers(filepath.Join(target, "rootfs"))
	if err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, target, unix.RENAME_EXCHANGE); err != nil {
		if !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("replace image %s: %w", target, err)
		}
		// No RENAME_EXCHANGE on this file system: two renames, with a
		// moment in which the image is missing.
		old := tmp + ".old"
		if err := os.Rename(target, old); err != nil {
			return fmt.Errorf("replace image %s: %w", target, err)
		}
		if err := os.Rename(tmp, target); err != nil {
			_ = os.Rename(old, target)
			return fmt.Errorf("replace image %s: %w", target, err)
		}
		if err := os.Rename(old, tmp); err != nil {
			return fmt.Errorf("replace image %s: %w", target, err)
		}
	}
	// A sandbox started between the check and the swap still runs on the
	// old tree under its old path; look again.
	usersAfter, err := overlayUsers(filepath.Join(target, "rootfs"))
	if err != nil || usersBefore+usersAfter > 0 {
		aside := filepath.Join(filepath.Dir(target), ".old-"+filepath.Base(target)+"-"+time.Now().UTC().Format("20060102T150405.000000000"))
		if err := os.Rename(tmp, aside); err != nil {
			return fmt.Errorf("move the replaced image aside: %w", err)
		}
		rep.printf("the replaced image is still used by running sandboxes: kept at %s until they are gone", aside)
		return nil
	}
	if err := removeTree(tmp); err != nil {
		fmt.Fprintf(out, "warning: could not remove the replaced image at %s: %v (the next build retries)\n", tmp, err)
	}
	return nil
}

// collectGarbage deletes what earlier builds left behind: partial trees of
// interrupted builds (.tmp-*, .rm-*) and replaced images (.old-*) no longer
// used by any overlay. It runs under the store lock, so no build owns them.
func collectGarbage(dir string, out io.Writer) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		p := filepath.Join(dir, n)
		switch {
		case strings.HasPrefix(n, ".tmp-"), strings.HasPrefix(n, ".rm-"):
		case strings.HasPrefix(n, ".old-"):
			// The overlays of sandboxes on a replaced image name it by the
			// image's own path, which now holds the new tree: only when no
			// overlay uses that path is the old tree certainly unused.
			name := strings.TrimPrefix(n, ".old-")
			if i := strings.LastIndex(name, "-"); i > 0 {
				name = name[:i]
			}
			if users, err := overlayUsers(filepath.Join(dir, name, "rootfs")); err != nil || users > 0 {
				continue
			}
		default:
			continue
		}
		if err := removeTree(p); err != nil {
			fmt.Fprintf(out, "warning: could not remove leftover %s: %v\n", p, err)
			continue
		}
		fmt.Fprintf(out, "removed leftover %s\n", p)
	}
}

// Remove deletes the image name. An image used as an overlay lower layer
// by a running sandbox is not removed (errdefs.ErrConflict).
func (s *Store) Remove(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	dir, err := s.dir()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
		return notBuilt(name)
	}
	unlock, err := lockDir(ctx, dir, io.Discard)
	if err != nil {
		return err
	}
	defer unlock()
	target := filepath.Join(dir, name)
	if _, err := os.Stat(target); errors.Is(err, os.ErrNotExist) {
		return notBuilt(name) // removed while we waited for the lock
	}
	users, err := overlayUsers(filepath.Join(target, "rootfs"))
	if err != nil {
		return err
	}
	if users > 0 {
		return fmt.Errorf("%w: image %s is in use by %d sandbox mounts: destroy those sandboxes first", errdefs.ErrConflict, name, users)
	}
	// Rename first so the image vanishes at once; a crash during the
	// deletion leaves a .rm-* directory for the next build to collect.
	gone, err := os.MkdirTemp(dir, ".rm-"+name+"-")
	if err != nil {
		return err
	}
	if err := os.Rename(target, gone+"/image"); err != nil {
		os.Remove(gone)
		return err
	}
	_ = os.Remove(filepath.Join(dir, ".logs", name+".log"))
	return removeTree(gone)
}

// lockDir takes the store's build lock, waiting (and saying so) while
// another build holds it. The lock is an flock, so it dies with its holder.
func lockDir(ctx context.Context, dir string, out io.Writer) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	said := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if !said {
			fmt.Fprintln(out, "waiting for another image build or removal to finish ...")
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// diskUsage is the space the tree takes on disk, counting hard-linked
// files once, like du.
func diskUsage(root string) (int64, error) {
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	var total int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			total += fi.Size()
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			k := ino{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}

// buildLog is the full log of one build, in a file, with the last lines
// kept in memory to show when the build fails.
type buildLog struct {
	f    *os.File
	mu   sync.Mutex
	tail []string
}

const tailLines = 30

func createBuildLog(path string) (*buildLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	return &buildLog{f: f}, nil
}

func (l *buildLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// line records one line of command output.
func (l *buildLog) line(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.f.WriteString(s + "\n")
	if len(l.tail) == tailLines {
		l.tail = append(l.tail[:0], l.tail[1:]...)
	}
	l.tail = append(l.tail, s)
}

// Tail returns the last lines of command output.
func (l *buildLog) Tail() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tail...)
}

func (l *buildLog) Close() error { return l.f.Close() }

func shortHash(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	return h[:min(12, len(h))]
}

// humanBytes formats n in binary units, like "507 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
