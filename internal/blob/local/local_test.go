package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/internal/blob"
	"github.com/sbx-dev/sbx/internal/blob/blobtest"
)

func newStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := New(dir)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		return newStore(t, t.TempDir())
	})
}

// entries lists every file and directory under dir, relative to it.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLayoutAndPersistence(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s := newStore(t, dir)
	if _, err := s.Put(ctx, "backups/b1.tar.zst", strings.NewReader("archive"), blob.PutOptions{Metadata: map[string]string{"dir": "/home/ü ser"}}); err != nil {
		t.Fatal(err)
	}
	// The object is a plain file an operator can read.
	data, err := os.ReadFile(filepath.Join(dir, "objects", "backups", "b1.tar.zst"))
	if err != nil || string(data) != "archive" {
		t.Fatalf("object file = %q, %v", data, err)
	}
	// A second store over the same directory (sbxd restarted) sees it.
	s2 := newStore(t, dir)
	info, err := s2.Stat(ctx, "backups/b1.tar.zst")
	if err != nil || info.Size != 7 || info.Metadata["dir"] != "/home/ü ser" {
		t.Fatalf("Stat after reopen = %+v, %v", info, err)
	}
}

func TestFailedPutLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	boom := errors.New("boom")
	src := io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), iotestErr{boom})
	if _, err := s.Put(t.Context(), "a/b", src, blob.PutOptions{}); !errors.Is(err, boom) {
		t.Fatalf("Put err = %v", err)
	}
	if got := entries(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ after a failed Put holds %q", got)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

func TestDeletePrunesEmptyDirectories(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s := newStore(t, dir)
	for _, k := range []string{"p/q/r/one", "p/q/two", "p/three"} {
		if _, err := s.Put(ctx, k, strings.NewReader(k), blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "p/q/r/one"); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(entries(t, filepath.Join(dir, "objects")), " "), "p p/q p/q/two p/three"; got != want {
		t.Errorf("objects/ = %s, want %s", got, want)
	}
	for _, k := range []string{"p/q/two", "p/three"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if got := entries(t, filepath.Join(dir, "objects")); len(got) != 0 {
		t.Errorf("objects/ after deleting everything = %q, want empty", got)
	}
}

func TestConflictingKeys(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, t.TempDir())
	if _, err := s.Put(ctx, "x/y", strings.NewReader("1"), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "x", strings.NewReader("2"), blob.PutOptions{}); !errors.Is(err, blob.ErrConflict) {
		t.Errorf("Put(x) beside x/y: err = %v, want ErrConflict", err)
	}
	if _, err := s.Put(ctx, "x/y/z", strings.NewReader("3"), blob.PutOptions{}); !errors.Is(err, blob.ErrConflict) {
		t.Errorf("Put(x/y/z) beside x/y: err = %v, want ErrConflict", err)
	}
	// An empty directory left where a key goes is not a conflict.
	if err := os.MkdirAll(filepath.Join(s.dir, "objects", "empty", "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "empty/dir", strings.NewReader("4"), blob.PutOptions{}); err != nil {
		t.Errorf("Put over an empty directory: %v", err)
	}
}

func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	newStore(t, dir)
	stale := filepath.Join(dir, "tmp", "stale")
	fresh := filepath.Join(dir, "tmp", "fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleAfter)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	newStore(t, dir)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file survived New: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a recent temp file (maybe a live Put) was removed: %v", err)
	}
}

func TestIgnoresForeignEntries(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s := newStore(t, dir)
	if _, err := s.Put(ctx, "k/obj", strings.NewReader("x"), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// Symlinks are not objects and are not followed, even to inside files.
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o600)
	os.Symlink(outside, filepath.Join(dir, "objects", "k", "link"))
	os.Symlink(filepath.Join(dir, "objects", "k", "obj"), filepath.Join(dir, "objects", "k", "inner"))
	var keys []string
	for info, err := range s.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if strings.Join(keys, " ") != "k/obj" {
		t.Errorf("List = %q, want only k/obj", keys)
	}
	if _, _, err := s.Get(ctx, "k/link"); err == nil {
		t.Errorf("Get through a symlink out of the store succeeded")
	}
}

func TestContextDoneBeforeCommit(t *testing.T) {
	// A source that finishes just as the context is cancelled must not
	// produce an object: the cancel wins.
	ctx, cancel := context.WithCancel(t.Context())
	s := newStore(t, t.TempDir())
	src := &cancelAtEOF{r: strings.NewReader("data"), cancel: cancel}
	if _, err := s.Put(ctx, "k", src, blob.PutOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put err = %v, want context.Canceled", err)
	}
	if _, err := s.Stat(t.Context(), "k"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat = %v, want ErrNotFound", err)
	}
}

type cancelAtEOF struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancelAtEOF) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		c.cancel()
	}
	return n, err
}
