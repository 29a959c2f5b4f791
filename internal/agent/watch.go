package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/fstree"
)

const (
	// watchKeepalive is the interval of SSE comments on a quiet watch, so
	// that proxies keep the stream open and a vanished client is noticed.
	watchKeepalive = 15 * time.Second
	// moveSettle is how long the first half of a rename waits for its
	// second before it is reported as a move out of the tree.
	moveSettle = 20 * time.Millisecond
)

// handleWatch serves GET /watch?path=&recursive=&include=&exclude= as
// server-sent events: "watching" once every watch is in place, then
// create, modify, delete, move, attrib and resync events (see
// api.WatchEvent). Include and exclude globs (fstree.Globs) apply to paths
// relative to the watched directory. Watching a file watches its directory
// for events naming it (and resync events, which name the directory), so
// the watch survives the file being replaced by a rename. The stream ends
// when the watched directory is deleted or moved.
func (a *Agent) handleWatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := queryPath(r, "path")
	var recursive bool
	if err == nil {
		recursive, err = queryBool(r, "recursive")
	}
	var include, exclude *fstree.Globs
	if err == nil {
		if include, err = fstree.ParseGlobs(q["include"]); err != nil {
			err = fmt.Errorf("%w: include: %v", errdefs.ErrInvalidArgument, err)
		}
	}
	if err == nil {
		if exclude, err = fstree.ParseGlobs(q["exclude"]); err != nil {
			err = fmt.Errorf("%w: exclude: %v", errdefs.ErrInvalidArgument, err)
		}
	}
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	hp := a.hostPath(p)
	fi, err := os.Stat(hp)
	if err != nil {
		errdefs.Write(w, fsErr(p, err))
		return
	}
	// For a file, watch its directory and keep the events that name it.
	dir, file := hp, !fi.IsDir()
	if file {
		dir, recursive = filepath.Dir(hp), false
	}
	wt, err := newWatcher(dir, recursive, exclude, a.sandboxPath)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	defer wt.Close()

	filter := watchFilter{path: p, file: file, include: include}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	sse := newSSEWriter(w)
	sse.event(api.WatchWatching, api.WatchEvent{Type: api.WatchWatching, Path: p, IsDirectory: !file})
	if sse.flush() != nil {
		return
	}
	emit := func(ev api.WatchEvent) {
		if filter.keep(ev) {
			sse.event(ev.Type, ev)
		}
	}

	// Raw reads happen on their own goroutine so that this one can also
	// wait for the client, keepalives and unpaired moves.
	batches := make(chan []byte)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			buf := make([]byte, 64<<10)
			n, err := wt.readBatch(buf)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case batches <- buf[:n]:
			case <-stop:
				return
			}
		}
	}()

	keepalive := time.NewTicker(watchKeepalive)
	defer keepalive.Stop()
	var settle <-chan time.Time
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			sse.comment("keepalive")
		case <-settle:
			settle = nil
			wt.flushMoves(emit)
		case err := <-readErr:
			if !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.EOF) {
				sse.event("error", api.Error{Code: api.CodeInternal, Message: fmt.Sprintf("reading file events of %s: %v", p, err)})
				sse.flush()
			}
			return
		case b := <-batches:
			if err := wt.translate(b, emit); err != nil {
				_, apiErr := errdefs.Classify(err)
				sse.event("error", apiErr)
				sse.flush()
				return
			}
			if wt.pendingMoves() {
				settle = time.After(moveSettle)
			}
		}
		if sse.flush() != nil || wt.done {
			return
		}
	}
}

// watchFilter decides which events of a watch of path reach the client.
type watchFilter struct {
	path string // as the client named it
	// file: path is a file, whose directory is watched; only events naming
	// it are kept.
	file    bool
	include *fstree.Globs // nil: everything; matched against paths relative to path
}

func (f *watchFilter) keep(ev api.WatchEvent) bool {
	switch ev.Type {
	case api.WatchResync, api.WatchWatching:
		// About the watch, not one path (a resync names the watched
		// directory even when the client named a file in it): never
		// filtered, or lost events would go unnoticed.
		return true
	}
	if f.file {
		return ev.Path == f.path || ev.From == f.path
	}
	ok := func(sp string) bool {
		if sp == f.path || f.include == nil {
			return true
		}
		return f.include.Match(strings.TrimPrefix(sp, strings.TrimSuffix(f.path, "/")+"/"))
	}
	if ev.Type == api.WatchMove {
		return ok(ev.Path) || ok(ev.From)
	}
	return ok(ev.Path)
}

// sseWriter writes server-sent events; write errors stick and end the
// stream at the next flush.
type sseWriter struct {
	w   http.ResponseWriter
	bw  *bufio.Writer
	err error
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, bw: bufio.NewWriterSize(w, 16<<10)}
}

func (s *sseWriter) event(name string, data any) {
	b, err := jsonMarshal(data)
	if err != nil {
		s.err = err
		return
	}
	s.bw.WriteString("event: " + name + "\ndata: ")
	s.bw.Write(b[:len(b)-1])
	s.bw.WriteString("\n\n")
}

func (s *sseWriter) comment(text string) { s.bw.WriteString(": " + text + "\n\n") }

func (s *sseWriter) flush() error {
	if s.err != nil {
		return s.err
	}
	if err := s.bw.Flush(); err != nil {
		s.err = err
		return err
	}
	if err := http.NewResponseController(s.w).Flush(); err != nil {
		s.err = err
	}
	return s.err
}
