package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

func TestRoundTripAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sbx.db")
	ctx := context.Background()
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	sb := Sandbox{ID: "a", Status: api.StatusRunning, CreatedAt: now, LastActiveAt: now,
		Options: api.CreateSandboxRequest{Image: "default", InstanceType: "lite", Env: map[string]string{"K": "v"},
			SleepAfter: api.Duration(time.Minute), KeepAlive: true}}
	if err := st.Put(ctx, sb); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Second)
	if err := st.Touch(ctx, "a", later); err != nil {
		t.Fatal(err)
	}
	if err := st.Touch(ctx, "a", now); err != nil { // never moves backwards
		t.Fatal(err)
	}
	if err := st.SetStatus(ctx, "missing", api.StatusStopped, now); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetStatus on missing row: %v", err)
	}
	st.Close()

	st, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != api.StatusRunning || !got.LastActiveAt.Equal(later) || got.Options.Env["K"] != "v" ||
		got.Options.SleepAfter != api.Duration(time.Minute) || !got.Options.KeepAlive || !got.CreatedAt.Equal(now) {
		t.Fatalf("got %+v", got)
	}
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := st.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if list, err := st.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("list: %v %v", list, err)
	}
}
