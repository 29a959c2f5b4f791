package agent

import (
	"os/exec"
	"testing"

	"github.com/sbx-dev/sbx/api"
)

// BenchmarkForkExecTrue is the floor BenchmarkExecTrue is measured against:
// starting and waiting for a process with os/exec, without HTTP.
//
// os/exec's Wait cannot share a process with the agent's reaper, so this
// benchmark runs only before any agent was created in the test binary:
//
//	go test -run '^$' -bench . ./internal/agent/
func BenchmarkForkExecTrue(b *testing.B) {
	if reaperRunning.Load() {
		b.Skip("the agent's reaper is running and would steal os/exec's exit statuses; run with -run '^$'")
	}
	for _, bc := range []struct {
		name string
		argv []string
	}{
		{"bin-true", []string{"/bin/true"}},
		{"bash-c-true", []string{"/bin/bash", "-c", "true"}}, // what POST /exec runs
	} {
		argv := bc.argv
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := exec.Command(argv[0], argv[1:]...).Run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExecTrue measures a full POST /exec round trip of `true` over a
// unix socket: HTTP, JSON, bash start, reaping and output collection.
func BenchmarkExecTrue(b *testing.B) {
	c, _ := startAgent(b, Config{})
	for b.Loop() {
		if res := c.exec(b, api.ExecRequest{Command: "true"}); res.ExitCode != 0 {
			b.Fatalf("exit %d", res.ExitCode)
		}
	}
}
