package agent

import "testing"

func TestOOMKillCount(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int64
		ok   bool
	}{
		{"v2 memory.events", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 3\noom_group_kill 0\n", 3, true},
		{"v1 memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", 7, true},
		{"old v1 without the count", "oom_kill_disable 0\nunder_oom 0\n", 0, false},
		{"garbage", "oom_kill x\n", 0, false},
	}
	for _, tc := range tests {
		if n, ok := oomKillCount([]byte(tc.in)); n != tc.n || ok != tc.ok {
			t.Errorf("%s: oomKillCount = %d %v, want %d %v", tc.name, n, ok, tc.n, tc.ok)
		}
	}
}
