package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

// treeManifest describes the tree under dir in sandbox id: type, mode,
// owner, size, link target and content hash of every entry, one line each, in
// path order. Two trees with the same manifest are the same to a user.
func treeManifest(t *testing.T, d *Daemon, id, dir string) string {
	t.Helper()
	res := mustExec(t, d, id, `cd '`+dir+`' && find . -mindepth 1 -printf '%y %m %U:%G %s %p -> %l\n' | LC_ALL=C sort &&
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum`)
	if res.ExitCode != 0 {
		t.Fatalf("manifest of %s:%s: %s", id, dir, res.Stderr)
	}
	return res.Stdout
}

func wantErrCode(t *testing.T, err error, code string) {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != code {
		t.Fatalf("got error %v, want code %s", err, code)
	}
}

// TestBackupRoundTrip backs up a tree with symlinks, hard links, modes,
// empty directories and a 200 MiB file, and restores it into another
// sandbox, into a fresh directory and over an existing one.
func TestBackupRoundTrip(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	mustExec(t, d, "bsrc", `set -e
		mkdir -p /workspace/proj/src/pkg /workspace/proj/empty /workspace/proj/locked
		cd /workspace/proj
		printf 'package main\n' > src/main.go
		printf '#!/bin/sh\necho hi\n' > src/pkg/run.sh && chmod 0750 src/pkg/run.sh
		printf 'secret' > secret && chmod 0600 secret
		chmod 0700 empty && chmod 1777 locked
		ln -s src/main.go link && ln -s nowhere dangling && ln secret hard
		head -c 200M /dev/urandom > big.bin`)
	want := treeManifest(t, d, "bsrc", "/workspace/proj")
	if !strings.Contains(want, "./link -> src/main.go") || !strings.Contains(want, "f 750 ") || !strings.Contains(want, "d 1777 ") {
		t.Fatalf("test tree not as intended:\n%s", want)
	}

	t0 := time.Now()
	b, err := d.Client.Sandbox("bsrc").CreateBackup(ctx, api.CreateBackupRequest{Dir: "/workspace/proj", Name: "round trip"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backup of 200 MiB took %v, stored %d bytes", time.Since(t0).Round(time.Millisecond), b.Size)
	if !strings.HasPrefix(b.ID, "bk-") || b.Size < 200<<20 || len(b.SHA256) != 64 || b.ExpiresAt != nil || b.Dir != "/workspace/proj" {
		t.Errorf("backup = %+v", b)
	}

	// Into another sandbox, at the same path and at another one.
	for _, dir := range []string{"", "/workspace/copy"} {
		res, err := d.Client.Sandbox("bdst").RestoreBackup(ctx, b.ID, dir)
		if err != nil {
			t.Fatal(err)
		}
		if res.Bytes < 200<<20 || res.Symlinks != 2 {
			t.Errorf("restore result %+v", res)
		}
		if dir == "" {
			dir = "/workspace/proj"
		}
		if got := treeManifest(t, d, "bdst", dir); got != want {
			t.Errorf("restored tree at %s differs:\n%s\nwant:\n%s", dir, got, want)
		}
	}
	// Over an existing directory: its content is replaced whole.
	mustExec(t, d, "bsrc", "cd /workspace/proj && rm -rf src && echo new > stale && chmod 0644 secret")
	if _, err := d.Client.Sandbox("bsrc").RestoreBackup(ctx, b.ID, ""); err != nil {
		t.Fatal(err)
	}
	if got := treeManifest(t, d, "bsrc", "/workspace/proj"); got != want {
		t.Errorf("tree restored over the old one differs:\n%s\nwant:\n%s", got, want)
	}
	if res := mustExec(t, d, "bsrc", "ls -A /workspace | grep -c sbx-restore"); strings.TrimSpace(res.Stdout) != "0" {
		t.Errorf("staging directories left behind")
	}

	// Listed, also after a daemon restart; then deleted.
	d.Restart()
	list, err := d.Client.Backups(ctx, "bsrc")
	if err != nil || len(list) != 1 || list[0].ID != b.ID || list[0].Name != "round trip" {
		t.Fatalf("Backups after restart = %+v, %v", list, err)
	}
	out, _, code := d.CLI(nil, "backup", "ls")
	if code != 0 || !strings.Contains(out, b.ID) {
		t.Errorf("sbx backup ls: %d %s", code, out)
	}
	if _, stderr, code := d.CLI(nil, "backup", "rm", b.ID); code != 0 {
		t.Fatalf("sbx backup rm: %s", stderr)
	}
	_, err = d.Client.Backup(ctx, b.ID)
	wantErrCode(t, err, api.CodeBackupNotFound)
	_, err = d.Client.Sandbox("bdst").RestoreBackup(ctx, b.ID, "")
	wantErrCode(t, err, api.CodeBackupNotFound)
	if _, err := os.Stat(filepath.Join(d.DataDir, "blobs", "objects", "backups", b.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("archive of a deleted backup still stored: %v", err)
	}
}

// TestBackupExcludes leaves out excluded globs and what .gitignore files
// ignore, and keeps what they re-include.
func TestBackupExcludes(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	mustExec(t, d, "bex", `set -e
		mkdir -p /workspace/repo && cd /workspace/repo
		mkdir -p node_modules/x src/build sub/cache docs
		touch node_modules/x/i.js src/main.go src/build/out.o a.log keep.log sub/cache/c sub/s.txt sub/s.tmp docs/d.md
		printf '*.log\n!keep.log\nbuild/\n' > .gitignore
		printf 'cache/\n*.tmp\n' > sub/.gitignore`)
	for _, tc := range []struct {
		name string
		req  api.CreateBackupRequest
		want []string
	}{
		{"excludes", api.CreateBackupRequest{Excludes: []string{"node_modules", "*.log"}},
			[]string{".gitignore", "docs/d.md", "src/build/out.o", "src/main.go", "sub/.gitignore", "sub/cache/c", "sub/s.tmp", "sub/s.txt"}},
		{"gitignore", api.CreateBackupRequest{GitIgnore: true},
			[]string{".gitignore", "docs/d.md", "keep.log", "node_modules/x/i.js", "src/main.go", "sub/.gitignore", "sub/s.txt"}},
		{"both", api.CreateBackupRequest{GitIgnore: true, Excludes: []string{"node_modules", "/docs"}},
			[]string{".gitignore", "keep.log", "src/main.go", "sub/.gitignore", "sub/s.txt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Dir = "/workspace/repo"
			b, err := d.Client.Sandbox("bex").CreateBackup(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			dir := "/workspace/out-" + tc.name
			if _, err := d.Client.Sandbox("bex").RestoreBackup(ctx, b.ID, dir); err != nil {
				t.Fatal(err)
			}
			res := mustExec(t, d, "bex", "cd "+dir+" && find . -type f | cut -c3- | LC_ALL=C sort")
			if got := strings.Fields(res.Stdout); !slices.Equal(got, tc.want) {
				t.Errorf("restored files %q, want %q", got, tc.want)
			}
		})
	}
	_, err := d.Client.Sandbox("bex").CreateBackup(ctx, api.CreateBackupRequest{Dir: "/workspace/repo", Excludes: []string{"[a-"}})
	wantErrCode(t, err, api.CodeInvalidRequest)
}

// TestBackupBadRequests: bad input gets a clear error and creates nothing.
func TestBackupBadRequests(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("bbad")
	for _, tc := range []struct {
		req  api.CreateBackupRequest
		code string
	}{
		{api.CreateBackupRequest{}, api.CodeInvalidRequest},
		{api.CreateBackupRequest{Dir: "/"}, api.CodeInvalidRequest},
		{api.CreateBackupRequest{Dir: "/proc/1"}, api.CodeInvalidRequest},
		{api.CreateBackupRequest{Dir: "relative"}, api.CodeInvalidRequest},
		{api.CreateBackupRequest{Dir: "/workspace", TTL: api.Duration(-time.Second)}, api.CodeInvalidRequest},
		{api.CreateBackupRequest{Dir: "/workspace", TTL: api.Duration(time.Millisecond)}, api.CodeInvalidRequest},
		{api.CreateBackupRequest{Dir: "/no/such/dir"}, api.CodeFileNotFound},
		{api.CreateBackupRequest{Dir: "/etc/passwd"}, api.CodeNotADirectory},
	} {
		_, err := sb.CreateBackup(ctx, tc.req)
		wantErrCode(t, err, tc.code)
	}
	_, err := sb.RestoreBackup(ctx, "bk-doesnotexist", "")
	wantErrCode(t, err, api.CodeBackupNotFound)
	_, err = sb.RestoreBackup(ctx, "not-an-id", "")
	wantErrCode(t, err, api.CodeInvalidRequest)
	if list, err := d.Client.Backups(ctx, ""); err != nil || len(list) != 0 {
		t.Errorf("backups after failures: %v %v", list, err)
	}
}

// TestBackupTTL: an expired backup is no longer listed or restorable, and
// the collector deletes its archive.
func TestBackupTTL(t *testing.T) {
	d := StartDaemon(t, "--backup-gc-interval", "200ms")
	ctx := ctxT(t)
	mustExec(t, d, "bttl", "mkdir -p /workspace/t && echo x > /workspace/t/f")
	keep, err := d.Client.Sandbox("bttl").CreateBackup(ctx, api.CreateBackupRequest{Dir: "/workspace/t"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Client.Sandbox("bttl").CreateBackup(ctx, api.CreateBackupRequest{Dir: "/workspace/t", TTL: api.Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if b.ExpiresAt == nil || b.ExpiresAt.Sub(b.CreatedAt) != time.Second {
		t.Fatalf("expiresAt = %v, createdAt %v", b.ExpiresAt, b.CreatedAt)
	}
	blobPath := filepath.Join(d.DataDir, "blobs", "objects", "backups", b.ID)
	if _, err := os.Stat(blobPath); err != nil {
		t.Fatalf("archive not where expected: %v", err)
	}
	time.Sleep(time.Until(*b.ExpiresAt) + 100*time.Millisecond)
	_, err = d.Client.Backup(ctx, b.ID)
	wantErrCode(t, err, api.CodeBackupNotFound)
	_, err = d.Client.Sandbox("bttl").RestoreBackup(ctx, b.ID, "/workspace/r")
	wantErrCode(t, err, api.CodeBackupNotFound)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(blobPath); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired backup's archive was not collected")
		}
		time.Sleep(50 * time.Millisecond)
	}
	list, err := d.Client.Backups(ctx, "")
	if err != nil || len(list) != 1 || list[0].ID != keep.ID {
		t.Errorf("Backups = %+v, %v; want only %s", list, err, keep.ID)
	}
}

// TestBackupCorruption: a damaged or truncated archive is refused, and
// the restore target stays as it was.
func TestBackupCorruption(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	mustExec(t, d, "bcor", "mkdir -p /workspace/c && head -c 3M /dev/urandom > /workspace/c/data && echo hello > /workspace/c/small")
	b, err := d.Client.Sandbox("bcor").CreateBackup(ctx, api.CreateBackupRequest{Dir: "/workspace/c"})
	if err != nil {
		t.Fatal(err)
	}
	blobPath := filepath.Join(d.DataDir, "blobs", "objects", "backups", b.ID)
	orig, err := os.ReadFile(blobPath)
	if err != nil {
		t.Fatal(err)
	}
	// A whole, valid archive of another backup, put in this one's place.
	mustExec(t, d, "bcor", "mkdir -p /workspace/c2 && echo other > /workspace/c2/x")
	b2, err := d.Client.Sandbox("bcor").CreateBackup(ctx, api.CreateBackupRequest{Dir: "/workspace/c2"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(filepath.Join(d.DataDir, "blobs", "objects", "backups", b2.ID))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, d, "bcor", "mkdir -p /workspace/target && echo precious > /workspace/target/keep")
	before := treeManifest(t, d, "bcor", "/workspace/target")
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }},
		{"flipped byte near the end", func(b []byte) []byte { b[len(b)-60] ^= 0x80; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)*2/3] }},
		{"trailer cut", func(b []byte) []byte { return b[:len(b)-48] }},
		{"another backup's archive", func([]byte) []byte { return append([]byte(nil), other...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Written in place: the local store keeps metadata in an
			// xattr of the file, which a rewrite would lose.
			f, err := os.OpenFile(blobPath, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tc.damage(append([]byte(nil), orig...)))
			f.Close()
			_, err = d.Client.Sandbox("bcor").RestoreBackup(ctx, b.ID, "/workspace/target")
			wantErrCode(t, err, api.CodeArchiveCorrupt)
			if got := treeManifest(t, d, "bcor", "/workspace/target"); got != before {
				t.Errorf("failed restore changed the target:\n%s", got)
			}
			if res := mustExec(t, d, "bcor", "ls -A /workspace | grep -c sbx-restore"); strings.TrimSpace(res.Stdout) != "0" {
				t.Errorf("staging directory left behind")
			}
		})
	}
	// The intact archive still restores.
	if err := os.WriteFile(blobPath, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client.Sandbox("bcor").RestoreBackup(ctx, b.ID, "/workspace/target"); err != nil {
		t.Fatal(err)
	}
}

// TestBackupS3KilledMidway kills the S3 server while a backup streams to
// it: the call fails with a clear error, and no backup is listed, neither
// then nor once the server is back.
func TestBackupS3KilledMidway(t *testing.T) {
	s3 := StartS3(t)
	bucket := s3.Bucket("sbx-backups")
	d := StartDaemon(t, s3.DaemonFlags(bucket)...)
	ctx := ctxT(t)
	mustExec(t, d, "bs3", "mkdir -p /workspace/big && head -c 300M /dev/urandom > /workspace/big/blob")

	// Small first: the S3 path works end to end.
	mustExec(t, d, "bs3", "mkdir -p /workspace/small && echo s3 > /workspace/small/f")
	small, err := d.Client.Sandbox("bs3").CreateBackup(ctx, api.CreateBackupRequest{Dir: "/workspace/small"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client.Sandbox("bs3").RestoreBackup(ctx, small.ID, "/workspace/small2"); err != nil {
		t.Fatal(err)
	}
	if res := mustExec(t, d, "bs3", "cat /workspace/small2/f"); res.Stdout != "s3\n" {
		t.Fatalf("restored from S3: %q", res.Stdout)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := d.Client.Sandbox("bs3").CreateBackup(context.Background(), api.CreateBackupRequest{Dir: "/workspace/big"})
		errc <- err
	}()
	// Kill it once the upload has sent a few parts.
	deadline := time.Now().Add(time.Minute)
	for dirSize(s3.Dir) < 40<<20 {
		if time.Now().After(deadline) {
			t.Fatal("the upload never started")
		}
		select {
		case err := <-errc:
			t.Fatalf("backup finished before the server was killed: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	s3.Kill()
	t0 := time.Now()
	err = <-errc
	t.Logf("backup failed %v after the kill: %v", time.Since(t0).Round(time.Millisecond), err)
	wantErrCode(t, err, api.CodeStorageUnavailable)
	if !strings.Contains(err.Error(), s3.Addr) {
		t.Errorf("error does not name the S3 server %s: %v", s3.Addr, err)
	}
	if err := s3.Start(); err != nil {
		t.Fatal(err)
	}
	list, err := d.Client.Backups(ctx, "")
	if err != nil || len(list) != 1 || list[0].ID != small.ID {
		t.Errorf("Backups after the failure = %+v, %v; want only %s", list, err, small.ID)
	}
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// TestBackupRestoreImageDirectory restores over a directory the image
// already has (/workspace, the usual case), keeps symlinks that point out
// of the tree, as a Python virtualenv has, and keeps owners.
func TestBackupRestoreImageDirectory(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	mustExec(t, d, "wsrc", `set -e
		cd /workspace
		mkdir -p venv/bin app
		ln -s /usr/bin/python3 venv/bin/python3
		ln -s ../../etc/hostname app/up
		echo 'print(1)' > app/main.py
		chown 1234:1234 app app/main.py && chown -h 1234:4321 app/up`)
	want := treeManifest(t, d, "wsrc", "/workspace")
	if !strings.Contains(want, "1234:4321") {
		t.Fatalf("test tree without its owners:\n%s", want)
	}
	b, err := d.Client.Sandbox("wsrc").CreateBackup(ctx, api.CreateBackupRequest{Dir: "/workspace"})
	if err != nil {
		t.Fatal(err)
	}
	// Into another sandbox's /workspace, which has a file of its own,
	// and back over the source's own /workspace after changes.
	mustExec(t, d, "wdst", "echo mine > /workspace/mine")
	mustExec(t, d, "wsrc", "rm -rf /workspace/app && echo stale > /workspace/stale")
	for _, id := range []string{"wdst", "wsrc"} {
		res, err := d.Client.Sandbox(id).RestoreBackup(ctx, b.ID, "")
		if err != nil {
			t.Fatalf("restore into %s:/workspace: %v", id, err)
		}
		if res.Symlinks != 2 {
			t.Errorf("restore into %s: %+v", id, res)
		}
		if got := treeManifest(t, d, id, "/workspace"); got != want {
			t.Errorf("%s:/workspace after restore:\n%s\nwant:\n%s", id, got, want)
		}
		// The venv's interpreter link works as it did.
		if r := mustExec(t, d, id, "/workspace/venv/bin/python3 -c 'print(6*7)'"); r.Stdout != "42\n" {
			t.Errorf("%s: venv link after restore: %q %q", id, r.Stdout, r.Stderr)
		}
	}
	// The image's directory can be renamed like any other.
	if r := mustExec(t, d, "wdst", "mv /opt /opt2 && mv /opt2 /opt && echo ok"); r.Stdout != "ok\n" {
		t.Errorf("rename of an image directory: %q %q", r.Stdout, r.Stderr)
	}
}
