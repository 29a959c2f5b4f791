package sandbox

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

func TestAcquireRunningNeverStarts(t *testing.T) {
	fb := newFakeBackend(t)
	m, _ := newTestManager(t, fb, nil)
	ctx := context.Background()

	if _, err := m.AcquireRunning(ctx, "absent"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("absent sandbox: %v", err)
	}
	if _, err := m.Get(ctx, "absent"); !errors.Is(err, errdefs.ErrSandboxNotFound) {
		t.Errorf("AcquireRunning created the sandbox: %v", err)
	}

	if _, _, err := m.Create(ctx, "box", api.CreateSandboxRequest{}); err != nil {
		t.Fatal(err)
	}
	l, err := m.AcquireRunning(ctx, "box")
	if err != nil {
		t.Fatal(err)
	}
	// Dial reaches the agent socket itself.
	c, err := l.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET /health HTTP/1.1\r\nHost: agent\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("health over the raw connection: %v %v", resp, err)
	}
	c.Close()
	l.Release()

	if _, err := m.Stop(ctx, "box"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AcquireRunning(ctx, "box"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stopped sandbox: %v", err)
	}
	if sb, _ := m.Get(ctx, "box"); sb.Status != api.StatusStopped || fb.starts.Load() != 1 {
		t.Errorf("AcquireRunning woke the sandbox: %+v, %d starts", sb, fb.starts.Load())
	}
}

func TestOnStopForEveryStop(t *testing.T) {
	fb := newFakeBackend(t)
	var mu sync.Mutex
	var stopped []string
	m, _ := newTestManager(t, fb, func(c *Config) {
		c.OnStop = func(id string) {
			mu.Lock()
			stopped = append(stopped, id)
			mu.Unlock()
		}
	})
	ctx := context.Background()
	for _, id := range []string{"request", "idle", "died", "destroyed"} {
		opts := api.CreateSandboxRequest{}
		if id == "idle" {
			opts.SleepAfter = api.Duration(20 * time.Millisecond)
		}
		if _, _, err := m.Create(ctx, id, opts); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Stop(ctx, "request"); err != nil {
		t.Fatal(err)
	}
	fb.kill("died")
	if err := m.Destroy(ctx, "destroyed"); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"request": true, "idle": true, "died": true, "destroyed": true}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := map[string]bool{}
		for _, id := range stopped {
			got[id] = true
		}
		mu.Unlock()
		if len(got) == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OnStop called for %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
