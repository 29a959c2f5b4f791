package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

// testClient talks to an agent served on a real unix socket, as sbxd does.
type testClient struct {
	hc *http.Client
}

// startAgent serves New(cfg) on a unix socket until the test ends. An empty
// cfg.DefaultCwd becomes a fresh temporary directory.
func startAgent(tb testing.TB, cfg Config) (*testClient, Config) {
	tb.Helper()
	if cfg.DefaultCwd == "" {
		cfg.DefaultCwd = tb.TempDir()
	}
	// Socket paths are limited to 108 bytes; test names can make
	// TempDir longer than that.
	dir, err := os.MkdirTemp("", "sbx-agent-test-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: New(cfg)}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })

	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 16,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return &testClient{hc: &http.Client{Transport: tr}}, cfg
}

func (c *testClient) post(ctx context.Context, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.hc.Do(req)
}

// execRaw posts body to /exec and returns the status and raw response.
func (c *testClient) execRaw(tb testing.TB, body []byte) (int, []byte) {
	tb.Helper()
	resp, err := c.post(context.Background(), "/exec", body)
	if err != nil {
		tb.Fatalf("POST /exec: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read response: %v", err)
	}
	return resp.StatusCode, b
}

// exec runs req and fails the test unless it answers 200.
func (c *testClient) exec(tb testing.TB, req api.ExecRequest) api.ExecResult {
	tb.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	status, b := c.execRaw(tb, body)
	if status != http.StatusOK {
		tb.Fatalf("POST /exec %q: status %d: %s", req.Command, status, b)
	}
	var res api.ExecResult
	if err := json.Unmarshal(b, &res); err != nil {
		tb.Fatalf("decode result %s: %v", b, err)
	}
	return res
}

// procStat reads the state, parent and process group of pid from
// /proc/<pid>/stat.
func procStat(pid int) (state byte, ppid, pgrp int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name may contain anything, including ") "; the fields
	// after the last ')' are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return 0, 0, 0, errors.New("malformed stat")
	}
	ppid, _ = strconv.Atoi(f[1])
	pgrp, _ = strconv.Atoi(f[2])
	return f[0][0], ppid, pgrp, nil
}

// procs returns the pids of all processes for which match is true.
func procs(match func(pid int, state byte, ppid, pgrp int) bool) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, ppid, pgrp, err := procStat(pid)
		if err == nil && match(pid, state, ppid, pgrp) {
			out = append(out, pid)
		}
	}
	return out
}

// groupMembers lists the processes, zombies included, in process group pgid.
func groupMembers(pgid int) []int {
	return procs(func(_ int, _ byte, _, pgrp int) bool { return pgrp == pgid })
}

// killGroupOnCleanup makes sure no process of group pgid outlives the test.
func killGroupOnCleanup(tb testing.TB, pgid int) {
	tb.Cleanup(func() {
		if pgid > 1 {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
}

// eventually polls cond until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// firstLineInt parses the first line of s as an integer.
func firstLineInt(tb testing.TB, s string) int {
	tb.Helper()
	line, _, _ := strings.Cut(s, "\n")
	n, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		tb.Fatalf("expected a number on the first line of %q", s)
	}
	return n
}
