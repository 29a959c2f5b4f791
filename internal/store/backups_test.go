package store

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestBackups(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sbx.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	rows := []Backup{
		{ID: "bk-a", SandboxID: "one", Dir: "/workspace", Key: "backups/bk-a", Size: 10, SHA256: "aa", CreatedAt: now.Add(-2 * time.Hour)},
		{ID: "bk-b", SandboxID: "two", Dir: "/data", Name: "n", Key: "backups/bk-b", Size: 20, SHA256: "bb",
			Excludes: []string{"node_modules"}, GitIgnore: true, CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute)},
		{ID: "bk-c", SandboxID: "one", Dir: "/workspace", Key: "backups/bk-c", Size: 30, SHA256: "cc", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	}
	for _, b := range rows {
		if err := s.PutBackup(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutBackup(ctx, rows[0]); err == nil {
		t.Error("a duplicate id was stored")
	}
	// Rows survive reopening.
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetBackup(ctx, "bk-b")
	if err != nil || got.Name != "n" || !got.GitIgnore || !slices.Equal(got.Excludes, []string{"node_modules"}) || !got.ExpiresAt.Equal(rows[1].ExpiresAt) {
		t.Errorf("GetBackup = %+v, %v", got, err)
	}
	ids := func(bs []Backup, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range bs {
			out = append(out, b.ID)
		}
		return out
	}
	if l := ids(s.ListBackups(ctx, "")); !slices.Equal(l, []string{"bk-c", "bk-b", "bk-a"}) {
		t.Errorf("ListBackups = %v, want newest first", l)
	}
	if l := ids(s.ListBackups(ctx, "one")); !slices.Equal(l, []string{"bk-c", "bk-a"}) {
		t.Errorf("ListBackups(one) = %v", l)
	}
	if l := ids(s.ExpiredBackups(ctx, now)); !slices.Equal(l, []string{"bk-b"}) {
		t.Errorf("ExpiredBackups = %v", l)
	}
	if err := s.DeleteBackup(ctx, "bk-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetBackup(ctx, "bk-b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBackup of a deleted row: %v", err)
	}
	if err := s.DeleteBackup(ctx, "bk-b"); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
}
