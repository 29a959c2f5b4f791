package integration

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/blob"
	"github.com/sbx-dev/sbx/internal/blob/s3"
)

// bucketStore opens bucket on the test server directly, to set up and
// inspect what the sandbox sees.
func bucketStore(t *testing.T, srv *S3Server, bucket string) *s3.Store {
	t.Helper()
	st, err := s3.New(s3.Config{Endpoint: srv.URL, Bucket: bucket, AccessKey: S3AccessKey, SecretKey: S3SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func putObject(t *testing.T, st blob.Store, key, body string) {
	t.Helper()
	if _, err := st.Put(ctxT(t), key, strings.NewReader(body), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func objects(t *testing.T, st blob.Store, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for info, err := range st.List(ctxT(t), prefix) {
		if err != nil {
			t.Fatal(err)
		}
		rc, _, err := st.Get(ctxT(t), info.Key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		out[info.Key] = string(b)
	}
	return out
}

func sandboxFiles(t *testing.T, d *Daemon, id, dir string) map[string]string {
	t.Helper()
	res := mustExec(t, d, id, `cd `+dir+` && find . -type f | cut -c3- | LC_ALL=C sort | while read -r f; do printf '%s=%s\n' "$f" "$(cat "$f")"; done`)
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			out[k] = v
		}
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestBucketMount mounts a bucket prefix read-write and read-only, syncs
// changes both ways, and unmounts.
func TestBucketMount(t *testing.T) {
	srv := StartS3(t)
	bucket := srv.Bucket("data")
	st := bucketStore(t, srv, bucket)
	putObject(t, st, "proj/a.txt", "alpha")
	putObject(t, st, "proj/sub/b.txt", "beta")
	putObject(t, st, "other/c.txt", "not mounted")
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("mnt")
	req := api.MountRequest{Bucket: bucket, Path: "/mnt/proj", Prefix: "proj/", Endpoint: srv.URL,
		AccessKeyID: S3AccessKey, SecretAccessKey: S3SecretKey, PathStyle: true}

	m, err := sb.MountBucket(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if m.Objects != 2 || m.ReadOnly || m.Path != "/mnt/proj" {
		t.Errorf("mount = %+v", m)
	}
	if got, want := sandboxFiles(t, d, "mnt", "/mnt/proj"), map[string]string{"a.txt": "alpha", "sub/b.txt": "beta"}; !mapsEqual(got, want) {
		t.Fatalf("mounted files %v, want %v", got, want)
	}

	// Sandbox changes go up; bucket changes come down.
	mustExec(t, d, "mnt", "cd /mnt/proj && echo -n ALPHA > a.txt && rm sub/b.txt && mkdir -p new && echo -n fresh > new/n.txt")
	putObject(t, st, "proj/remote.txt", "from the bucket")
	res, err := sb.SyncMount(ctx, "/mnt/proj")
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != 2 || res.Deleted != 1 || res.Downloaded != 1 || len(res.Conflicts) != 0 {
		t.Errorf("sync result %+v", res)
	}
	wantObjs := map[string]string{"proj/a.txt": "ALPHA", "proj/new/n.txt": "fresh", "proj/remote.txt": "from the bucket"}
	if got := objects(t, st, "proj/"); !mapsEqual(got, wantObjs) {
		t.Errorf("bucket after sync %v, want %v", got, wantObjs)
	}
	if got, want := sandboxFiles(t, d, "mnt", "/mnt/proj"), map[string]string{"a.txt": "ALPHA", "new/n.txt": "fresh", "remote.txt": "from the bucket"}; !mapsEqual(got, want) {
		t.Errorf("sandbox after sync %v, want %v", got, want)
	}
	// A path changed on both sides: the sandbox wins, and it is reported.
	mustExec(t, d, "mnt", "echo -n mine > /mnt/proj/a.txt")
	putObject(t, st, "proj/a.txt", "theirs")
	if err := st.Delete(ctx, "proj/remote.txt"); err != nil {
		t.Fatal(err)
	}
	res, err = sb.SyncMount(ctx, "/mnt/proj")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Conflicts, []string{"/mnt/proj/a.txt"}) || res.Removed != 1 {
		t.Errorf("sync result %+v", res)
	}
	if got := objects(t, st, "proj/")["proj/a.txt"]; got != "mine" {
		t.Errorf("conflict: bucket has %q, want the sandbox's version", got)
	}

	// Read-only: never writes to the bucket.
	ro := req
	ro.Path, ro.ReadOnly = "/mnt/ro", true
	if _, err := sb.MountBucket(ctx, ro); err != nil {
		t.Fatal(err)
	}
	roTree := func() string {
		return mustExec(t, d, "mnt", `cd /mnt/ro && find . | LC_ALL=C sort`).Stdout
	}
	mirror := map[string]string{"a.txt": "mine", "new/n.txt": "fresh"}
	wantTree := ".\n./a.txt\n./new\n./new/n.txt\n"
	if got := sandboxFiles(t, d, "mnt", "/mnt/ro"); !mapsEqual(got, mirror) {
		t.Fatalf("read-only mount holds %v, want %v", got, mirror)
	}
	before := objects(t, st, "")
	// Local writes succeed (nothing makes the directory unwritable) and
	// the next sync puts back the bucket's state: an edit, a new file, a
	// deletion, and a symlink and a directory the bucket does not hold.
	mustExec(t, d, "mnt", "cd /mnt/ro && echo -n local > a.txt && echo -n x > extra.txt && rm new/n.txt && ln -s /etc link && mkdir junk")
	res, err = sb.SyncMount(ctx, "/mnt/ro")
	if err != nil {
		t.Fatal(err)
	}
	if res.Reverted != 5 || res.Downloaded != 2 || res.Removed != 3 || res.Uploaded != 0 || res.Deleted != 0 {
		t.Errorf("read-only sync result %+v, want 5 reverted (2 downloaded, 3 removed)", res)
	}
	if got := sandboxFiles(t, d, "mnt", "/mnt/ro"); !mapsEqual(got, mirror) {
		t.Errorf("read-only mount after sync holds %v, want the bucket's %v", got, mirror)
	}
	if got := roTree(); got != wantTree {
		t.Errorf("read-only mount after sync:\n%s\nwant\n%s", got, wantTree)
	}
	if got := objects(t, st, ""); !mapsEqual(got, before) {
		t.Errorf("a read-only sync wrote to the bucket: %v", got)
	}
	// Nothing left to revert; a same-size edit is reverted too, and the
	// CLI says so.
	if res, err := sb.SyncMount(ctx, "/mnt/ro"); err != nil || res.Reverted != 0 || res.Downloaded != 0 || res.Removed != 0 {
		t.Errorf("second read-only sync: %+v %v", res, err)
	}
	mustExec(t, d, "mnt", "echo -n MINE > /mnt/ro/a.txt")
	out, stderr, code := d.CLI(nil, "mount", "sync", "mnt", "/mnt/ro")
	if code != 0 || !strings.Contains(out, "reverted 1 local change ") {
		t.Errorf("sbx mount sync of a read-only mount: %d %q %q", code, out, stderr)
	}
	if got := sandboxFiles(t, d, "mnt", "/mnt/ro"); !mapsEqual(got, mirror) {
		t.Errorf("read-only mount after CLI sync holds %v, want %v", got, mirror)
	}
	if err := sb.Unmount(ctx, "/mnt/ro"); err != nil {
		t.Fatal(err)
	}
	if got := objects(t, st, ""); !mapsEqual(got, before) || got["proj/a.txt"] != "mine" {
		t.Errorf("a read-only mount wrote to the bucket: %v", got)
	}

	// Listing, CLI, unmount.
	out, stderr, code = d.CLI(nil, "mount", "ls", "mnt")
	if code != 0 || !strings.Contains(out, "/mnt/proj") || strings.Contains(out, "/mnt/ro") {
		t.Errorf("sbx mount ls: %d %s %s", code, out, stderr)
	}
	mustExec(t, d, "mnt", "echo -n last > /mnt/proj/last.txt")
	if _, stderr, code := d.CLI(nil, "unmount", "mnt", "/mnt/proj"); code != 0 {
		t.Fatalf("sbx unmount: %s", stderr)
	}
	if got := objects(t, st, "proj/")["proj/last.txt"]; got != "last" {
		t.Errorf("unmount did not sync: %q", got)
	}
	if res := mustExec(t, d, "mnt", "test -e /mnt/proj && echo still || echo gone"); res.Stdout != "gone\n" {
		t.Errorf("unmounted directory: %s", res.Stdout)
	}
	if list, err := sb.Mounts(ctx); err != nil || len(list) != 0 {
		t.Errorf("mounts after unmount: %v %v", list, err)
	}
	_, err = sb.SyncMount(ctx, "/mnt/proj")
	wantErrCode(t, err, api.CodeMountNotFound)
}

// TestBucketMountFailures: every failure is an error, never a success,
// and leaves nothing behind in the sandbox.
func TestBucketMountFailures(t *testing.T) {
	srv := StartS3(t)
	bucket := srv.Bucket("data")
	putObject(t, bucketStore(t, srv, bucket), "k", "v")
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("mntf")
	good := api.MountRequest{Bucket: bucket, Path: "/mnt/x", Endpoint: srv.URL,
		AccessKeyID: S3AccessKey, SecretAccessKey: S3SecretKey, PathStyle: true}
	mustExec(t, d, "mntf", "mkdir -p /mnt/full && touch /mnt/full/f")
	for _, tc := range []struct {
		name string
		edit func(*api.MountRequest)
		code string
	}{
		{"wrong secret", func(r *api.MountRequest) { r.SecretAccessKey = "wrong" }, api.CodeMountFailed},
		{"no such bucket", func(r *api.MountRequest) { r.Bucket = "missing" }, api.CodeMountFailed},
		{"unreachable server", func(r *api.MountRequest) { r.Endpoint = "http://127.0.0.1:1" }, api.CodeMountFailed},
		{"non-empty directory", func(r *api.MountRequest) { r.Path = "/mnt/full" }, api.CodeFileExists},
		{"no endpoint", func(r *api.MountRequest) { r.Endpoint = "" }, api.CodeInvalidRequest},
		{"relative path", func(r *api.MountRequest) { r.Path = "mnt" }, api.CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := good
			tc.edit(&req)
			_, err := sb.MountBucket(ctx, req)
			wantErrCode(t, err, tc.code)
			if res := mustExec(t, d, "mntf", "test -e /mnt/x && echo exists || echo absent"); res.Stdout != "absent\n" {
				t.Errorf("failed mount left %s", "/mnt/x")
			}
		})
	}
	// The server dies after the mount: sync fails with an error.
	if _, err := sb.MountBucket(ctx, good); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	mustExec(t, d, "mntf", "echo -n changed > /mnt/x/k")
	_, err := sb.SyncMount(ctx, "/mnt/x")
	wantErrCode(t, err, api.CodeMountFailed)
	if err := sb.Unmount(ctx, "/mnt/x"); err == nil {
		t.Error("unmount of a read-write mount succeeded without reaching the bucket")
	}
	if list, _ := sb.Mounts(ctx); len(list) != 1 {
		t.Errorf("a failed unmount dropped the mount: %v", list)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Unmount(ctx, "/mnt/x"); err != nil {
		t.Fatal(err)
	}
}
