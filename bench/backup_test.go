package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/integration"
)

// backupTree makes a 1 GiB tree in the sandbox: 8 directories of 16 files
// of 8 MiB, half random bytes (binaries, media: incompressible), half
// base64 text (compresses to about 3/4), plus 2000 small files.
const backupTree = `set -e
	rm -rf /workspace/tree && mkdir -p /workspace/tree && cd /workspace/tree
	for d in 0 1 2 3 4 5 6 7; do
		mkdir -p d$d/small
		for f in 0 1 2 3 4 5 6 7; do head -c 8M /dev/urandom > d$d/r$f.bin; done
		for f in 0 1 2 3 4 5 6 7; do head -c 6M /dev/urandom | base64 -w 76 | head -c 8M > d$d/t$f.txt; done
		for f in $(seq 250); do echo "small file $d $f" > d$d/small/$f.txt; done
	done`

// BenchmarkBackup backs up and restores a 1 GiB tree through the API and,
// in the same iteration, archives and extracts the same tree with
// `tar | zstd` and `zstd -d | tar` on the host (the tree is read from the
// sandbox's upper directory, where its files live), as the baseline.
//
//	go test -run '^$' -bench Backup -benchtime 3x ./bench/
//
// Metrics are MB/s of tree bytes (10^6); *-%-of-tar is the percentage of
// the baseline's rate.
func BenchmarkBackup(b *testing.B) {
	d := integration.StartDaemon(b, "--log-level", "warn")
	ctx := context.Background()
	sb := d.Client.Sandbox("bench-backup")
	// standard-4: not CPU-limited below this machine's size, like the
	// host-side baseline.
	if _, err := sb.Create(ctx, &api.CreateSandboxRequest{InstanceType: "standard-4"}); err != nil {
		b.Fatal(err)
	}
	if res, err := sb.Exec(ctx, backupTree); err != nil || res.ExitCode != 0 {
		b.Fatalf("making the tree: %v %+v", err, res)
	}
	res, err := sb.Exec(ctx, "du -sb /workspace/tree | cut -f1")
	if err != nil {
		b.Fatal(err)
	}
	var treeBytes int64
	fmt.Sscan(res.Stdout, &treeBytes)
	hostTree := filepath.Join(d.DataDir, "sandboxes", "bench-backup", "upper", "workspace", "tree")
	if _, err := os.Stat(hostTree); err != nil {
		b.Fatalf("the tree is not where the baseline reads it: %v", err)
	}
	scratch := b.TempDir()
	archive := filepath.Join(scratch, "tree.tar.zst")
	sh := func(script string) time.Duration {
		t0 := time.Now()
		if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v %s", script, err, out)
		}
		return time.Since(t0)
	}

	var backup, restore, tarC, tarX time.Duration
	var stored int64
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		bk, err := sb.CreateBackup(ctx, api.CreateBackupRequest{Dir: "/workspace/tree"})
		if err != nil {
			b.Fatal(err)
		}
		backup += time.Since(t0)
		stored = bk.Size
		t0 = time.Now()
		if _, err := sb.RestoreBackup(ctx, bk.ID, fmt.Sprintf("/workspace/restored%d", i)); err != nil {
			b.Fatal(err)
		}
		restore += time.Since(t0)
		b.StopTimer()
		if _, err := sb.Exec(ctx, "rm -rf /workspace/restored*"); err != nil {
			b.Fatal(err)
		}
		if err := d.Client.DeleteBackup(ctx, bk.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		tarC += sh("tar -C " + hostTree + " -cf - . | zstd -q -3 -T0 > " + archive)
		out := filepath.Join(scratch, "out")
		os.Mkdir(out, 0o755)
		tarX += sh("zstd -q -dc " + archive + " | tar -C " + out + " -xf -")
		b.StopTimer()
		os.RemoveAll(out)
		b.StartTimer()
	}
	b.StopTimer()
	rate := func(d time.Duration) float64 { return float64(treeBytes) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(rate(backup), "backup-MB/s")
	b.ReportMetric(rate(restore), "restore-MB/s")
	b.ReportMetric(rate(tarC), "tar|zstd-MB/s")
	b.ReportMetric(rate(tarX), "zstd-d|tar-MB/s")
	b.ReportMetric(100*tarC.Seconds()/backup.Seconds(), "backup-%-of-tar")
	b.ReportMetric(100*tarX.Seconds()/restore.Seconds(), "restore-%-of-tar")
	if fi, err := os.Stat(archive); err == nil {
		b.Logf("tree %d bytes; stored by sbx %d bytes, by tar|zstd -3 %d bytes", treeBytes, stored, fi.Size())
	}
	if err := sb.Destroy(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPersistentWake measures how long the first request to a
// stopped persistent sandbox with 100 MiB of changed files takes (restore
// of its file system from the blob store, start, exec), how long the stop
// that saved it took, and, as the reference, the first request to a
// stopped ephemeral sandbox.
//
//	go test -run '^$' -bench PersistentWake -benchtime 5x ./bench/
func BenchmarkPersistentWake(b *testing.B) {
	d := integration.StartDaemon(b, "--log-level", "warn")
	ctx := context.Background()
	pers := d.Client.Sandbox("bench-pers")
	eph := d.Client.Sandbox("bench-eph")
	if _, err := pers.Create(ctx, &api.CreateSandboxRequest{Persistent: true}); err != nil {
		b.Fatal(err)
	}
	// 100 MiB: 40 random files of 1 MiB, 40 of base64 text, 20 MiB of
	// 4 KiB files.
	if res, err := pers.Exec(ctx, `set -e; mkdir -p /workspace/w/small && cd /workspace/w
		for i in $(seq 40); do head -c 1M /dev/urandom > r$i.bin; head -c 800K /dev/urandom | base64 | head -c 1M > t$i.txt; done
		for i in $(seq 5120); do head -c 4K /dev/urandom > small/$i; done`); err != nil || res.ExitCode != 0 {
		b.Fatalf("making the files: %v %+v", err, res)
	}
	if _, err := eph.Create(ctx, nil); err != nil {
		b.Fatal(err)
	}
	var stop, wake, ephWake time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := pers.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		stop += time.Since(t0)
		t0 = time.Now()
		if res, err := pers.Exec(ctx, "test -f /workspace/w/small/5120"); err != nil || res.ExitCode != 0 {
			b.Fatalf("after wake: %v %+v", err, res)
		}
		wake += time.Since(t0)

		if _, err := eph.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		if _, err := eph.Exec(ctx, "true"); err != nil {
			b.Fatal(err)
		}
		ephWake += time.Since(t0)
	}
	b.StopTimer()
	// Baseline: the same upper directory through tar and zstd on the host.
	upper := filepath.Join(d.DataDir, "sandboxes", "bench-pers", "upper")
	scratch := b.TempDir()
	var tarC, tarX time.Duration
	for i := range b.N {
		t0 := time.Now()
		if out, err := exec.Command("sh", "-c", "tar -C "+upper+" -cf - . | zstd -q -3 -T0 > "+scratch+"/u.tar.zst").CombinedOutput(); err != nil {
			b.Fatalf("tar | zstd: %v %s", err, out)
		}
		tarC += time.Since(t0)
		x := filepath.Join(scratch, fmt.Sprint(i))
		os.Mkdir(x, 0o755)
		t0 = time.Now()
		if out, err := exec.Command("sh", "-c", "zstd -q -dc "+scratch+"/u.tar.zst | tar -C "+x+" -xf -").CombinedOutput(); err != nil {
			b.Fatalf("zstd -d | tar: %v %s", err, out)
		}
		tarX += time.Since(t0)
		os.RemoveAll(x)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(tarC), "tar|zstd-ms")
	b.ReportMetric(ms(tarX), "zstd-d|tar-x-ms")
	b.ReportMetric(ms(wake), "wake-ms")
	b.ReportMetric(ms(stop), "stop-ms")
	b.ReportMetric(ms(ephWake), "ephemeral-wake-ms")
	b.ReportMetric(0, "ns/op")
	if err := pers.Purge(ctx); err != nil {
		b.Fatal(err)
	}
	if err := eph.Destroy(ctx); err != nil {
		b.Fatal(err)
	}
}
