package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/fstree"
)

const (
	// dirMask is what a watched directory reports. IN_EXCL_UNLINK drops
	// events of files already unlinked (writes to deleted temp files).
	dirMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB |
		unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
		unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK
	// synthTTL is how long a create event synthesized by scanning a new
	// directory suppresses the kernel's own event for the same path.
	synthTTL = 2 * time.Second
)

// watcher is one inotify instance watching a directory, or a whole tree,
// and translating the kernel's events into api.WatchEvents. It is used by
// one goroutine; only the reads of raw events run elsewhere.
type watcher struct {
	fd        int
	file      *os.File // fd, read through the runtime poller
	root      string   // host path of the watched directory
	recursive bool
	exclude   *fstree.Globs
	// toSandbox maps a host path to the sandbox path reported.
	toSandbox func(string) string

	wds   map[int32]string // watch descriptor → host dir
	dirs  map[string]int32 // host dir → watch descriptor
	moves map[uint32]pendingMove
	synth map[string]time.Time
	// done is set once the watched directory itself is gone.
	done bool
}

type pendingMove struct {
	from  string
	isDir bool
}

// newWatcher watches host directory root (and, if recursive, every
// directory beneath it that exclude does not match). Every watch is in
// place when it returns.
func newWatcher(root string, recursive bool, exclude *fstree.Globs, toSandbox func(string) string) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			return nil, fmt.Errorf("%w: too many watches open in this sandbox (fs.inotify.max_user_instances); close some", errdefs.ErrCapacity)
		}
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	w := &watcher{
		fd: fd, file: os.NewFile(uintptr(fd), "inotify"),
		root: root, recursive: recursive, exclude: exclude, toSandbox: toSandbox,
		wds: map[int32]string{}, dirs: map[string]int32{}, moves: map[uint32]pendingMove{}, synth: map[string]time.Time{},
	}
	if err := w.addTree(root, nil); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Close stops the watch; a Read in progress returns.
func (w *watcher) Close() error { return w.file.Close() }

// rel is host path p relative to the root, slash-separated; "" for the
// root.
func (w *watcher) rel(p string) string {
	if p == w.root {
		return ""
	}
	return strings.TrimPrefix(p, w.root+"/")
}

// addTree watches dir and, when recursive, the directories beneath it.
// With emit non-nil the entries found are reported as created: dir is new,
// and whatever appeared in it before its watch was in place would
// otherwise go unreported.
func (w *watcher) addTree(dir string, emit func(api.WatchEvent)) error {
	wd, err := unix.InotifyAddWatch(w.fd, dir, dirMask)
	if err != nil {
		switch {
		case dir != w.root && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR)):
			return nil // gone already; its delete is on its way
		case errors.Is(err, syscall.ENOSPC):
			return fmt.Errorf("%w: the sandbox's inotify watch limit (fs.inotify.max_user_watches) is reached; watch a smaller tree or exclude large directories", errdefs.ErrCapacity)
		}
		return fsErr(w.toSandbox(dir), err)
	}
	if old, ok := w.wds[int32(wd)]; ok && old != dir {
		delete(w.dirs, old)
	}
	w.wds[int32(wd)], w.dirs[dir] = dir, int32(wd)
	if !w.recursive {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil // vanished or unreadable: nothing to watch beneath
	}
	for _, e := range ents {
		child := filepath.Join(dir, e.Name())
		if w.exclude.Match(w.rel(child)) {
			continue
		}
		if emit != nil {
			emit(api.WatchEvent{Type: api.WatchCreate, Path: w.toSandbox(child), IsDirectory: e.IsDir()})
			w.synth[child] = time.Now()
		}
		if e.IsDir() {
			if err := w.addTree(child, emit); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeTree drops the watches of dir and the directories beneath it.
func (w *watcher) removeTree(dir string) {
	for d, wd := range w.dirs {
		if d == dir || strings.HasPrefix(d, dir+"/") {
			_, _ = unix.InotifyRmWatch(w.fd, uint32(wd))
			delete(w.dirs, d)
			delete(w.wds, wd)
		}
	}
}

// renameTree records that watched directory from is now to.
func (w *watcher) renameTree(from, to string) {
	for d, wd := range w.dirs {
		if d == from || strings.HasPrefix(d, from+"/") {
			nd := to + d[len(from):]
			delete(w.dirs, d)
			w.dirs[nd], w.wds[wd] = wd, nd
		}
	}
}

// readBatch reads the next batch of raw events into buf.
func (w *watcher) readBatch(buf []byte) (int, error) { return w.file.Read(buf) }

// translate turns a batch of raw inotify events into watch events, calling
// emit for each. A move whose first half ends the batch stays pending: its
// second half may start the next one, or flushMoves settles it.
func (w *watcher) translate(buf []byte, emit func(api.WatchEvent)) error {
	var last api.WatchEvent
	dedup := func(ev api.WatchEvent) {
		// The kernel merges identical events only at the tail of its
		// queue; a burst of writes still makes runs of modifies.
		if ev.Type == api.WatchModify && last.Type == api.WatchModify && last.Path == ev.Path {
			return
		}
		last = ev
		emit(ev)
	}
	now := time.Now()
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
		off += unix.SizeofInotifyEvent + int(raw.Len)
		name := strings.TrimRight(string(nameBytes), "\x00")
		mask := raw.Mask
		if len(w.moves) > 0 {
			// The kernel queues the two halves of a rename back to
			// back: a first half followed by anything but its second
			// is a move out of the tree. Reporting it now keeps the
			// events in order.
			if _, paired := w.moves[raw.Cookie]; !paired || mask&unix.IN_MOVED_TO == 0 {
				w.flushMoves(dedup)
			}
		}

		if mask&unix.IN_Q_OVERFLOW != 0 {
			dedup(api.WatchEvent{Type: api.WatchResync, Path: w.toSandbox(w.root), IsDirectory: true,
				Message: "the kernel's event queue overflowed and events were lost; re-read the watched tree"})
			// Directories created while events were lost are not
			// watched yet.
			if err := w.addTree(w.root, nil); err != nil {
				return err
			}
			continue
		}
		dir, ok := w.wds[raw.Wd]
		if mask&unix.IN_IGNORED != 0 {
			if ok {
				delete(w.wds, raw.Wd)
				if w.dirs[dir] == raw.Wd {
					delete(w.dirs, dir)
				}
			}
			continue
		}
		if !ok {
			continue // a watch removed since the kernel queued this
		}
		p := dir
		if name != "" {
			p = filepath.Join(dir, name)
		}
		isDir := mask&unix.IN_ISDIR != 0
		if name != "" && w.exclude.Match(w.rel(p)) {
			continue
		}
		ev := api.WatchEvent{Path: w.toSandbox(p), IsDirectory: isDir}
		switch {
		case mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
			if dir == w.root {
				w.done = true
				dedup(api.WatchEvent{Type: api.WatchDelete, Path: w.toSandbox(w.root), IsDirectory: true})
				return nil
			}
			// A subdirectory: its parent reported it.
		case mask&unix.IN_CREATE != 0:
			if t, ok := w.synth[p]; ok && now.Sub(t) < synthTTL {
				delete(w.synth, p)
				continue
			}
			ev.Type = api.WatchCreate
			dedup(ev)
			if isDir && w.recursive {
				if err := w.addTree(p, dedup); err != nil {
					return err
				}
			}
		case mask&unix.IN_MODIFY != 0:
			ev.Type = api.WatchModify
			dedup(ev)
		case mask&unix.IN_ATTRIB != 0:
			ev.Type = api.WatchAttrib
			dedup(ev)
		case mask&unix.IN_DELETE != 0:
			ev.Type = api.WatchDelete
			dedup(ev)
		case mask&unix.IN_MOVED_FROM != 0:
			w.moves[raw.Cookie] = pendingMove{from: p, isDir: isDir}
		case mask&unix.IN_MOVED_TO != 0:
			if pm, ok := w.moves[raw.Cookie]; ok {
				delete(w.moves, raw.Cookie)
				dedup(api.WatchEvent{Type: api.WatchMove, Path: ev.Path, IsDirectory: isDir,
					From: w.toSandbox(pm.from), To: ev.Path})
				if isDir && w.recursive {
					w.renameTree(pm.from, p)
					if _, watched := w.dirs[p]; !watched {
						if err := w.addTree(p, nil); err != nil {
							return err
						}
					}
				}
				continue
			}
			// Moved in from outside the watched tree.
			ev.Type = api.WatchCreate
			dedup(ev)
			if isDir && w.recursive {
				if err := w.addTree(p, nil); err != nil {
					return err
				}
			}
		}
	}
	for p, t := range w.synth {
		if now.Sub(t) >= synthTTL {
			delete(w.synth, p)
		}
	}
	return nil
}

// pendingMoves reports whether a move awaits its second half.
func (w *watcher) pendingMoves() bool { return len(w.moves) > 0 }

// flushMoves reports moves whose destination never came as deletes: the
// entries left the watched tree.
func (w *watcher) flushMoves(emit func(api.WatchEvent)) {
	for c, pm := range w.moves {
		delete(w.moves, c)
		if pm.isDir {
			w.removeTree(pm.from)
		}
		emit(api.WatchEvent{Type: api.WatchDelete, Path: w.toSandbox(pm.from), IsDirectory: pm.isDir})
	}
}
