package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/internal/backend"
)

func TestAgentFlags(t *testing.T) {
	defaults := backend.AgentOptions{OutputCap: 16 << 20, ProcessLogCap: 1 << 20, InterpreterPool: 1}
	tests := []struct {
		name   string
		args   []string
		config string // JSON config file; "" for none
		want   backend.AgentOptions
		err    string
	}{
		{name: "defaults", want: defaults},
		{name: "bytes", args: []string{"--exec-output-cap", "1000"},
			want: backend.AgentOptions{OutputCap: 1000, ProcessLogCap: 1 << 20, InterpreterPool: 1}},
		{name: "units", args: []string{"--exec-output-cap", "64KiB", "--process-log-cap=2M"},
			want: backend.AgentOptions{OutputCap: 64 << 10, ProcessLogCap: 2 << 20, InterpreterPool: 1}},
		{name: "lower case unit", args: []string{"--process-log-cap", "1gib"},
			want: backend.AgentOptions{OutputCap: 16 << 20, ProcessLogCap: 1 << 30, InterpreterPool: 1}},
		{name: "pool 0 disables pre-starting", args: []string{"--interpreter-pool", "0"},
			want: backend.AgentOptions{OutputCap: 16 << 20, ProcessLogCap: 1 << 20, InterpreterPool: -1}},
		{name: "pool 4", args: []string{"--interpreter-pool", "4"},
			want: backend.AgentOptions{OutputCap: 16 << 20, ProcessLogCap: 1 << 20, InterpreterPool: 4}},
		{name: "config file", config: `{"exec-output-cap": "2MiB", "process-log-cap": 5000, "interpreter-pool": 0}`,
			want: backend.AgentOptions{OutputCap: 2 << 20, ProcessLogCap: 5000, InterpreterPool: -1}},
		{name: "command line wins over file", args: []string{"--exec-output-cap", "3000"}, config: `{"exec-output-cap": "2MiB"}`,
			want: backend.AgentOptions{OutputCap: 3000, ProcessLogCap: 1 << 20, InterpreterPool: 1}},

		{name: "negative size", args: []string{"--exec-output-cap", "-1"}, err: `"-1" is not a size`},
		{name: "decimal unit", args: []string{"--exec-output-cap", "16MB"}, err: `"16MB" is not a size: use bytes (1000) or a binary unit`},
		{name: "fraction", args: []string{"--process-log-cap", "1.5MiB"}, err: "is not a size"},
		{name: "overflow", args: []string{"--process-log-cap", "99999999999G"}, err: "too large"},
		{name: "zero cap", args: []string{"--exec-output-cap", "0"}, err: "--exec-output-cap 0: use a size from 1 byte to 1GiB"},
		{name: "absurd cap", args: []string{"--process-log-cap", "2GiB"}, err: "--process-log-cap 2GiB: use a size from 1 byte to 1GiB"},
		{name: "negative pool", args: []string{"--interpreter-pool", "-1"}, err: "--interpreter-pool -1: use 0"},
		{name: "absurd pool", args: []string{"--interpreter-pool", "100"}, err: "--interpreter-pool 100: use 0 (no pre-started interpreters) to 16"},
		{name: "bad size in config file", config: `{"exec-output-cap": "lots"}`, err: `exec-output-cap: "lots" is not a size`},
		{name: "zero cap in config file", config: `{"exec-output-cap": 0}`, err: "--exec-output-cap 0:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Always name a config file, so that /etc/sbx/sbxd.json of
			// the host running the test plays no part.
			cfg := filepath.Join(t.TempDir(), "sbxd.json")
			body := tc.config
			if body == "" {
				body = "{}"
			}
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			opts := &options{}
			cmd := newRootCmd(opts)
			err := cmd.ParseFlags(append([]string{"--config", cfg}, tc.args...))
			if err == nil {
				err = loadConfig(cmd, opts)
			}
			var got backend.AgentOptions
			if err == nil {
				got, err = opts.agentOptions.backendOptions()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("agent options %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	for _, tc := range []struct {
		n    byteSize
		want string
	}{{0, "0"}, {1000, "1000"}, {1024, "1KiB"}, {1536, "1536"}, {16 << 20, "16MiB"}, {3 << 30, "3GiB"}, {1<<20 + 1<<10, "1025KiB"}} {
		if got := tc.n.String(); got != tc.want {
			t.Errorf("%d prints as %q, want %q", int64(tc.n), got, tc.want)
		}
		if tc.n == 0 {
			continue
		}
		var back byteSize
		if err := back.Set(tc.n.String()); err != nil || back != tc.n {
			t.Errorf("%q parses back as %d, %v", tc.n.String(), back, err)
		}
	}
}
