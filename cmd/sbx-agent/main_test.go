package main

import (
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		outputCap int64
		logCap    int
		codePool  int // agent.Config.CodePool: 0 default, <0 none
		err       string
	}{
		{name: "defaults", args: []string{"--socket", "/run/sbx/agent.sock"}, outputCap: 16 << 20, logCap: 1 << 20, codePool: 1},
		{name: "output cap", args: []string{"--output-cap", "1000"}, outputCap: 1000, logCap: 1 << 20, codePool: 1},
		{name: "process log cap", args: []string{"--process-log-cap", "2000"}, outputCap: 16 << 20, logCap: 2000, codePool: 1},
		{name: "bigger pool", args: []string{"--interpreter-pool", "3"}, outputCap: 16 << 20, logCap: 1 << 20, codePool: 3},
		{name: "pool 0 disables pre-starting", args: []string{"--interpreter-pool", "0"}, outputCap: 16 << 20, logCap: 1 << 20, codePool: -1},
		{name: "zero output cap", args: []string{"--output-cap", "0"}, err: "--output-cap must be positive"},
		{name: "negative log cap", args: []string{"--process-log-cap", "-1"}, err: "--process-log-cap must be positive"},
		{name: "negative pool", args: []string{"--interpreter-pool", "-2"}, err: "--interpreter-pool must not be negative"},
		{name: "not a number", args: []string{"--output-cap", "16MiB"}, err: "invalid value"},
		{name: "stray argument", args: []string{"serve"}, err: "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, cfg, err := parseFlags(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OutputCap != tc.outputCap || cfg.ProcessLogCap != tc.logCap || cfg.CodePool != tc.codePool {
				t.Errorf("output cap %d, process log cap %d, code pool %d; want %d, %d, %d",
					cfg.OutputCap, cfg.ProcessLogCap, cfg.CodePool, tc.outputCap, tc.logCap, tc.codePool)
			}
		})
	}
}
