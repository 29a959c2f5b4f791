package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
	"github.com/sbx-dev/sbx/internal/integration"
)

// bucketShape is the content of one mounted prefix.
type bucketShape struct {
	name  string
	files int
	size  int64
}

// readAllScript prints how many nanoseconds `cat` of every file under dir
// to /dev/null takes, timed where it runs so that the exec round trip is
// not counted.
func readAllScript(dir string) string {
	return `s=$(date +%s%N); find ` + dir + ` -type f -exec cat {} + > /dev/null || exit 1; e=$(date +%s%N); echo $((e - s))`
}

// BenchmarkBucketMount measures bucket mounts, which sbx implements by
// copying the prefix into the sandbox and syncing on request (see
// docs/persistence.md), against what any mechanism has to pay, for a
// prefix of many small files and one of a single large file. The S3
// server is versitygw on loopback. Per iteration, through the Go SDK:
//
//   - mount: MountBucket of a read-write mount, until the call returns
//     with everything downloaded;
//   - read: `cat` of every file to /dev/null in the sandbox, timed inside;
//   - sync0, sync1: SyncMount with nothing changed, and after changing one
//     byte of one file in the sandbox (the whole object is uploaded).
//
// Baselines in the same iteration, on the host: floor, a sequential
// minio-go download of the same objects into a local directory (what any
// mechanism, FUSE included, pays to see the data once); host-read, `cat`
// of that copy; list, a minio-go LIST of the prefix (the floor of
// sync0); put1, a minio-go PUT of one object (the floor of sync1).
// get-ttfb is the time from a GET to its first bytes, per object: the
// least a first read through a FUSE file system backed by the bucket
// would wait.
//
//	go test -run '^$' -bench BucketMount -benchtime 3x ./bench/
//
// Times are per iteration; *-x-* are ratios to the baselines.
func BenchmarkBucketMount(b *testing.B) {
	srv := integration.StartS3(b)
	bucket := srv.Bucket("bench")
	mc, err := minio.New(srv.Addr, &minio.Options{
		Creds:        credentials.NewStaticV4(integration.S3AccessKey, integration.S3SecretKey, ""),
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		b.Fatal(err)
	}
	d := integration.StartDaemon(b, "--log-level", "warn")
	ctx := context.Background()
	sb := d.Client.Sandbox("bench-bucket")
	// standard-4: the agent's copying is not CPU-limited below this
	// machine's size, like the host-side baselines.
	if _, err := sb.Create(ctx, &api.CreateSandboxRequest{InstanceType: "standard-4"}); err != nil {
		b.Fatal(err)
	}
	mounts := 0 // a fresh mount path per iteration, across runs
	for _, sh := range []bucketShape{{"200x64KiB", 200, 64 << 10}, {"1x256MiB", 1, 256 << 20}} {
		prefix := sh.name + "/"
		keys := make([]string, sh.files)
		for i := range keys {
			keys[i] = fmt.Sprintf("%sf%03d.bin", prefix, i)
			if _, err := mc.PutObject(ctx, bucket, keys[i], io.LimitReader(rand.Reader, sh.size), sh.size,
				minio.PutObjectOptions{PartSize: 64 << 20}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(sh.name, func(b *testing.B) {
			req := api.MountRequest{Bucket: bucket, Prefix: prefix, Endpoint: srv.URL,
				AccessKeyID: integration.S3AccessKey, SecretAccessKey: integration.S3SecretKey, PathStyle: true}
			benchBucketMount(b, sb, mc, req, keys, sh, &mounts)
		})
	}
	if err := sb.Destroy(ctx); err != nil {
		b.Fatal(err)
	}
}

func benchBucketMount(b *testing.B, sb *client.Sandbox, mc *minio.Client, req api.MountRequest, keys []string, sh bucketShape, mounts *int) {
	ctx := context.Background()
	local := filepath.Join(b.TempDir(), "copy")
	var floor, hostRead, list, put1, mount, read, sync0, sync1 time.Duration
	var ttfb latencies
	buf := make([]byte, 32<<10)

	// download is the floor: each object GET in turn, written to a file.
	download := func() {
		if err := os.RemoveAll(local); err != nil {
			b.Fatal(err)
		}
		if err := os.Mkdir(local, 0o755); err != nil {
			b.Fatal(err)
		}
		for _, key := range keys {
			t0 := time.Now()
			obj, err := mc.GetObject(ctx, req.Bucket, key, minio.GetObjectOptions{})
			if err != nil {
				b.Fatal(err)
			}
			// The request goes out on the first Read.
			n, err := obj.Read(buf)
			if err != nil && err != io.EOF {
				b.Fatal(err)
			}
			ttfb = append(ttfb, time.Since(t0))
			f, err := os.Create(filepath.Join(local, path.Base(key)))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(buf[:n]); err != nil {
				b.Fatal(err)
			}
			m, err := io.CopyBuffer(f, obj, buf)
			if err != nil || int64(n)+m != sh.size {
				b.Fatalf("GET %s: %d bytes, %v", key, int64(n)+m, err)
			}
			obj.Close()
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
	}
	readNs := func(out string) time.Duration {
		ns, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			b.Fatalf("read timing %q: %v", out, err)
		}
		return time.Duration(ns)
	}

	b.ResetTimer()
	for range b.N {
		*mounts++
		req.Path = fmt.Sprintf("/mnt/bench-%d", *mounts)

		t0 := time.Now()
		download()
		floor += time.Since(t0)
		out, err := exec.Command("sh", "-c", readAllScript(local)).CombinedOutput()
		if err != nil {
			b.Fatalf("host read: %v %s", err, out)
		}
		hostRead += readNs(string(out))

		t0 = time.Now()
		m, err := sb.MountBucket(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		mount += time.Since(t0)
		if m.Objects != len(keys) {
			b.Fatalf("mounted %d objects, want %d", m.Objects, len(keys))
		}

		res, err := sb.Exec(ctx, readAllScript(req.Path))
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("sandbox read: %v %+v", err, res)
		}
		read += readNs(res.Stdout)

		// The floor of a sync with nothing changed: one LIST of the
		// prefix.
		t0 = time.Now()
		listed := 0
		for obj := range mc.ListObjects(ctx, req.Bucket, minio.ListObjectsOptions{Prefix: req.Prefix, Recursive: true}) {
			if obj.Err != nil {
				b.Fatal(obj.Err)
			}
			listed++
		}
		list += time.Since(t0)
		if listed != len(keys) {
			b.Fatalf("listed %d objects, want %d", listed, len(keys))
		}

		t0 = time.Now()
		sr, err := sb.SyncMount(ctx, req.Path)
		if err != nil {
			b.Fatal(err)
		}
		sync0 += time.Since(t0)
		if sr.Uploaded+sr.Downloaded+sr.Deleted+sr.Removed != 0 {
			b.Fatalf("sync with nothing changed: %+v", sr)
		}

		// One byte in place: same size, new mtime.
		changed := path.Join(req.Path, path.Base(keys[0]))
		if res, err := sb.Exec(ctx, "printf x | dd of="+changed+" bs=1 seek=100 conv=notrunc status=none"); err != nil || res.ExitCode != 0 {
			b.Fatalf("changing %s: %v %+v", changed, err, res)
		}
		t0 = time.Now()
		sr, err = sb.SyncMount(ctx, req.Path)
		if err != nil {
			b.Fatal(err)
		}
		sync1 += time.Since(t0)
		if sr.Uploaded != 1 || sr.Downloaded+sr.Deleted+sr.Removed != 0 {
			b.Fatalf("sync after changing one file: %+v", sr)
		}
		if err := sb.Unmount(ctx, req.Path); err != nil {
			b.Fatal(err)
		}

		// The floor of that sync: one PUT of the object, which also puts
		// back the original bytes for the next iteration.
		f, err := os.Open(filepath.Join(local, path.Base(keys[0])))
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		if _, err := mc.PutObject(ctx, req.Bucket, keys[0], f, sh.size, minio.PutObjectOptions{PartSize: 64 << 20}); err != nil {
			b.Fatal(err)
		}
		put1 += time.Since(t0)
		f.Close()
	}
	b.StopTimer()

	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
	mib := float64(sh.files) * float64(sh.size) / (1 << 20)
	b.ReportMetric(ms(mount), "mount-ms")
	b.ReportMetric(mib*n/mount.Seconds(), "mount-MiB/s")
	b.ReportMetric(ms(floor), "floor-ms")
	b.ReportMetric(mib*n/floor.Seconds(), "floor-MiB/s")
	b.ReportMetric(mount.Seconds()/floor.Seconds(), "mount-x-floor")
	b.ReportMetric(ms(read), "read-ms")
	b.ReportMetric(ms(hostRead), "host-read-ms")
	b.ReportMetric(read.Seconds()/hostRead.Seconds(), "read-x-host")
	b.ReportMetric(ms(sync0), "sync0-ms")
	b.ReportMetric(ms(list), "list-ms")
	b.ReportMetric(ms(sync1), "sync1-ms")
	b.ReportMetric(ms(put1), "put1-ms")
	b.ReportMetric(sync1.Seconds()/put1.Seconds(), "sync1-x-put")
	s := slices.Clone(ttfb)
	slices.Sort(s)
	b.ReportMetric(float64(s[len(s)/2].Microseconds())/1000, "get-ttfb-p50-ms")
	b.ReportMetric(float64(s[(len(s)-1)*95/100].Microseconds())/1000, "get-ttfb-p95-ms")
	b.ReportMetric(0, "ns/op")
}
