package image

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountInfo(t *testing.T) {
	const in = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
97 22 0:52 / /var/lib/sbx/sandboxes/a\040b/rootfs rw,relatime shared:50 - overlay overlay rw,lowerdir=/var/lib/sbx/images/default/rootfs,upperdir=/u,workdir=/w
`
	got, err := parseMountInfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Point != "/var/lib/sbx/sandboxes/a b/rootfs" || got[1].FSType != "overlay" || !strings.HasPrefix(got[1].Options, "rw,lowerdir=") {
		t.Errorf("parseMountInfo = %+v", got)
	}
	if _, err := parseMountInfo(strings.NewReader("garbage\n")); err == nil {
		t.Error("a malformed line parsed")
	}
}

func TestUsesLower(t *testing.T) {
	const img = "/var/lib/sbx/images/default/rootfs"
	tests := []struct {
		opts string
		want bool
	}{
		{"rw,lowerdir=/var/lib/sbx/images/default/rootfs,upperdir=/u,workdir=/w", true},
		{"rw,lowerdir=/extra:/var/lib/sbx/images/default/rootfs,upperdir=/u,workdir=/w", true},
		{"rw,lowerdir+=/var/lib/sbx/images/default/rootfs,upperdir=/u", true},
		{"rw,lowerdir=/var/lib/sbx/images/default/rootfs/usr,upperdir=/u", true},
		{"rw,lowerdir=/var/lib/sbx/images/default/rootfs2,upperdir=/u", false},
		{"rw,lowerdir=/var/lib/sbx/images/python/rootfs,upperdir=/var/lib/sbx/images/default/rootfs", false},
	}
	for _, tt := range tests {
		if got := usesLower(tt.opts, img); got != tt.want {
			t.Errorf("usesLower(%q) = %v, want %v", tt.opts, got, tt.want)
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// mountTmpfs mounts a tmpfs on dir in the host's namespace and makes sure
// it is gone when the test ends, whatever the code under test did.
func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("sbx-test", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
}

func assertNoMountsUnder(t *testing.T, dir string) {
	t.Helper()
	points, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(points) > 0 {
		t.Errorf("mounts left under %s: %v", dir, points)
	}
}

func TestRemoveTreeUnmountsFirst(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	tree := filepath.Join(base, ".tmp-default-1")
	// A file outside the tree that a bind mount exposes inside it: removal
	// must not delete through the mount.
	outside := filepath.Join(base, "precious")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bind := filepath.Join(tree, "rootfs", "dev")
	if err := os.MkdirAll(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(outside, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bind, unix.MNT_DETACH) })
	mountTmpfs(t, filepath.Join(tree, "rootfs", "proc"))

	if err := removeTree(tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tree); !os.IsNotExist(err) {
		t.Errorf("tree still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("removeTree deleted through a bind mount: %v", err)
	}
	assertNoMountsUnder(t, base)
}

func TestCollectGarbageUnmountsLeftovers(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	mountTmpfs(t, filepath.Join(dir, ".tmp-default-99", "rootfs", "proc"))
	var out bytes.Buffer
	collectGarbage(dir, &out)
	if _, err := os.Stat(filepath.Join(dir, ".tmp-default-99")); !os.IsNotExist(err) {
		t.Errorf("leftover not removed: %v\n%s", err, out.String())
	}
	assertNoMountsUnder(t, dir)
}

func TestOldImageKeptWhileInUse(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	lower := filepath.Join(dir, "default", "rootfs")
	for _, d := range []string{lower, filepath.Join(dir, "u"), filepath.Join(dir, "w"), filepath.Join(dir, "m")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := filepath.Join(dir, ".old-default-20260101T000000.000000000")
	if err := os.MkdirAll(filepath.Join(old, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := filepath.Join(dir, "m")
	if err := unix.Mount("overlay", m, "overlay", 0, "lowerdir="+lower+",upperdir="+dir+"/u,workdir="+dir+"/w"); err != nil {
		t.Skipf("overlay: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(m, unix.MNT_DETACH) })
	if n, err := overlayUsers(lower); err != nil || n != 1 {
		t.Fatalf("overlayUsers = %d, %v; want 1", n, err)
	}
	collectGarbage(dir, &bytes.Buffer{})
	if _, err := os.Stat(old); err != nil {
		t.Errorf("a replaced image was collected while an overlay still used its path: %v", err)
	}
	if err := unix.Unmount(m, 0); err != nil {
		t.Fatal(err)
	}
	collectGarbage(dir, &bytes.Buffer{})
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("an unused replaced image was not collected: %v", err)
	}
}

func TestInMountNamespace(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	var childSaw []byte
	err := inMountNamespace(func() error {
		root := filepath.Join(dir, "root")
		if err := os.MkdirAll(root, 0o755); err != nil {
			return err
		}
		unmount, err := mountChrootFS(root)
		if err != nil {
			return err
		}
		defer unmount()
		// Processes started here see the mounts ...
		childSaw, err = exec.Command("cat", "/proc/thread-self/mountinfo").Output()
		if err != nil {
			return err
		}
		// ... and /dev has working device nodes.
		if err := os.WriteFile(filepath.Join(root, "dev", "null"), []byte("x"), 0); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/root/proc ", "/root/sys ", "/root/dev ", "/root/dev/pts "} {
		if !bytes.Contains(childSaw, []byte(filepath.Join(dir, p))) {
			t.Errorf("child did not see the %s mount", p)
		}
	}
	// ... but the host never does.
	assertNoMountsUnder(t, dir)
}

func TestForceRebuildKeepsImageInUse(t *testing.T) {
	requireRoot(t)
	f := &fakeBuild{marker: "one"}
	s := newTestStore(t, f)
	ctx := t.Context()
	if _, err := s.Build(ctx, "default", testOpts(nil)); err != nil {
		t.Fatal(err)
	}
	lower, _ := s.Path("default")
	scratch := t.TempDir()
	for _, d := range []string{"u", "w", "m"} {
		if err := os.Mkdir(filepath.Join(scratch, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := filepath.Join(scratch, "m")
	if err := unix.Mount("overlay", m, "overlay", 0, "lowerdir="+lower+",upperdir="+scratch+"/u,workdir="+scratch+"/w"); err != nil {
		t.Skipf("overlay: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(m, unix.MNT_DETACH) })

	var out bytes.Buffer
	opts := testOpts(&out)
	opts.Force = true
	f.marker = "two"
	if _, err := s.Build(ctx, "default", opts); err != nil {
		t.Fatal(err)
	}
	if got := marker(t, s, "default"); got != "two" {
		t.Errorf("image not replaced: marker %q", got)
	}
	// The running sandbox still sees its old tree.
	if b, err := os.ReadFile(filepath.Join(m, "etc/marker")); err != nil || string(b) != "one" {
		t.Errorf("the overlay over the replaced image reads %q, %v", b, err)
	}
	if l := leftovers(t, s); len(l) != 1 || !strings.HasPrefix(l[0], ".old-default-") {
		t.Errorf("leftovers = %v, want the old image kept aside", l)
	}
	if !strings.Contains(out.String(), "still used by running sandboxes") {
		t.Errorf("progress does not say the old image was kept:\n%s", out.String())
	}
	if err := s.Remove(ctx, "default"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Remove of an image in use: %v", err)
	}
	if err := unix.Unmount(m, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Build(ctx, "default", opts); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(t, s); len(l) != 0 {
		t.Errorf("leftovers after the sandbox is gone: %v", l)
	}
}
