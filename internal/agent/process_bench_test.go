package agent

import (
	"testing"

	"github.com/sbx-dev/sbx/api"
)

// BenchmarkProcessStart measures POST /processes of `sleep 600` against
// the agent alone; compare BenchmarkExecTrue.
func BenchmarkProcessStart(b *testing.B) {
	c, _ := startExecAgent(b, Config{})
	for b.Loop() {
		c.call(b, "POST", "/processes", api.StartProcessRequest{Command: "sleep 600"}, nil)
	}
	b.StopTimer()
	c.call(b, "DELETE", "/processes?signal=KILL", nil, nil)
}

// BenchmarkSessionExecTrue measures POST /exec of `true` in a session.
func BenchmarkSessionExecTrue(b *testing.B) {
	c, _ := startExecAgent(b, Config{})
	c.sessionExec(b, "default", "true")
	for b.Loop() {
		if res := c.exec(b, api.ExecRequest{Command: "true", Session: "default"}); res.ExitCode != 0 {
			b.Fatal(res)
		}
	}
}
