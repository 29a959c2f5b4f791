package oci

import (
	"slices"
	"testing"

	"github.com/sbx-dev/sbx/internal/backend"
)

func TestBuildSpecAgentArgs(t *testing.T) {
	base := []string{"/.sbx/sbx-agent", "--socket", "/run/sbx/agent.sock"}
	tests := []struct {
		name    string
		opts    backend.AgentOptions
		extra   []string // after base
		wantErr bool
	}{
		{name: "defaults add no flags"},
		{name: "output cap", opts: backend.AgentOptions{OutputCap: 1000}, extra: []string{"--output-cap", "1000"}},
		{name: "process log cap", opts: backend.AgentOptions{ProcessLogCap: 4 << 20}, extra: []string{"--process-log-cap", "4194304"}},
		{name: "interpreter pool", opts: backend.AgentOptions{InterpreterPool: 3}, extra: []string{"--interpreter-pool", "3"}},
		{name: "no interpreter pool", opts: backend.AgentOptions{InterpreterPool: -1}, extra: []string{"--interpreter-pool", "0"}},
		{
			name:  "all",
			opts:  backend.AgentOptions{OutputCap: 1 << 30, ProcessLogCap: 1, InterpreterPool: 2},
			extra: []string{"--output-cap", "1073741824", "--process-log-cap", "1", "--interpreter-pool", "2"},
		},
		{name: "negative output cap", opts: backend.AgentOptions{OutputCap: -1}, wantErr: true},
		{name: "negative process log cap", opts: backend.AgentOptions{ProcessLogCap: -5}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec()
			spec.Agent = tc.opts
			s, err := buildSpec(spec, specParams{rootfs: "/r", agent: "/a", runDir: "/run", cgroupsPath: "/c", nofile: 1024})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("buildSpec accepted %+v; args %q", tc.opts, s.Process.Args)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := append(slices.Clone(base), tc.extra...); !slices.Equal(s.Process.Args, want) {
				t.Errorf("args = %q, want %q", s.Process.Args, want)
			}
		})
	}
}
