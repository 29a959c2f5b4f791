package bench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
	"github.com/sbx-dev/sbx/internal/integration"
)

// warmSandbox starts a daemon and a sandbox with one command run, so that
// the figures exclude the cold start.
func warmSandbox(b *testing.B, id string) *client.Sandbox {
	b.Helper()
	d := integration.StartDaemon(b, "--log-level", "warn")
	sb := d.Client.Sandbox(id)
	if _, err := sb.Exec(context.Background(), "true"); err != nil {
		b.Fatal(err)
	}
	return sb
}

// BenchmarkExecStream measures streaming exec through sbxd and the agent:
// first-byte is the time from sending the request to receiving the first
// stdout event of `echo hi`; complete is the whole stream. The baseline,
// measured in the same run on the same sandbox, is the non-streaming exec
// round trip of the same command.
func BenchmarkExecStream(b *testing.B) {
	sb := warmSandbox(b, "bench-stream")
	ctx := context.Background()
	b.Run("first-byte", func(b *testing.B) {
		var first, whole latencies
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			got := false
			for ev, err := range sb.ExecStream(ctx, "echo hi") {
				if err != nil {
					b.Fatal(err)
				}
				if ev.Type == api.EventStdout && !got {
					got = true
					first = append(first, time.Since(t0))
				}
			}
			whole = append(whole, time.Since(t0))
		}
		b.StopTimer()
		first.report(b)
		b.ReportMetric(float64(pct(whole, 0.5).Microseconds())/1000, "complete-p50-ms")
	})
	b.Run("baseline-exec-round-trip", func(b *testing.B) {
		timeIt(b, func(int) {
			if _, err := sb.Exec(ctx, "echo hi"); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkProcessStart measures POST /processes of `sleep 600`: the time
// until the process runs and its record is answered. The baseline is a
// one-shot exec of `true` in the same sandbox.
func BenchmarkProcessStart(b *testing.B) {
	sb := warmSandbox(b, "bench-procs")
	ctx := context.Background()
	b.Run("start", func(b *testing.B) {
		timeIt(b, func(int) {
			if _, err := sb.StartProcess(ctx, api.StartProcessRequest{Command: "sleep 600"}); err != nil {
				b.Fatal(err)
			}
		})
		if _, err := sb.KillAllProcesses(ctx, client.KillOptions{Signal: "KILL"}); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("baseline-exec-true", func(b *testing.B) {
		timeIt(b, func(int) {
			if _, err := sb.Exec(ctx, "true"); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkSessionExec measures sequential exec calls of `true` in one
// session (the persistent shell), against one-shot execs of `true` in the
// same sandbox in the same run. Run it with -benchtime 1000x for the
// figure in BENCHMARKS.md.
func BenchmarkSessionExec(b *testing.B) {
	sb := warmSandbox(b, "bench-session")
	ctx := context.Background()
	s := sb.Session(api.DefaultSession)
	if _, err := s.Exec(ctx, "true"); err != nil {
		b.Fatal(err)
	}
	b.Run("session", func(b *testing.B) {
		timeIt(b, func(int) {
			if res, err := s.Exec(ctx, "true"); err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
		})
	})
	b.Run("baseline-one-shot", func(b *testing.B) {
		timeIt(b, func(int) {
			if _, err := sb.Exec(ctx, "true"); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// pct is the p-th percentile of l.
func pct(l latencies, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}
