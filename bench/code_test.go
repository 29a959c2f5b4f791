package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
	"github.com/sbx-dev/sbx/internal/integration"
)

// codeSandbox starts a daemon and a running sandbox on the python image.
func codeSandbox(b *testing.B) *client.Sandbox {
	integration.RequirePythonImage(b)
	d := integration.StartDaemon(b, "--log-level", "warn")
	sb := d.Client.Sandbox("bench-code")
	if _, err := sb.Create(context.Background(), &api.CreateSandboxRequest{Image: "python"}); err != nil {
		b.Fatal(err)
	}
	return sb
}

// BenchmarkCodeContextCreate is POST .../contexts over HTTP, one new
// context per iteration, taking its interpreter from the pool. Between
// iterations, outside the measurement, the pool is given time to refill, as
// it would have between a user's requests. See BenchmarkCodeContextCold for
// the first context of a language.
func BenchmarkCodeContextCreate(b *testing.B) {
	sb := codeSandbox(b)
	ctx := context.Background()
	for _, lang := range api.Languages {
		b.Run(lang, func(b *testing.B) {
			// The first creation fills the pool.
			first, err := sb.CreateCodeContext(ctx, api.CreateCodeContextRequest{Language: lang})
			if err != nil {
				b.Fatal(err)
			}
			ids := []string{first.ID}
			timeParts(b, func(int) { time.Sleep(poolRefill) }, func(int) {
				cc, err := sb.CreateCodeContext(ctx, api.CreateCodeContextRequest{Language: lang})
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, cc.ID)
			})
			for _, id := range ids {
				if err := sb.DeleteCodeContext(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// poolRefill is comfortably longer than the start of any interpreter on
// these machines (python ~0.3 s, typescript ~0.5 s).
const poolRefill = 1500 * time.Millisecond

// timeParts is timeIt for iterations that need unmeasured setup first.
func timeParts(b *testing.B, setup, fn func(i int)) {
	b.Helper()
	var l latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		setup(i)
		t0 := time.Now()
		fn(i)
		l = append(l, time.Since(t0))
	}
	b.StopTimer()
	l.report(b)
}

// BenchmarkCodeContextCold is the creation of the first context of each
// language in a fresh sandbox: the interpreter starts during the request.
func BenchmarkCodeContextCold(b *testing.B) {
	integration.RequirePythonImage(b)
	d := integration.StartDaemon(b, "--log-level", "warn")
	ctx := context.Background()
	for _, lang := range api.Languages {
		b.Run(lang, func(b *testing.B) {
			var sb *client.Sandbox
			timeParts(b, func(i int) {
				if sb != nil {
					if err := sb.Destroy(ctx); err != nil {
						b.Fatal(err)
					}
				}
				sb = d.Client.Sandbox(fmt.Sprintf("cold-%s-%d", lang, i))
				if _, err := sb.Create(ctx, &api.CreateSandboxRequest{Image: "python"}); err != nil {
					b.Fatal(err)
				}
			}, func(int) {
				if _, err := sb.CreateCodeContext(ctx, api.CreateCodeContextRequest{Language: lang}); err != nil {
					b.Fatal(err)
				}
			})
			if err := sb.Destroy(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
	// Baselines: the bare start of each interpreter with what its runner
	// imports, run by exec in a sandbox of the same image.
	sb := d.Client.Sandbox("cold-baseline")
	if _, err := sb.Create(ctx, &api.CreateSandboxRequest{Image: "python"}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ lang, cmd string }{
		{api.LanguagePython, `python3 -c 'from IPython.core.interactiveshell import InteractiveShell; InteractiveShell.instance()'`},
		{api.LanguageJavaScript, `node -e 'require("repl")'`},
		{api.LanguageTypeScript, `node -e 'require("/usr/share/nodejs/typescript")'`},
	} {
		b.Run("baseline-"+c.lang, func(b *testing.B) {
			timeIt(b, func(int) {
				if res, err := sb.Exec(ctx, c.cmd); err != nil || res.ExitCode != 0 {
					b.Fatalf("%s: %+v %v", c.cmd, res, err)
				}
			})
		})
	}
}

// BenchmarkCodeRun is a run of `1+1` (non-streaming) in an existing
// context: HTTP to sbxd, agent, interpreter and back.
func BenchmarkCodeRun(b *testing.B) {
	sb := codeSandbox(b)
	ctx := context.Background()
	for _, lang := range api.Languages {
		b.Run(lang, func(b *testing.B) {
			cc, err := sb.CreateCodeContext(ctx, api.CreateCodeContextRequest{Language: lang})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := sb.RunCode(ctx, "1+1", client.InContext(cc.ID)); err != nil {
				b.Fatal(err)
			}
			timeIt(b, func(int) {
				res, err := sb.RunCode(ctx, "1+1", client.InContext(cc.ID))
				if err != nil || res.Error != nil || len(res.Results) != 1 || res.Results[0].Text != "2" {
					b.Fatalf("1+1: %+v %v", res, err)
				}
			})
		})
	}
	// Baseline: the same HTTP path to the agent without an interpreter.
	b.Run("baseline-exec-true", func(b *testing.B) {
		timeIt(b, func(int) {
			if _, err := sb.Exec(ctx, "true"); err != nil {
				b.Fatal(err)
			}
		})
	})
}
