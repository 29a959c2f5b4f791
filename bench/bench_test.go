// Package bench measures sbx end to end through its public HTTP API and
// prints each figure beside a baseline measured in the same run, because
// these machines are noisy: raw `crun run` of a container on the same
// rootfs, and a bare fork/exec from Go.
//
//	sudo make bench      # or: go test -run '^$' -bench . -benchtime 60x ./bench/
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/internal/integration"
)

func TestMain(m *testing.M) {
	code := m.Run()
	integration.CleanupBinaries()
	os.Exit(code)
}

// latencies records one duration per iteration and reports p50 and p95.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	s := slices.Clone(l)
	slices.Sort(s)
	pct := func(p float64) float64 {
		return float64(s[int(float64(len(s)-1)*p)].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.95), "p95-ms")
	b.ReportMetric(0, "ns/op") // the percentiles are the figures that matter
}

func timeIt(b *testing.B, fn func(i int)) {
	b.Helper()
	var l latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		fn(i)
		l = append(l, time.Since(t0))
	}
	b.StopTimer()
	l.report(b)
}

// BenchmarkColdStart is create + first exec of `true` over HTTP, for a new
// sandbox id each iteration, with each runtime, and with crun without the
// disk quota (no loop-mounted filesystem per sandbox) to show its cost.
func BenchmarkColdStart(b *testing.B) {
	for _, v := range []struct {
		name string
		args []string
	}{
		{"crun", []string{"--runtime", "crun"}},
		{"runc", []string{"--runtime", "runc"}},
		{"crun-no-disk-quota", []string{"--runtime", "crun", "--no-disk-quota"}},
	} {
		b.Run(v.name, func(b *testing.B) {
			d := integration.StartDaemon(b, append(v.args, "--log-level", "warn")...)
			ctx := context.Background()
			ids := make([]string, 0, b.N)
			timeIt(b, func(i int) {
				id := fmt.Sprintf("cold-%d", i)
				ids = append(ids, id)
				if _, err := d.Client.Sandbox(id).Exec(ctx, "true"); err != nil {
					b.Fatal(err)
				}
			})
			for _, id := range ids {
				if err := d.Client.Sandbox(id).Destroy(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWarmExec is one exec of `true` in a running sandbox, round trip
// through sbxd and the agent.
func BenchmarkWarmExec(b *testing.B) {
	d := integration.StartDaemon(b, "--log-level", "warn")
	ctx := context.Background()
	sb := d.Client.Sandbox("warm")
	if _, err := sb.Exec(ctx, "true"); err != nil {
		b.Fatal(err)
	}
	timeIt(b, func(int) {
		if _, err := sb.Exec(ctx, "true"); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkBaselineForkExec is a bare Go fork/exec on the host: of true,
// and of `bash -c true`, which is what an exec runs.
func BenchmarkBaselineForkExec(b *testing.B) {
	for _, c := range []struct {
		name string
		argv []string
	}{{"true", []string{"true"}}, {"bash", []string{"bash", "-c", "true"}}} {
		b.Run(c.name, func(b *testing.B) {
			timeIt(b, func(int) {
				if err := exec.Command(c.argv[0], c.argv[1:]...).Run(); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkBaselineRuntimeRun is `<runtime> run` of a container running
// true on the same image rootfs (read-only, no overlay, no agent): start,
// run and delete.
func BenchmarkBaselineRuntimeRun(b *testing.B) {
	integration.RequireRoot(b)
	rootfs := filepath.Join(integration.ImagesDir(), "default", "rootfs")
	for _, rt := range []string{"crun", "runc"} {
		b.Run(rt, func(b *testing.B) {
			bundle := b.TempDir()
			if out, err := exec.Command(rt, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
				b.Fatalf("%s spec: %v %s", rt, err, out)
			}
			cfgPath := filepath.Join(bundle, "config.json")
			raw, err := os.ReadFile(cfgPath)
			if err != nil {
				b.Fatal(err)
			}
			var spec map[string]any
			if err := json.Unmarshal(raw, &spec); err != nil {
				b.Fatal(err)
			}
			spec["root"] = map[string]any{"path": rootfs, "readonly": true}
			proc := spec["process"].(map[string]any)
			proc["terminal"] = false
			proc["args"] = []string{"true"}
			linux := spec["linux"].(map[string]any)
			linux["cgroupsPath"] = "/sbx-bench/baseline"
			raw, _ = json.Marshal(spec)
			if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
				b.Fatal(err)
			}
			state := b.TempDir()
			b.Cleanup(func() {
				// The runtime removes the container's cgroup, not its parent.
				dirs, _ := filepath.Glob("/sys/fs/cgroup/*/sbx-bench")
				for _, d := range dirs {
					os.Remove(filepath.Join(d, "baseline"))
					os.Remove(d)
				}
			})
			timeIt(b, func(i int) {
				cmd := exec.Command(rt, "--root", state, "run", "--bundle", bundle, fmt.Sprintf("bench-%d", i))
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%s run: %v %s", rt, err, out)
				}
			})
		})
	}
}
