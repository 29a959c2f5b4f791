package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

var (
	pythonImageOnce sync.Once
	pythonImageErr  error
)

// RequirePythonImage skips (fails in CI, after trying to build it) tests
// that need the python image: IPython, NumPy, pandas, Matplotlib and
// TypeScript on top of the default image.
func RequirePythonImage(t TB) {
	t.Helper()
	RequireRoot(t)
	rootfs := filepath.Join(ImagesDir(), "python", "rootfs")
	if _, err := os.Stat(filepath.Join(rootfs, "usr", "bin", "ipython3")); err == nil {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skipf("python image not built in %s: run `sbxd image build python --images-dir %s` (or set SBX_TEST_IMAGES)", ImagesDir(), ImagesDir())
	}
	// CI builds the default image only; build this one as `make image`
	// would, once per test binary.
	pythonImageOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(Binaries(t), "sbxd"), "image", "build", "python", "--images-dir", ImagesDir()).CombinedOutput()
		if err != nil {
			pythonImageErr = fmt.Errorf("building the python image: %v\n%s", err, out)
		}
	})
	if pythonImageErr != nil {
		t.Fatal(pythonImageErr)
	}
}
