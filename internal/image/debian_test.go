package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBuildDefaultImage builds the real default image from the host's
// Debian mirror. It takes a minute or two and half a GiB, so it runs only
// when asked: SBX_TEST_IMAGE_BUILD=1, as root.
func TestBuildDefaultImage(t *testing.T) {
	requireRoot(t)
	if os.Getenv("SBX_TEST_IMAGE_BUILD") != "1" {
		t.Skip("set SBX_TEST_IMAGE_BUILD=1 to build a real image (minutes)")
	}
	dir := t.TempDir()
	t.Cleanup(func() { assertNoMountsUnder(t, dir) })
	s := &Store{Dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	info, err := s.Build(ctx, "default", BuildOptions{Progress: &out})
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out.String())
	}
	t.Logf("built in %s, %d MiB", time.Since(start).Round(time.Second), info.SizeBytes>>20)
	assertNoMountsUnder(t, dir)

	root, err := s.Path("default")
	if err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"python3", "node", "npm", "git", "curl", "bash"} {
		p := filepath.Join(root, "usr/bin", bin)
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "workspace")); err != nil || !fi.IsDir() {
		t.Errorf("/workspace: %v", err)
	}
	for _, gone := range []string{"usr/sbin/policy-rc.d", "var/cache/apt/pkgcache.bin"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); err == nil {
			t.Errorf("%s left in the image", gone)
		}
	}
	if lists, _ := filepath.Glob(filepath.Join(root, "var/lib/apt/lists/*_Packages")); len(lists) > 0 {
		t.Errorf("apt lists left in the image: %v", lists)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/hostname")); err != nil || string(b) != "sandbox\n" {
		t.Errorf("/etc/hostname = %q, %v", b, err)
	}

	// A second build is a no-op.
	again, err := s.Build(ctx, "default", BuildOptions{})
	if err != nil || again.Created != info.Created {
		t.Errorf("second Build rebuilt or failed: %v", err)
	}
}
