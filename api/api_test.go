package api

import (
	"encoding/json"
	"testing"
	"time"
)

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{`"10m"`, 10 * time.Minute, true},
		{`"1h30m"`, 90 * time.Minute, true},
		{`90`, 90 * time.Second, true},
		{`0.5`, 500 * time.Millisecond, true},
		{`"soon"`, 0, false},
		{`true`, 0, false},
	}
	for _, tc := range tests {
		var d Duration
		err := json.Unmarshal([]byte(tc.in), &d)
		if (err == nil) != tc.ok || (tc.ok && time.Duration(d) != tc.want) {
			t.Errorf("%s: got %v, %v", tc.in, time.Duration(d), err)
		}
	}
	b, _ := json.Marshal(Duration(10 * time.Minute))
	if string(b) != `"10m0s"` {
		t.Errorf("marshal: %s", b)
	}
}

func TestExecRequestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  ExecRequest
		ok   bool
	}{
		{"plain", ExecRequest{Command: "ls"}, true},
		{"empty", ExecRequest{Command: "  "}, false},
		{"nul", ExecRequest{Command: "a\x00b"}, false},
		{"negative timeout", ExecRequest{Command: "ls", TimeoutMs: -5}, false},
		{"relative cwd", ExecRequest{Command: "ls", Cwd: "work"}, false},
		{"env with =", ExecRequest{Command: "ls", Env: map[string]string{"A=B": "1"}}, false},
		{"empty env name", ExecRequest{Command: "ls", Env: map[string]string{"": "1"}}, false},
		{"env value nul", ExecRequest{Command: "ls", Env: map[string]string{"A": "\x00"}}, false},
		{"good env", ExecRequest{Command: "ls", Env: map[string]string{"A": "b=c"}, Cwd: "/tmp"}, true},
	}
	for _, tc := range tests {
		if err := tc.req.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
