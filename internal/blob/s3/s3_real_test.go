package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sbx-dev/sbx/internal/blob"
	"github.com/sbx-dev/sbx/internal/blob/blobtest"
)

// These tests run the store against a real S3-compatible server,
// versitygw with its posix backend, started on loopback. The binary is
// $SBX_TEST_S3_BIN or versitygw on PATH (hack/install-s3.sh installs it).
// Without it they skip, except under CI, where they fail.

const (
	realAccess = "sbx-test-access"
	realSecret = "sbx-test-secret-key"
)

func versitygwBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SBX_TEST_S3_BIN"); p != "" {
		return p
	}
	p, err := exec.LookPath("versitygw")
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("versitygw is not installed (CI must run hack/install-s3.sh, or set SBX_TEST_S3_BIN): %v", err)
	}
	t.Skipf("versitygw not found (run hack/install-s3.sh or set SBX_TEST_S3_BIN): %v", err)
	return ""
}

// realServer is a versitygw process serving the directory dir.
type realServer struct {
	bin, dir, addr string
	cmd            *exec.Cmd
	out            *bytes.Buffer
	waited         chan struct{}
}

// startRealServer starts versitygw on a free loopback port over a fresh
// directory and stops it when the test ends.
func startRealServer(t *testing.T) *realServer {
	t.Helper()
	srv := &realServer{bin: versitygwBin(t), dir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		srv.addr = freePort(t)
		err := srv.start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatal(err)
		}
		t.Logf("retrying on another port: %v", err)
	}
	t.Cleanup(srv.kill)
	return srv
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs the server on srv.addr and waits until it answers.
func (srv *realServer) start() error {
	srv.out = &bytes.Buffer{}
	srv.cmd = exec.Command(srv.bin, "--access", realAccess, "--secret", realSecret,
		"--port", srv.addr, "--quiet", "posix", srv.dir)
	srv.cmd.Stdout, srv.cmd.Stderr = srv.out, srv.out
	// Die with the test binary, whatever happens to it.
	srv.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", srv.bin, err)
	}
	srv.waited = make(chan struct{})
	go func() { srv.cmd.Wait(); close(srv.waited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + srv.addr + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-srv.waited:
			return fmt.Errorf("versitygw exited at start: %v\n%s", srv.cmd.ProcessState, srv.out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			srv.kill()
			return fmt.Errorf("versitygw did not answer on %s within 30s:\n%s", srv.addr, srv.out)
		}
	}
}

// kill stops the server at once, as a crash would.
func (srv *realServer) kill() {
	if srv.cmd == nil || srv.cmd.Process == nil {
		return
	}
	srv.cmd.Process.Kill()
	<-srv.waited
}

var bucketSeq atomic.Int64

// newBucket creates an empty bucket and returns a store on it.
func (srv *realServer) newBucket(t *testing.T, partSize int64) *Store {
	t.Helper()
	s, err := New(Config{
		Endpoint:   "http://" + srv.addr,
		Bucket:     fmt.Sprintf("sbx-test-%d", bucketSeq.Add(1)),
		AccessKey:  realAccess,
		SecretKey:  realSecret,
		PathStyle:  true,
		PartSize:   partSize,
		MaxRetries: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.c.MakeBucket(t.Context(), s.bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket %s: %v", s.bucket, err)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformanceReal(t *testing.T) {
	srv := startRealServer(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		return srv.newBucket(t, MinPartSize)
	})
	t.Run("FailedPutAbortsUpload", func(t *testing.T) {
		s := srv.newBucket(t, MinPartSize)
		boom := errors.New("boom")
		src := io.MultiReader(bytes.NewReader(make([]byte, 3*MinPartSize)), errReader{boom})
		if _, err := s.Put(t.Context(), "big/obj", src, blob.PutOptions{}); !errors.Is(err, boom) {
			t.Fatalf("Put err = %v, want boom", err)
		}
		assertNoUploads(t, s)
	})
}

// killAfter yields pseudo-random data, kills the server once n bytes
// have been read, and goes on until limit.
type killAfter struct {
	r     io.Reader
	n     int64
	kill  func()
	once  sync.Once
	total int64
}

func (k *killAfter) Read(p []byte) (int, error) {
	if k.total >= k.n {
		k.once.Do(k.kill)
	}
	n, err := k.r.Read(p)
	k.total += int64(n)
	return n, err
}

// TestServerKilledMidPut kills the server during a multipart upload: Put
// must fail with an error that names the server, and once the server is
// back no object, partial or whole, is listed under the key.
func TestServerKilledMidPut(t *testing.T) {
	srv := startRealServer(t)
	s := srv.newBucket(t, MinPartSize)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if _, err := s.Put(ctx, "backups/old", strings.NewReader("kept"), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	var seed [32]byte
	src := &killAfter{r: io.LimitReader(rand.NewChaCha8(seed), 64<<20), n: 12 << 20, kill: srv.kill}
	start := time.Now()
	info, err := s.Put(ctx, "backups/new", src, blob.PutOptions{})
	if err == nil {
		t.Fatalf("Put succeeded (%+v) although the server was killed mid-upload", info)
	}
	t.Logf("Put failed after %v with: %v", time.Since(start).Round(time.Millisecond), err)
	if !strings.Contains(err.Error(), srv.addr) || !strings.Contains(err.Error(), "backups/new") {
		t.Errorf("error %q does not name the server %s and the key", err, srv.addr)
	}
	if errors.Is(err, blob.ErrNotFound) || errors.Is(err, context.Canceled) {
		t.Errorf("error %v is misclassified", err)
	}

	if err := srv.start(); err != nil { // same port, same directory
		t.Fatalf("restart: %v", err)
	}
	var keys []string
	for info, err := range s.List(ctx, "backups/") {
		if err != nil {
			t.Fatalf("List after restart: %v", err)
		}
		keys = append(keys, info.Key)
	}
	if strings.Join(keys, ",") != "backups/old" {
		t.Errorf("List after restart = %q, want only backups/old", keys)
	}
	if _, err := s.Stat(ctx, "backups/new"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat of the interrupted key = %v, want ErrNotFound", err)
	}
	// The abort could not reach the dead server; the upload is invisible
	// but still there until Sweep removes it.
	incomplete := func() int {
		n := 0
		for u := range s.c.ListIncompleteUploads(ctx, s.bucket, "", true) {
			if u.Err == nil {
				n++
			}
		}
		return n
	}
	left := incomplete()
	if left == 0 {
		t.Skip("the server dropped the unfinished upload itself; nothing to sweep")
	}
	if n, err := s.Sweep(ctx, "backups/", start.Add(-time.Minute)); err != nil || n != 0 {
		t.Errorf("Sweep of uploads older than the failed one = %d, %v; want 0", n, err)
	}
	if n, err := s.Sweep(ctx, "persist/", time.Now().Add(time.Minute)); err != nil || n != 0 {
		t.Errorf("Sweep of another prefix = %d, %v; want 0", n, err)
	}
	if n, err := s.Sweep(ctx, "backups/", time.Now().Add(time.Minute)); err != nil || n != left {
		t.Errorf("Sweep = %d, %v; want the %d unfinished uploads", n, err, left)
	}
	if n := incomplete(); n != 0 {
		t.Errorf("%d unfinished uploads left after Sweep", n)
	}
	if _, err := s.Stat(ctx, "backups/old"); err != nil {
		t.Errorf("Sweep touched a finished object: %v", err)
	}
}

// TestLargeStreamMemory streams a large object of unknown length and
// checks that the client's heap stays bounded by a few parts, and that the
// object comes back intact.
func TestLargeStreamMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	srv := startRealServer(t)
	s := srv.newBucket(t, 0) // DefaultPartSize
	ctx := t.Context()
	const size = 256 << 20

	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	var seed [32]byte
	seed[0] = 42
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8(seed), size), h)
	runtime.GC()
	base := heapNow()
	peak.Store(base)
	start := time.Now()
	info, err := s.Put(ctx, "big", struct{ io.Reader }{src}, blob.PutOptions{})
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	grew := int64(peak.Load()) - int64(base)
	t.Logf("put %d MiB in %v (%.0f MB/s), heap grew by at most %d MiB (base %d MiB; part size %d MiB)",
		size>>20, elapsed.Round(time.Millisecond), float64(size)/elapsed.Seconds()/1e6, grew>>20, base>>20, DefaultPartSize>>20)
	if info.Size != size {
		t.Errorf("Put size = %d, want %d", info.Size, size)
	}
	// Two parts buffered (the first part read ahead, and minio-go's part
	// buffer) plus garbage not yet collected; buffering the object would
	// take 256 MiB.
	if limit := int64(4 * DefaultPartSize); grew > limit {
		t.Errorf("heap grew by %d MiB during Put, want at most %d MiB", grew>>20, limit>>20)
	}

	rc, _, err := s.Get(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	g := sha256.New()
	start = time.Now()
	n, err := io.Copy(g, rc)
	if err != nil || n != size || !bytes.Equal(g.Sum(nil), h.Sum(nil)) {
		t.Fatalf("Get returned %d bytes (err %v), hash match %v", n, err, bytes.Equal(g.Sum(nil), h.Sum(nil)))
	}
	t.Logf("got %d MiB in %v", size>>20, time.Since(start).Round(time.Millisecond))
}

func heapNow() uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}
