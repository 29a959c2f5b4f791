package bench

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
	"github.com/sbx-dev/sbx/internal/integration"
)

// fileSize is the size of the file moved by BenchmarkFileTransfer.
const fileSize = 1 << 30

// BenchmarkFileTransfer moves a 1 GiB file through the public API (Go SDK
// → sbxd over TCP → agent over its unix socket → the sandbox's overlay),
// up and down, and copies the same file on the host with cat in the same
// iteration as the baseline. All files live on the same disk (the daemon's
// data dir); the source is in the page cache, as a file just written by a
// build would be.
//
//	go test -run '^$' -bench FileTransfer -benchtime 5x ./bench/
//
// Metrics are MiB/s; *-%-of-cat is the percentage of the `cat src > dst`
// figure, and cat-pipe is `cat src | cat > dst`, which, like any stream
// between processes, cannot use copy_file_range.
func BenchmarkFileTransfer(b *testing.B) {
	d := integration.StartDaemon(b, "--log-level", "warn")
	dir := b.TempDir()
	src := filepath.Join(dir, "src.bin")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, fileSize); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	// The default instance type has half a CPU for the agent's copying;
	// standard-4 is not limited below this machine's size.
	for _, it := range []string{"standard-1", "standard-4"} {
		b.Run(it, func(b *testing.B) {
			sb := d.Client.Sandbox("bench-files-" + it)
			if _, err := sb.Create(context.Background(), &api.CreateSandboxRequest{InstanceType: it}); err != nil {
				b.Fatal(err)
			}
			benchTransfer(b, sb, src, filepath.Join(dir, "dst.bin"))
			if err := sb.Destroy(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func benchTransfer(b *testing.B, sb *client.Sandbox, src, dst string) {
	ctx := context.Background()
	var cat, pipe, up, down time.Duration
	run := func(script string) time.Duration {
		t0 := time.Now()
		if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v %s", script, err, out)
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	for range b.N {
		os.Remove(dst)
		cat += run("cat " + src + " > " + dst)
		os.Remove(dst)
		pipe += run("cat " + src + " | cat > " + dst)
		os.Remove(dst)

		t0 := time.Now()
		in, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sb.WriteFile(ctx, "/workspace/big.bin", in); err != nil {
			b.Fatal(err)
		}
		in.Close()
		up += time.Since(t0)

		t0 = time.Now()
		out, err := os.Create(dst)
		if err != nil {
			b.Fatal(err)
		}
		n, err := sb.CopyFile(ctx, "/workspace/big.bin", out)
		if err != nil || n != fileSize {
			b.Fatalf("download: %d bytes, %v", n, err)
		}
		if err := out.Close(); err != nil {
			b.Fatal(err)
		}
		down += time.Since(t0)
	}
	b.StopTimer()
	os.Remove(dst)
	rate := func(d time.Duration) float64 { return float64(b.N) * fileSize / (1 << 20) / d.Seconds() }
	b.ReportMetric(rate(cat), "cat-MiB/s")
	b.ReportMetric(rate(pipe), "cat-pipe-MiB/s")
	b.ReportMetric(rate(up), "upload-MiB/s")
	b.ReportMetric(rate(down), "download-MiB/s")
	b.ReportMetric(100*rate(up)/rate(cat), "upload-%-of-cat")
	b.ReportMetric(100*rate(down)/rate(cat), "download-%-of-cat")
	b.ReportMetric(0, "ns/op")
}
