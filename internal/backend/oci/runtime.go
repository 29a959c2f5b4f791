package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// callTimeout bounds every runtime invocation whose context has no earlier
// deadline: a wedged runtime must not wedge sbxd with it.
const callTimeout = 30 * time.Second

// runtimeCLI drives an OCI runtime binary (runc or crun) through its
// command line, with a state root of its own.
type runtimeCLI struct {
	name string // "runc" or "crun"
	path string
	root string // --root: where the runtime keeps container state
}

func (r *runtimeCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.path, append([]string{"--root", r.root}, args...)...)
	// If the runtime leaves a process holding its output open, Wait must
	// still return.
	cmd.WaitDelay = time.Second
	return cmd
}

func withCallTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < callTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, callTimeout)
}

// call runs the runtime with args and returns an error carrying its output
// if it fails.
func (r *runtimeCLI) call(ctx context.Context, args ...string) error {
	ctx, cancel := withCallTimeout(ctx)
	defer cancel()
	out, err := r.command(ctx, args...).CombinedOutput()
	if err != nil {
		return r.fail(ctx, args[0], err, out)
	}
	return nil
}

func (r *runtimeCLI) fail(ctx context.Context, verb string, err error, out []byte) error {
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	msg := strings.TrimSpace(string(out))
	if msg == "" {
		return fmt.Errorf("%s %s: %w", r.name, verb, err)
	}
	return fmt.Errorf("%s %s: %w: %s", r.name, verb, err, msg)
}

// run creates and starts container cid from bundle, detached. The
// container's stdio goes to log, never to a pipe: the container would
// inherit the pipe and keep it open, and the caller would wait for EOF for
// ever. The runtime reports its own errors on the same stderr, so a failure
// is explained by the end of log.
//
// Cancelling ctx does not interrupt the runtime: killed half-way, crun
// leaves a forked helper that goes on creating cgroups and the container
// after the caller has cleaned up. The call takes tens of milliseconds, so
// it runs to completion (bounded by callTimeout) and the caller undoes it.
// Only a runtime that hangs past callTimeout is killed, with its whole
// process group.
func (r *runtimeCLI) run(ctx context.Context, cid, bundle, pidFile string, log *os.File) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	cmd := r.command(ctx, "run", "--detach", "--bundle", bundle, "--pid-file", pidFile, cid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return r.fail(ctx, "run", err, tail(log.Name(), 2048))
	}
	return nil
}

// delete removes the state and cgroups of a stopped container; force
// kills a running one first (runc polls for its death in 100 ms steps, so
// callers kill and wait themselves and force only as a fallback).
func (r *runtimeCLI) delete(ctx context.Context, cid string, force bool) error {
	if force {
		return r.call(ctx, "delete", "--force", cid)
	}
	return r.call(ctx, "delete", cid)
}

// containerState is the part of `state` output used here.
type containerState struct {
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

func (r *runtimeCLI) state(ctx context.Context, cid string) (containerState, error) {
	ctx, cancel := withCallTimeout(ctx)
	defer cancel()
	var stderr bytes.Buffer
	cmd := r.command(ctx, "state", cid)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return containerState{}, r.fail(ctx, "state", err, stderr.Bytes())
	}
	var st containerState
	if err := json.Unmarshal(out, &st); err != nil {
		return containerState{}, fmt.Errorf("%s state: %w", r.name, err)
	}
	return st, nil
}

// exists reports whether the runtime has state for cid. runc and crun both
// keep one directory per container under their root; this is how their own
// `list` works, and it costs no process.
func (r *runtimeCLI) exists(cid string) bool {
	_, err := os.Lstat(filepath.Join(r.root, cid))
	return err == nil
}

// list returns the ids of the containers in the runtime's root.
func (r *runtimeCLI) list() ([]string, error) {
	entries, err := os.ReadDir(r.root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// tail returns at most the last n bytes of the file at path.
func tail(path string, n int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(buf, off)
	return buf[:k]
}
