package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/sandbox"
	"github.com/sbx-dev/sbx/internal/store"
)

// newTestPreviews returns a server with previews over a store at dir and
// a manager with no backend: nothing runs, so these tests stay above the
// sandbox layer and record exposures directly.
func newTestPreviews(t *testing.T, dir string, listenHost string) (*Previews, *Server) {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p := NewPreviews(st, PreviewConfig{
		Domain:        "Preview.Example.Test.",
		PublicURL:     &url.URL{Scheme: "https", Host: "sbx.example.test:8443"},
		ListenHost:    listenHost,
		ReservedPorts: []int{7070},
	}, nil)
	t.Cleanup(p.Close)
	s := New(Config{Manager: sandbox.New(sandbox.Config{Store: st}), Previews: p, Version: "test"})
	return p, s
}

// mustRecord exposes a port as if the sandbox were running.
func mustRecord(t *testing.T, p *Previews, id string, req api.ExposePortRequest) *exposure {
	t.Helper()
	p.mu.RLock()
	epoch := p.epoch[id]
	p.mu.RUnlock()
	e, err := p.record(context.Background(), id, req, epoch)
	if err != nil {
		t.Fatalf("record %s:%d: %v", id, req.Port, err)
	}
	return e
}

func TestExposeRecord(t *testing.T) {
	ctx := context.Background()
	p, _ := newTestPreviews(t, t.TempDir(), "")

	e := mustRecord(t, p, "box", api.ExposePortRequest{Port: 8080, Name: "web"})
	if len(e.token) != previewTokenLen || api.ValidatePreviewToken(e.token) != nil {
		t.Fatalf("generated token %q", e.token)
	}
	first := p.view(e)
	wantHost := "https://8080-box-" + e.token + ".preview.example.test:8443/"
	wantPath := "https://sbx.example.test:8443/preview/box/8080/" + e.token + "/"
	if first.URL != wantHost || first.URLs.Host != wantHost || first.URLs.Path != wantPath || first.URLs.Port != "" || first.Name != "web" {
		t.Errorf("view = %+v", first)
	}

	// Exposing again keeps the URL; a name may change, a token may not.
	again := mustRecord(t, p, "box", api.ExposePortRequest{Port: 8080})
	if again != e || p.view(again).URLs != first.URLs || p.view(again).Name != "web" {
		t.Errorf("exposed again: %+v, want %+v", p.view(again), first)
	}
	if _, err := p.record(ctx, "box", api.ExposePortRequest{Port: 8080, Token: "mychosen1"}, 0); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("another token for an exposed port: %v", err)
	}

	// Unexposed: gone; exposed again: the same token.
	if err := p.unexpose(ctx, "box", 8080); err != nil {
		t.Fatal(err)
	}
	if err := p.unexpose(ctx, "box", 8080); err != nil {
		t.Fatalf("unexpose is not idempotent: %v", err)
	}
	if _, err := p.resolve("box", 8080, e.token); !errors.Is(err, errdefs.ErrPreviewGone) {
		t.Errorf("resolve after unexpose: %v", err)
	}
	if got := p.list("box"); len(got) != 0 {
		t.Errorf("list after unexpose: %+v", got)
	}
	if mustRecord(t, p, "box", api.ExposePortRequest{Port: 8080}) != e {
		t.Error("re-exposing an unexposed port changed its token")
	}

	// An unexposed port may take a token of the caller's choice.
	_ = p.unexpose(ctx, "box", 8080)
	chosen := mustRecord(t, p, "box", api.ExposePortRequest{Port: 8080, Token: "mychosen1"})
	if chosen.token != "mychosen1" {
		t.Errorf("token %q", chosen.token)
	}
	if _, err := p.resolve("box", 8080, e.token); !errors.Is(err, errdefs.ErrPreviewGone) {
		t.Errorf("the replaced token: %v, want gone", err)
	}

	// A stop ends everything; an exposure racing with it is refused.
	mustRecord(t, p, "box", api.ExposePortRequest{Port: 3000})
	p.mu.RLock()
	epoch := p.epoch["box"]
	p.mu.RUnlock()
	p.SandboxStopped("box")
	if _, err := p.record(ctx, "box", api.ExposePortRequest{Port: 5000}, epoch); !errors.Is(err, errStoppedMeanwhile) {
		t.Errorf("record across a stop: %v", err)
	}
	for _, tok := range []string{e.token, "mychosen1"} {
		if _, err := p.resolve("box", 8080, tok); !errors.Is(err, errdefs.ErrPreviewGone) {
			t.Errorf("resolve %s after stop: %v", tok, err)
		}
	}
	if got := p.list("box"); len(got) != 0 {
		t.Errorf("list after stop: %+v", got)
	}
	// The next run gets a new URL for the same port.
	if next := mustRecord(t, p, "box", api.ExposePortRequest{Port: 8080}); next.token == e.token {
		t.Error("a new run reused the old token")
	}
	if _, err := p.resolve("box", 8080, "unknowntoken"); !errors.Is(err, errdefs.ErrPreviewNotFound) {
		t.Errorf("unknown token: %v", err)
	}
}

func TestExposeLimits(t *testing.T) {
	p, _ := newTestPreviews(t, t.TempDir(), "")
	if err := p.checkPort(7070); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "7070") {
		t.Errorf("reserved port: %v", err)
	}
	for port := 1; port <= maxPortsPerSandbox; port++ {
		mustRecord(t, p, "many", api.ExposePortRequest{Port: port})
	}
	if _, err := p.record(context.Background(), "many", api.ExposePortRequest{Port: 9999}, 0); !errors.Is(err, errdefs.ErrCapacity) {
		t.Errorf("one exposure too many: %v", err)
	}
	// Re-exposing an exposed port is not a new one.
	mustRecord(t, p, "many", api.ExposePortRequest{Port: 1})
	if got := p.list("many"); len(got) != maxPortsPerSandbox || got[0].Port != 1 || got[len(got)-1].Port != maxPortsPerSandbox {
		t.Errorf("list: %d ports", len(got))
	}
}

func TestExposuresSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	p, _ := newTestPreviews(t, dir, "127.0.0.1")
	e := mustRecord(t, p, "box", api.ExposePortRequest{Port: 8080})
	if e.listenPort == 0 {
		t.Fatal("no dedicated listener")
	}
	p.Close()

	// A new daemon finds the exposure, but the sandbox is not running
	// (this manager runs nothing): it ended while the daemon was down.
	p2, _ := newTestPreviews(t, dir, "127.0.0.1")
	if _, err := p2.resolve("box", 8080, e.token); !errors.Is(err, errdefs.ErrPreviewGone) {
		t.Errorf("resolve after restart: %v, want gone", err)
	}
	// Its dedicated listener is back for a while, answering 410 like
	// the other forms (preview_test.go checks that it closes later).
	p2.mu.RLock()
	var listenPort int
	for _, x := range p2.bySbx["box"][8080] {
		if x.ln != nil {
			listenPort = x.ln.port
		}
	}
	p2.mu.RUnlock()
	if listenPort == 0 {
		t.Fatal("no listener for an exposure that ended while the daemon was down")
	}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(listenPort)+"/", nil)
	req.AddCookie(&http.Cookie{Name: previewCookiePrefix + strconv.Itoa(listenPort), Value: e.token})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Errorf("port form after a restart: %d, want 410", resp.StatusCode)
	}
}

func TestViewLongID(t *testing.T) {
	p, _ := newTestPreviews(t, t.TempDir(), "127.0.0.1")
	id := strings.Repeat("a", 50)
	v := p.view(mustRecord(t, p, id, api.ExposePortRequest{Port: 8080}))
	// 8080-<50>-<16> is longer than a DNS label: the port form is the one
	// to hand out.
	if v.URL != v.URLs.Port || !strings.HasPrefix(v.URLs.Port, "http://127.0.0.1:") || !strings.Contains(v.URLs.Port, "?sbx_preview_token=") {
		t.Errorf("view = %+v", v)
	}
}
