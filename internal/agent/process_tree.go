package agent

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Every process the agent starts carries a tag in its environment,
// SBX_TAG=<nonce>:<scope>, which its descendants inherit however they
// detach: a new process group or session, a double fork, reparenting to
// PID 1. Scopes nest with dots: a session is "s3", a command in it
// "s3.c7", a background process started in it "s3.p2", a one-shot exec
// "e12". Killing a scope kills every live process whose tag is the scope or
// lies below it, so killing a tree leaves nothing behind even when the
// tree's middle has already exited. The nonce keeps agents apart when
// several run on one host (tests, development).
const tagVar = "SBX_TAG"

// tagEnv returns the environment entry that puts a process in scope.
func (a *Agent) tagEnv(scope string) string { return tagVar + "=" + a.nonce + ":" + scope }

// scopeMembers returns the live processes in any of scopes, found by
// their tag, plus the roots and their descendants: a process may have
// dropped its environment, and a subshell that bash forks without exec
// shows the environment its shell was started with. The agent itself is
// never a member.
func (a *Agent) scopeMembers(scopes []string, roots ...int) []int {
	want := make(map[string]bool, len(scopes))
	for _, sc := range scopes {
		want[sc] = true
	}
	prefix := []byte(tagVar + "=" + a.nonce + ":")
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var members []int
	parent := map[int]int{}
	buf := make([]byte, 0, 4096)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		state, ppid := statOf(pid)
		if state == 0 || state == 'Z' || state == 'X' {
			continue
		}
		parent[pid] = ppid
		buf = readInto(buf[:0], "/proc/"+e.Name()+"/environ")
		if inScopes(tagOf(buf, prefix), want) {
			members = append(members, pid)
		}
	}
	if len(roots) > 0 {
		in := map[int]bool{}
		for _, m := range members {
			in[m] = true
		}
		for pid := range parent {
			if in[pid] {
				continue
			}
			for p, n := pid, 0; p > 1 && n < 64; p, n = parent[p], n+1 {
				if slices.Contains(roots, p) {
					members = append(members, pid)
					in[pid] = true
					break
				}
			}
		}
	}
	return members
}

// tagOf returns the scope in this agent's tag in the NUL-separated
// environment env, or "".
func tagOf(env, prefix []byte) string {
	for len(env) > 0 {
		var kv []byte
		if i := bytes.IndexByte(env, 0); i >= 0 {
			kv, env = env[:i], env[i+1:]
		} else {
			kv, env = env, nil
		}
		if bytes.HasPrefix(kv, prefix) {
			return string(kv[len(prefix):])
		}
	}
	return ""
}

// inScopes reports whether scope is one of want or lies below one.
func inScopes(scope string, want map[string]bool) bool {
	for scope != "" {
		if want[scope] {
			return true
		}
		i := strings.LastIndexByte(scope, '.')
		if i < 0 {
			return false
		}
		scope = scope[:i]
	}
	return false
}

// readInto appends the contents of a small /proc file to buf.
func readInto(buf []byte, path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		return buf
	}
	defer f.Close()
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil || n == 0 {
			return buf
		}
	}
}

// statOf returns the state and parent of pid, or state 0 if it is gone.
func statOf(pid int) (state byte, ppid int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	// The command name may contain anything; the fields after the last
	// ')' are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+4 > len(b) {
		return 0, 0
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(string(f[1]))
	return f[0][0], ppid
}

// childrenOf returns the children of pid.
func childrenOf(pid int) []int {
	p := strconv.Itoa(pid)
	b, err := os.ReadFile("/proc/" + p + "/task/" + p + "/children")
	if err != nil {
		// Kernels without CONFIG_PROC_CHILDREN: look at every process.
		var out []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if c, err := strconv.Atoi(e.Name()); err == nil {
				if _, ppid := statOf(c); ppid == pid {
					out = append(out, c)
				}
			}
		}
		return out
	}
	var out []int
	for _, f := range bytes.Fields(b) {
		if c, err := strconv.Atoi(string(f)); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// killScope ends every process in scope, and the roots that roots (nil
// for none) returns each time with their descendants. It sends sig first;
// unless sig is SIGKILL it gives the processes grace to exit, then SIGKILLs
// whatever is left, repeating until nothing is left because a dying tree
// may still fork. It reports how many processes it found at first and
// gives up after a few seconds of SIGKILLs, which only a process stuck in
// uninterruptible sleep survives.
func (a *Agent) killScope(scope string, roots func() []int, sig syscall.Signal, grace time.Duration) int {
	return a.killScopes([]string{scope}, roots, sig, grace)
}

// killScopes is killScope for several scopes at once, with one scan of
// /proc per round whatever their number.
func (a *Agent) killScopes(scopes []string, roots func() []int, sig syscall.Signal, grace time.Duration) int {
	if roots == nil {
		roots = func() []int { return nil }
	}
	members := a.scopeMembers(scopes, roots()...)
	found := len(members)
	for _, pid := range members {
		_ = syscall.Kill(pid, sig)
	}
	if sig != syscall.SIGKILL && found > 0 {
		deadline := time.Now().Add(grace)
		for len(members) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			members = a.scopeMembers(scopes, roots()...)
		}
	}
	for i := 0; len(members) > 0 && i < 300; i++ {
		for _, pid := range members {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
		members = a.scopeMembers(scopes, roots()...)
	}
	return found
}
