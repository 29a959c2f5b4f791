package agent

import (
	"bytes"
	"os"
	"strconv"
	"sync"
)

// oomKillFiles hold the kernel's count of processes it killed at this
// cgroup's memory limit: cgroup v2's memory.events, then v1's
// memory.oom_control (as the sandbox's cgroup namespace shows them).
var oomKillFiles = []string{"/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"}

// oomKillFile is the first of oomKillFiles that holds a count, found once:
// every exec reads it, and the lookup would cost a failed open each time
// on cgroup v1. "" when none does.
var oomKillFile = sync.OnceValue(func() string {
	for _, f := range oomKillFiles {
		if b, err := os.ReadFile(f); err == nil {
			if _, ok := oomKillCount(b); ok {
				return f
			}
		}
	}
	return ""
})

// oomKills returns how many processes of the agent's cgroup the kernel has
// killed for memory, and false where no such count is readable.
func oomKills() (int64, bool) {
	f := oomKillFile()
	if f == "" {
		return 0, false
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return 0, false
	}
	return oomKillCount(b)
}

// oomKillCount finds the "oom_kill N" line of a memory.events or
// memory.oom_control file.
func oomKillCount(b []byte) (int64, bool) {
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("oom_kill ")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
