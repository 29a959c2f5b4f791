package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/fstree"
)

// watchStream is an open watch; events arrive on ch, which is closed when
// the stream ends.
type watchStream struct {
	ch   chan api.WatchEvent
	resp *http.Response
}

func (f *fsFixture) watch(query string) *watchStream {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://agent/watch?"+query, nil)
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		f.t.Fatalf("watch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ws := &watchStream{ch: make(chan api.WatchEvent, 1<<16), resp: resp}
	return ws
}

// start reads events into ch until the stream ends, after the first
// (watching) event has been checked.
func (ws *watchStream) start(t *testing.T) {
	t.Helper()
	sc := bufio.NewScanner(ws.resp.Body)
	first := make(chan api.WatchEvent, 1)
	go func() {
		defer close(ws.ch)
		defer ws.resp.Body.Close()
		var name string
		seenFirst := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				var ev api.WatchEvent
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev); err != nil {
					ev = api.WatchEvent{Type: "bad-json", Message: line}
				}
				if name == "error" {
					ev = api.WatchEvent{Type: "error", Message: line}
				} else if ev.Type != name {
					ev.Message = fmt.Sprintf("event name %q differs from type", name)
				}
				if !seenFirst {
					seenFirst = true
					first <- ev
					continue
				}
				ws.ch <- ev
			}
		}
	}()
	select {
	case ev := <-first:
		if ev.Type != api.WatchWatching {
			t.Fatalf("first event %+v, want watching", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no watching event")
	}
}

// expect waits for want, in order, allowing other events in between, and
// returns everything seen.
func (ws *watchStream) expect(t *testing.T, want ...api.WatchEvent) []api.WatchEvent {
	t.Helper()
	var seen []api.WatchEvent
	deadline := time.After(5 * time.Second)
	for len(want) > 0 {
		select {
		case ev, ok := <-ws.ch:
			if !ok {
				t.Fatalf("stream ended; still waiting for %+v; saw %+v", want, seen)
			}
			seen = append(seen, ev)
			if ev == want[0] {
				want = want[1:]
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %+v; saw %+v", want, seen)
		}
	}
	return seen
}

// quiet collects what arrives within d.
func (ws *watchStream) quiet(d time.Duration) []api.WatchEvent {
	var seen []api.WatchEvent
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-ws.ch:
			if !ok {
				return seen
			}
			seen = append(seen, ev)
		case <-deadline:
			return seen
		}
	}
}

func ev(typ, p string, dir bool) api.WatchEvent {
	return api.WatchEvent{Type: typ, Path: p, IsDirectory: dir}
}

func TestWatchScriptedSequence(t *testing.T) {
	f := newFSFixture(t)
	os.MkdirAll(f.host("/w"), 0o755)
	os.MkdirAll(f.host("/outside/moved-in"), 0o755)
	ws := f.watch("path=/w&recursive=true")
	ws.start(t)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Each phase runs at full speed; between phases the test waits for
	// the events, as a phase acts in directories created by the one
	// before, whose watches are added when their create is read.
	must(os.WriteFile(f.host("/w/a.txt"), []byte("hello"), 0o644))
	must(os.Mkdir(f.host("/w/sub"), 0o755))
	// Right after the mkdir, before the agent can have added a watch:
	// the scan of the new directory reports it.
	must(os.WriteFile(f.host("/w/sub/b.txt"), []byte("b"), 0o644))
	seen := ws.expect(t,
		ev("create", "/w/a.txt", false),
		ev("modify", "/w/a.txt", false),
		ev("create", "/w/sub", true),
		ev("create", "/w/sub/b.txt", false),
	)

	must(os.Chmod(f.host("/w/a.txt"), 0o600))
	must(os.Rename(f.host("/w/a.txt"), f.host("/w/sub/c.txt")))
	must(os.Remove(f.host("/w/sub/b.txt")))
	must(os.Rename(f.host("/w/sub/c.txt"), f.host("/outside/c.txt")))
	must(os.Rename(f.host("/outside/moved-in"), f.host("/w/moved-in")))
	seen = append(seen, ws.expect(t,
		ev("attrib", "/w/a.txt", false),
		api.WatchEvent{Type: "move", Path: "/w/sub/c.txt", From: "/w/a.txt", To: "/w/sub/c.txt"},
		ev("delete", "/w/sub/b.txt", false),
		ev("delete", "/w/sub/c.txt", false),
		ev("create", "/w/moved-in", true),
	)...)

	must(os.WriteFile(f.host("/w/moved-in/new.txt"), nil, 0o644))
	must(os.Rename(f.host("/w/sub"), f.host("/w/sub2")))
	must(os.WriteFile(f.host("/w/sub2/after-rename"), nil, 0o644))
	must(os.RemoveAll(f.host("/w/sub2")))
	seen = append(seen, ws.expect(t,
		ev("create", "/w/moved-in/new.txt", false),
		api.WatchEvent{Type: "move", Path: "/w/sub2", IsDirectory: true, From: "/w/sub", To: "/w/sub2"},
		ev("create", "/w/sub2/after-rename", false),
		ev("delete", "/w/sub2/after-rename", false),
		ev("delete", "/w/sub2", true),
	)...)
	seen = append(seen, ws.quiet(100*time.Millisecond)...)
	creates := map[string]int{}
	for _, e := range seen {
		if e.Type == "create" {
			creates[e.Path]++
		}
		if e.Type == "error" || e.Type == "bad-json" || e.Message != "" {
			t.Errorf("unexpected event %+v", e)
		}
	}
	for p, n := range creates {
		if n > 1 {
			t.Errorf("create of %s reported %d times", p, n)
		}
	}

	// Deleting the watched directory ends the stream.
	must(os.RemoveAll(f.host("/w")))
	ws.expect(t, ev("delete", "/w", true))
	for range ws.quiet(2 * time.Second) {
	}
	if _, ok := <-ws.ch; ok {
		t.Error("stream still open after the watched directory was deleted")
	}
}

func TestWatchNewTreesAndFilters(t *testing.T) {
	f := newFSFixture(t)
	os.MkdirAll(f.host("/w/node_modules"), 0o755)
	ws := f.watch("path=/w&recursive=true&include=*.go&include=/deep&exclude=node_modules")
	ws.start(t)
	os.MkdirAll(f.host("/w/deep/er/est"), 0o755)
	os.WriteFile(f.host("/w/deep/er/est/x.txt"), nil, 0o644)
	os.WriteFile(f.host("/w/main.go"), nil, 0o644)
	os.WriteFile(f.host("/w/notes.txt"), nil, 0o644)
	os.WriteFile(f.host("/w/node_modules/lib.go"), nil, 0o644)
	os.MkdirAll(f.host("/w/pkg"), 0o755)
	os.WriteFile(f.host("/w/pkg/util.go"), nil, 0o644)

	seen := ws.expect(t,
		ev("create", "/w/deep", true),
		ev("create", "/w/deep/er/est/x.txt", false),
		ev("create", "/w/main.go", false),
		ev("create", "/w/pkg/util.go", false),
	)
	seen = append(seen, ws.quiet(200*time.Millisecond)...)
	for _, e := range seen {
		if strings.Contains(e.Path, "node_modules") || strings.HasSuffix(e.Path, ".txt") && !strings.HasPrefix(e.Path, "/w/deep") || e.Path == "/w/pkg" {
			t.Errorf("filtered event delivered: %+v", e)
		}
	}
}

func TestWatchFileSurvivesReplace(t *testing.T) {
	f := newFSFixture(t)
	os.MkdirAll(f.host("/w"), 0o755)
	os.WriteFile(f.host("/w/config.json"), []byte("{}"), 0o644)
	ws := f.watch("path=/w/config.json")
	ws.start(t)
	os.WriteFile(f.host("/w/other"), nil, 0o644)
	// An editor's atomic save: write a temporary file, rename it over.
	os.WriteFile(f.host("/w/.config.json.tmp"), []byte(`{"a":1}`), 0o644)
	os.Rename(f.host("/w/.config.json.tmp"), f.host("/w/config.json"))
	os.WriteFile(f.host("/w/config.json"), []byte(`{"a":2}`), 0o644)
	seen := ws.expect(t,
		api.WatchEvent{Type: "move", Path: "/w/config.json", From: "/w/.config.json.tmp", To: "/w/config.json"},
		ev("modify", "/w/config.json", false),
	)
	for _, e := range append(seen, ws.quiet(100*time.Millisecond)...) {
		if e.Path != "/w/config.json" {
			t.Errorf("event for another file: %+v", e)
		}
	}
}

func TestWatchOverflowIsReported(t *testing.T) {
	tests := []struct {
		name, path string
		// after makes a change the watch reports once the resync is out.
		after func(f *fsFixture)
		want  api.WatchEvent
	}{
		{"directory", "/w", func(f *fsFixture) { os.WriteFile(f.host("/w/after"), nil, 0o644) }, ev("create", "/w/after", false)},
		// A file's watch is its directory's: the resync names the
		// directory, and must not be filtered out as another path.
		{"file", "/w/a", func(f *fsFixture) { os.WriteFile(f.host("/w/a"), []byte("x"), 0o644) }, ev("modify", "/w/a", false)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFSFixture(t)
			os.MkdirAll(f.host("/w"), 0o755)
			a, b := f.host("/w/a"), f.host("/w/b")
			os.WriteFile(a, nil, 0o644)
			os.WriteFile(b, nil, 0o644)
			ws := f.watch("path=" + url.QueryEscape(tc.path))
			// Read nothing yet: the agent blocks on the full connection,
			// and the kernel's queue (16384 events by default) overflows.
			// Alternating files keeps the kernel from merging the events.
			for i := range 40000 {
				p := a
				if i%2 == 1 {
					p = b
				}
				if err := os.Chmod(p, os.FileMode(0o600+i%2)); err != nil {
					t.Fatal(err)
				}
			}
			ws.start(t)
			deadline := time.After(20 * time.Second)
			for {
				select {
				case e, ok := <-ws.ch:
					if !ok {
						t.Fatal("stream ended without a resync event")
					}
					if e.Type == api.WatchResync {
						if e.Path != "/w" || e.Message == "" {
							t.Errorf("resync event %+v", e)
						}
						// Events keep coming after the resync.
						tc.after(f)
						ws.expect(t, tc.want)
						return
					}
				case <-deadline:
					t.Fatal("no resync event after an overflow")
				}
			}
		})
	}
}

func TestWatchFilter(t *testing.T) {
	include, err := fstree.ParseGlobs([]string{"*.go"})
	if err != nil {
		t.Fatal(err)
	}
	resync := api.WatchEvent{Type: api.WatchResync, Path: "/w", IsDirectory: true}
	tests := []struct {
		name   string
		filter watchFilter
		ev     api.WatchEvent
		want   bool
	}{
		{"file: its event", watchFilter{path: "/w/a", file: true}, ev("modify", "/w/a", false), true},
		{"file: moved onto it", watchFilter{path: "/w/a", file: true}, api.WatchEvent{Type: "move", Path: "/w/a", From: "/w/t"}, true},
		{"file: moved away", watchFilter{path: "/w/a", file: true}, api.WatchEvent{Type: "move", Path: "/w/t", From: "/w/a"}, true},
		{"file: a sibling", watchFilter{path: "/w/a", file: true}, ev("modify", "/w/b", false), false},
		{"file: its directory", watchFilter{path: "/w/a", file: true}, ev("attrib", "/w", true), false},
		{"file: resync", watchFilter{path: "/w/a", file: true}, resync, true},
		{"directory: anything", watchFilter{path: "/w"}, ev("create", "/w/x/y", false), true},
		{"include: match", watchFilter{path: "/w/", include: include}, ev("create", "/w/m.go", false), true},
		{"include: no match", watchFilter{path: "/w", include: include}, ev("create", "/w/m.txt", false), false},
		{"include: the directory itself", watchFilter{path: "/w", include: include}, ev("delete", "/w", true), true},
		{"include: moved into a match", watchFilter{path: "/w", include: include}, api.WatchEvent{Type: "move", Path: "/w/m.go", From: "/w/m.txt"}, true},
		{"include: resync", watchFilter{path: "/w", include: include}, resync, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.filter.keep(tc.ev); got != tc.want {
				t.Errorf("keep(%+v) = %v, want %v", tc.ev, got, tc.want)
			}
		})
	}
}
