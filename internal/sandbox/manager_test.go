package sandbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/backend"
	"github.com/sbx-dev/sbx/internal/errdefs"
	"github.com/sbx-dev/sbx/internal/store"
)

// fakeBackend runs a tiny HTTP server per "sandbox" on a unix socket, so
// the manager's real agent client is exercised.
type fakeBackend struct {
	dir    string
	starts atomic.Int32
	delay  time.Duration
	fail   error

	mu    sync.Mutex
	boxes map[string]*fakeBox
	specs []backend.Spec // every Start's, in order
}

type fakeBox struct {
	srv  *http.Server
	ln   net.Listener
	sock string
	dead bool
}

// close stops serving at once: the listener is closed here rather than by
// a Serve goroutine that may not have started yet.
func (b *fakeBox) close() {
	b.ln.Close()
	b.srv.Close()
}

func newFakeBackend(t *testing.T) *fakeBackend {
	dir, err := os.MkdirTemp("", "sbxfake")
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{dir: dir, boxes: map[string]*fakeBox{}}
	t.Cleanup(func() {
		fb.mu.Lock()
		for _, b := range fb.boxes {
			b.close()
		}
		fb.mu.Unlock()
		os.RemoveAll(dir)
	})
	return fb
}

func (f *fakeBackend) Capabilities() backend.Capabilities { return backend.Capabilities{Name: "fake"} }

func (f *fakeBackend) Start(ctx context.Context, spec backend.Spec) (*backend.Instance, error) {
	f.starts.Add(1)
	time.Sleep(f.delay)
	if f.fail != nil {
		return nil, f.fail
	}
	sock := filepath.Join(f.dir, spec.ID+".sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		errdefs.WriteJSON(w, 200, api.Health{Status: "ok"})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	f.mu.Lock()
	f.boxes[spec.ID] = &fakeBox{srv: srv, ln: ln, sock: sock}
	spec.Upper = nil // read by then; not kept
	f.specs = append(f.specs, spec)
	f.mu.Unlock()
	return &backend.Instance{ID: spec.ID, AgentSocket: sock}, nil
}

func (f *fakeBackend) Adopt(ctx context.Context, id string) (*backend.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.boxes[id]
	if b == nil || b.dead {
		return nil, backend.ErrNotExist
	}
	return &backend.Instance{ID: id, AgentSocket: b.sock}, nil
}

func (f *fakeBackend) Destroy(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b := f.boxes[id]; b != nil {
		b.close()
		delete(f.boxes, id)
	}
	return nil
}

func (f *fakeBackend) Status(ctx context.Context, id string) (backend.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch b := f.boxes[id]; {
	case b == nil:
		return backend.StateAbsent, nil
	case b.dead:
		return backend.StateStopped, nil
	}
	return backend.StateRunning, nil
}

func (f *fakeBackend) List(ctx context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.boxes {
		ids = append(ids, id)
	}
	return ids, nil
}

// kill simulates the sandbox dying on its own.
func (f *fakeBackend) kill(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b := f.boxes[id]; b != nil {
		b.close()
		b.dead = true
	}
}

type fakeImages map[string]string

func (f fakeImages) Path(name string) (string, error) {
	if p, ok := f[name]; ok {
		return p, nil
	}
	return "", fmt.Errorf("%w: image %q is not built", errdefs.ErrImageNotFound, name)
}

func newTestManager(t *testing.T, be backend.Backend, mod func(*Config)) (*Manager, *store.Store) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := Config{Backend: be, Store: st, Images: fakeImages{"default": "/rootfs", "python": "/py"}, ReapInterval: 10 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	m := New(cfg)
	if err := m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, st
}

func TestAcquireCreatesOnceUnderConcurrency(t *testing.T) {
	fb := newFakeBackend(t)
	fb.delay = 20 * time.Millisecond
	m, _ := newTestManager(t, fb, nil)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := m.Acquire(context.Background(), "one")
			if err != nil {
				t.Error(err)
				return
			}
			l.Release()
		}()
	}
	wg.Wait()
	if n := fb.starts.Load(); n != 1 {
		t.Fatalf("started %d times, want 1", n)
	}
	sb, err := m.Get(context.Background(), "one")
	if err != nil || sb.Status != api.StatusRunning || sb.InstanceType != DefaultInstanceType || sb.Image != "default" {
		t.Fatalf("%+v %v", sb, err)
	}
}

func TestCreateOptions(t *testing.T) {
	m, _ := newTestManager(t, newFakeBackend(t), nil)
	ctx := context.Background()
	tests := []struct {
		name    string
		id      string
		opts    api.CreateSandboxRequest
		created bool
		err     error
	}{
		{"new", "box", api.CreateSandboxRequest{InstanceType: "basic", SleepAfter: api.Duration(time.Minute)}, true, nil},
		{"same again", "box", api.CreateSandboxRequest{InstanceType: "basic"}, false, nil},
		{"defaults only", "box", api.CreateSandboxRequest{}, false, nil},
		{"different type", "box", api.CreateSandboxRequest{InstanceType: "lite"}, false, errdefs.ErrConflict},
		{"different image", "box", api.CreateSandboxRequest{Image: "python"}, false, errdefs.ErrConflict},
		{"bad id", "Box", api.CreateSandboxRequest{}, false, errdefs.ErrInvalidSandboxID},
		{"bad type", "other", api.CreateSandboxRequest{InstanceType: "xl"}, false, errdefs.ErrInvalidInstanceType},
		{"bad image", "other", api.CreateSandboxRequest{Image: "nope"}, false, errdefs.ErrImageNotFound},
		{"bad env", "other", api.CreateSandboxRequest{Env: map[string]string{"A=B": "x"}}, false, errdefs.ErrInvalidArgument},
		{"env name a shell cannot export", "other", api.CreateSandboxRequest{Env: map[string]string{"1BAD": "x"}}, false, errdefs.ErrInvalidArgument},
		{"negative sleep", "other", api.CreateSandboxRequest{SleepAfter: -1}, false, errdefs.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sb, created, err := m.Create(ctx, tc.id, tc.opts)
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && (created != tc.created || sb.Status != api.StatusRunning) {
				t.Fatalf("created=%v sb=%+v", created, sb)
			}
		})
	}
	if _, err := m.Get(ctx, "other"); !errors.Is(err, errdefs.ErrSandboxNotFound) {
		t.Fatalf("a refused create left a sandbox: %v", err)
	}
}

func TestIdleReaperAndKeepAlive(t *testing.T) {
	fb := newFakeBackend(t)
	m, st := newTestManager(t, fb, nil)
	ctx := context.Background()
	short := api.Duration(50 * time.Millisecond)
	if _, _, err := m.Create(ctx, "idle", api.CreateSandboxRequest{SleepAfter: short}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Create(ctx, "kept", api.CreateSandboxRequest{SleepAfter: short, KeepAlive: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Create(ctx, "busy", api.CreateSandboxRequest{SleepAfter: short}); err != nil {
		t.Fatal(err)
	}
	lease, err := m.Acquire(ctx, "busy") // an open request counts as activity
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		sb, _ := m.Get(ctx, "idle")
		if sb.Status == api.StatusStopped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle sandbox never stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	for _, id := range []string{"kept", "busy"} {
		if sb, _ := m.Get(ctx, id); sb.Status != api.StatusRunning {
			t.Errorf("%s stopped: %+v", id, sb)
		}
	}
	lease.Release()
	rec, err := st.Get(ctx, "idle")
	if err != nil || rec.Status != api.StatusStopped {
		t.Errorf("store: %+v %v", rec, err)
	}
	// The next request wakes it with its options intact.
	l, err := m.Acquire(ctx, "idle")
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if sb, _ := m.Get(ctx, "idle"); sb.Status != api.StatusRunning || sb.SleepAfter != short {
		t.Errorf("after wake: %+v", sb)
	}
}

func TestCapacityLimit(t *testing.T) {
	m, _ := newTestManager(t, newFakeBackend(t), func(c *Config) { c.MaxRunning = 2 })
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, _, err := m.Create(ctx, id, api.CreateSandboxRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := m.Create(ctx, "c", api.CreateSandboxRequest{})
	if !errors.Is(err, errdefs.ErrCapacity) {
		t.Fatalf("third sandbox: %v, want capacity error", err)
	}
	if st, _ := errdefs.Classify(err); st != http.StatusTooManyRequests {
		t.Errorf("status %d", st)
	}
	if err := m.Destroy(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Create(ctx, "c", api.CreateSandboxRequest{}); err != nil {
		t.Fatalf("after destroying one: %v", err)
	}
}

func TestStartFailureLeavesNoRecord(t *testing.T) {
	fb := newFakeBackend(t)
	fb.fail = errors.New("runtime exploded")
	m, st := newTestManager(t, fb, nil)
	_, err := m.Acquire(context.Background(), "broken")
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if _, err := st.Get(context.Background(), "broken"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("failed start left a record: %v", err)
	}
	fb.fail = nil
	if l, err := m.Acquire(context.Background(), "broken"); err != nil {
		t.Fatalf("retry after failure: %v", err)
	} else {
		l.Release()
	}
}

func TestRecoverAfterRestart(t *testing.T) {
	fb := newFakeBackend(t)
	dbDir := t.TempDir()
	open := func() *Manager {
		st, err := store.Open(filepath.Join(dbDir, "sbx.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		m := New(Config{Backend: fb, Store: st, Images: fakeImages{"default": "/r"}})
		if err := m.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		return m
	}
	ctx := context.Background()
	m1 := open()
	for _, id := range []string{"alive", "dies", "stopped"} {
		if _, _, err := m1.Create(ctx, id, api.CreateSandboxRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m1.Stop(ctx, "stopped"); err != nil {
		t.Fatal(err)
	}
	m1.Close()
	fb.kill("dies")
	// An orphan with no record, e.g. from a crash mid-create.
	if _, err := fb.Start(ctx, backend.Spec{ID: "orphan"}); err != nil {
		t.Fatal(err)
	}
	starts := fb.starts.Load()

	m2 := open()
	defer m2.Close()
	want := map[string]string{"alive": api.StatusRunning, "dies": api.StatusStopped, "stopped": api.StatusStopped}
	for id, status := range want {
		sb, err := m2.Get(ctx, id)
		if err != nil || sb.Status != status {
			t.Errorf("%s: %+v %v, want %s", id, sb, err, status)
		}
	}
	if st, _ := fb.Status(ctx, "orphan"); st != backend.StateAbsent {
		t.Errorf("orphan not destroyed: %s", st)
	}
	if st, _ := fb.Status(ctx, "dies"); st != backend.StateAbsent {
		t.Errorf("dead sandbox not cleaned: %s", st)
	}
	l, err := m2.Acquire(ctx, "alive")
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if fb.starts.Load() != starts {
		t.Error("re-adopted sandbox was started again")
	}
}

func TestAgentFailureCleansDeadSandbox(t *testing.T) {
	fb := newFakeBackend(t)
	m, _ := newTestManager(t, fb, func(c *Config) { c.ReapInterval = time.Hour })
	ctx := context.Background()
	l, err := m.Acquire(ctx, "fragile")
	if err != nil {
		t.Fatal(err)
	}
	fb.kill("fragile")
	err = l.AgentFailed(ctx, errors.New("connection refused"))
	l.Release()
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if sb, _ := m.Get(ctx, "fragile"); sb.Status != api.StatusStopped {
		t.Fatalf("dead sandbox still running: %+v", sb)
	}
	l, err = m.Acquire(ctx, "fragile")
	if err != nil {
		t.Fatalf("next request did not restart it: %v", err)
	}
	l.Release()
}

func TestValidateID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"a", true}, {"my-first-sandbox", true}, {"0", true}, {"a-b-c-1", true},
		{string(make([]byte, 0)), false}, {"-a", false}, {"a-", false}, {"A", false},
		{"a_b", false}, {"a.b", false}, {"a/b", false}, {"ü", false},
		{"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc", true},
		{"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd", false},
	}
	for _, tc := range tests {
		err := ValidateID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidSandboxID) {
			t.Errorf("ValidateID(%q) error does not wrap the sentinel", tc.id)
		}
	}
}

func TestPatchEnvSurvivesStop(t *testing.T) {
	m, _ := newTestManager(t, newFakeBackend(t), nil)
	ctx := context.Background()
	if _, _, err := m.Create(ctx, "envy", api.CreateSandboxRequest{Env: map[string]string{"KEEP": "1", "DROP": "x"}}); err != nil {
		t.Fatal(err)
	}
	v := "new"
	if err := m.PatchEnv(ctx, "envy", map[string]*string{"ADDED": &v, "DROP": nil}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stop(ctx, "envy"); err != nil {
		t.Fatal(err)
	}
	sb, err := m.Get(ctx, "envy")
	if err != nil || !maps.Equal(sb.Env, map[string]string{"KEEP": "1", "ADDED": "new"}) {
		t.Fatalf("env after stop: %v %v", sb.Env, err)
	}
	if err := m.PatchEnv(ctx, "absent", nil); !errors.Is(err, errdefs.ErrSandboxNotFound) {
		t.Fatalf("patch of absent sandbox: %v", err)
	}
}

func TestAgentOptionsReachEveryStart(t *testing.T) {
	fb := newFakeBackend(t)
	opts := backend.AgentOptions{OutputCap: 1000, ProcessLogCap: 2000, InterpreterPool: -1}
	m, _ := newTestManager(t, fb, func(c *Config) { c.Agent = opts })
	ctx := context.Background()
	// The first start, and the start after a stop.
	for range 2 {
		l, err := m.Acquire(ctx, "tuned")
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		if _, err := m.Stop(ctx, "tuned"); err != nil {
			t.Fatal(err)
		}
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if len(fb.specs) != 2 {
		t.Fatalf("%d starts, want 2", len(fb.specs))
	}
	for i, s := range fb.specs {
		if s.Agent != opts {
			t.Errorf("start %d: agent options %+v, want %+v", i, s.Agent, opts)
		}
	}
}
