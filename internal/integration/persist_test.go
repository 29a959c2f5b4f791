package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

// fsManifest hashes what a user sees of a sandbox's whole writable file
// system: every entry of the root file system (not of other mounts) with
// type, mode, owner, size, file mtime and link target, and the content of
// every file. Files that the runtime rewrites at each start are left out.
const fsManifest = `cd / && find . -xdev \( -path ./etc/resolv.conf -o -path ./etc/hosts -o -path ./etc/hostname -o -path ./proc -o -path ./sys -o -path ./dev -o -path ./run \) -prune -o \
	\( -type f -printf 'f %m %U:%G %s %T@ %p\n' \) -o -printf '%y %m %U:%G %p -> %l\n' | LC_ALL=C sort | sha256sum &&
	find . -xdev \( -path ./etc/resolv.conf -o -path ./etc/hosts -o -path ./etc/hostname -o -path ./proc -o -path ./sys -o -path ./dev -o -path ./run \) -prune -o \
	-type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum`

// persistChanges writes, replaces, deletes and re-owns files all over the
// file system, so that the snapshot must carry new files, modified image
// files, whiteouts, opaque directories, renamed image directories
// (overlay redirects), owners, modes, fifos and links.
const persistChanges = `set -e
	mkdir -p /workspace/app/empty /opt/tool
	head -c 3M /dev/urandom > /workspace/app/data.bin
	printf 'print("hi")\n' > /workspace/app/main.py && chmod 0751 /workspace/app/main.py
	ln -s main.py /workspace/app/link && ln /workspace/app/data.bin /workspace/app/hard
	mkfifo /workspace/app/pipe
	useradd -m -u 1234 alice && echo mine > /home/alice/note && chown alice:alice /home/alice/note
	echo changed >> /etc/debian_version
	rm -f /etc/issue.net
	rm -rf /usr/share/doc && mkdir /usr/share/doc && echo replaced > /usr/share/doc/README
	mv /etc/apt /etc/apt-moved
	touch -d '2001-02-03 04:05:06' /opt/tool/old`

func manifest(t *testing.T, d *Daemon, id string) string {
	t.Helper()
	res := mustExec(t, d, id, fsManifest)
	if res.ExitCode != 0 {
		t.Fatalf("manifest of %s: %s", id, res.Stderr)
	}
	return res.Stdout
}

func waitSandboxStatus(t *testing.T, d *Daemon, id, status string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		sb, err := d.Client.Sandbox(id).Get(ctxT(t))
		if err == nil && sb.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s did not become %s: %+v %v", id, status, sb, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPersistentSandbox: a persistent sandbox comes back with an identical
// file system after an idle stop, an explicit stop, daemon restarts and a
// plain destroy; purge discards it; an ephemeral sandbox keeps nothing.
func TestPersistentSandbox(t *testing.T) {
	d := StartDaemon(t, "--reap-interval", "100ms")
	ctx := ctxT(t)
	sb := d.Client.Sandbox("pers")
	got, err := sb.Create(ctx, &api.CreateSandboxRequest{Persistent: true, SleepAfter: api.Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Persistent {
		t.Errorf("created sandbox does not report persistent: %+v", got)
	}
	mustExec(t, d, "pers", persistChanges)
	mustExec(t, d, "pers", "sleep 600 >/dev/null 2>&1 &") // processes are not kept
	want := manifest(t, d, "pers")

	// Idle stop, then wake by exec.
	waitSandboxStatus(t, d, "pers", api.StatusStopped)
	if got := manifest(t, d, "pers"); got != want {
		t.Errorf("file system changed across an idle stop:\n%s\nwant\n%s", got, want)
	}
	if res := mustExec(t, d, "pers", "pgrep -x sleep || true"); strings.TrimSpace(res.Stdout) != "" {
		t.Errorf("a process survived the stop: %q", res.Stdout)
	}
	checks := mustExec(t, d, "pers", `stat -c '%a %U' /workspace/app/main.py /home/alice/note; test -p /workspace/app/pipe && echo fifo;
		test -e /etc/issue.net || echo whiteout; ls /usr/share/doc; readlink /workspace/app/link; stat -c %h /workspace/app/data.bin;
		test -e /etc/apt || test ! -d /etc/apt-moved/apt.conf.d || echo renamed`)
	if want := "751 root\n644 alice\nfifo\nwhiteout\nREADME\nmain.py\n2\nrenamed\n"; checks.Stdout != want {
		t.Errorf("restored details:\n%s\nwant\n%s", checks.Stdout, want)
	}

	// Stopped while the daemon restarts; then restarted while running.
	if _, err := sb.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	if got := manifest(t, d, "pers"); got != want {
		t.Errorf("file system changed across a stop and a daemon restart:\n%s\nwant\n%s", got, want)
	}
	d.Kill()
	d.Start()
	if got := manifest(t, d, "pers"); got != want {
		t.Errorf("file system changed across a daemon crash:\n%s\nwant\n%s", got, want)
	}

	// Destroy keeps the files for the next persistent sandbox of the id.
	sb = d.Client.Sandbox("pers") // the daemon's address changed
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Create(ctx, &api.CreateSandboxRequest{Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if got := manifest(t, d, "pers"); got != want {
		t.Errorf("file system not kept across destroy:\n%s\nwant\n%s", got, want)
	}
	// Purge discards them.
	if _, stderr, code := d.CLI(nil, "rm", "--purge", "pers"); code != 0 {
		t.Fatalf("sbx rm --purge: %s", stderr)
	}
	if _, stderr, code := d.CLI(nil, "create", "--persistent", "pers"); code != 0 {
		t.Fatalf("sbx create --persistent: %s", stderr)
	}
	if res := mustExec(t, d, "pers", "test -e /workspace/app/main.py && echo kept || echo gone"); res.Stdout != "gone\n" {
		t.Errorf("purged file system came back: %s", res.Stdout)
	}

	// An ephemeral sandbox starts afresh after a stop.
	mustExec(t, d, "eph", "echo x > /workspace/f")
	if _, err := d.Client.Sandbox("eph").Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if res := mustExec(t, d, "eph", "test -e /workspace/f && echo kept || echo gone"); res.Stdout != "gone\n" {
		t.Errorf("ephemeral sandbox kept a file: %s", res.Stdout)
	}
	// Persistence cannot be switched on for an existing sandbox.
	_, err = d.Client.Sandbox("eph").Create(ctx, &api.CreateSandboxRequest{Persistent: true})
	wantErrCode(t, err, api.CodeConflict)
}

// TestPersistentSandboxS3 keeps the file system in an S3 bucket, and
// refuses to stop (losing nothing) while the bucket is unreachable.
func TestPersistentSandboxS3(t *testing.T) {
	s3 := StartS3(t)
	d := StartDaemon(t, s3.DaemonFlags(s3.Bucket("sbx-state"))...)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("ps3")
	if _, err := sb.Create(ctx, &api.CreateSandboxRequest{Persistent: true}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, d, "ps3", persistChanges)
	want := manifest(t, d, "ps3")

	s3.Kill()
	_, err := sb.Stop(ctx)
	wantErrCode(t, err, api.CodeStorageUnavailable)
	if got, err := sb.Get(ctx); err != nil || got.Status != api.StatusRunning {
		t.Fatalf("after a failed save the sandbox is %+v, %v; want running", got, err)
	}
	if got := manifest(t, d, "ps3"); got != want {
		t.Errorf("a failed save changed the file system")
	}
	if err := s3.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	if got := manifest(t, d, "ps3"); got != want {
		t.Errorf("file system changed across a stop to S3 and a daemon restart:\n%s\nwant\n%s", got, want)
	}
	if err := d.Client.Sandbox("ps3").Purge(ctx); err != nil {
		t.Fatal(err)
	}
}
