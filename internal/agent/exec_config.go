package agent

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// ExecConfig tunes command execution beyond a single exec.
type ExecConfig struct {
	// RunDir holds the FIFOs of sessions; empty means /run/sbx-agent when
	// the agent is PID 1, else a directory under $TMPDIR named for the
	// agent, made when the first session starts and left behind (tests
	// set RunDir).
	RunDir string
	// KeepAlive is the interval of keep-alive comments on event streams
	// (15s).
	KeepAlive time.Duration
	// ProcessLogCap is how many bytes of each output stream of a
	// background process are kept; older bytes are dropped (1 MiB).
	ProcessLogCap int
	// KillGrace is how long a killed background process may take to exit
	// after SIGTERM before its tree is SIGKILLed (5s).
	KillGrace time.Duration
	// MaxEndedProcesses is how many records of ended background processes
	// are kept, oldest forgotten first (256).
	MaxEndedProcesses int
	// TerminalReplay is how many bytes of recent terminal output a
	// client attaching to a terminal receives first (64 KiB).
	TerminalReplay int
}

// execState is the agent's state beyond a single exec.
type execState struct {
	nonce      string        // tells this agent's tags from another's
	seq        atomic.Uint64 // scope numbers of one-shot execs
	runDir     string        // see RunDir; made by makeRunDir
	makeRunDir func() error
	env        *sandboxEnv
	sessions   *sessionTable
	procs      *processTable
}

// registerExec sets up command execution and registers its routes.
func (a *Agent) registerExec() {
	c := &a.cfg.ExecConfig
	if c.KeepAlive <= 0 {
		c.KeepAlive = 15 * time.Second
	}
	if c.ProcessLogCap <= 0 {
		c.ProcessLogCap = 1 << 20
	}
	if c.KillGrace <= 0 {
		c.KillGrace = 5 * time.Second
	}
	if c.MaxEndedProcesses <= 0 {
		c.MaxEndedProcesses = 256
	}
	if c.TerminalReplay <= 0 {
		c.TerminalReplay = 64 << 10
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	a.nonce = hex.EncodeToString(b)
	// The directory is made on first use, so that agents that never open
	// a session (most tests) leave nothing behind.
	a.runDir = c.RunDir
	switch {
	case a.runDir != "":
	case os.Getpid() == 1:
		a.runDir = "/run/sbx-agent"
	default:
		a.runDir = filepath.Join(os.TempDir(), "sbx-agent-run-"+a.nonce)
	}
	a.makeRunDir = sync.OnceValue(func() error {
		if err := os.MkdirAll(a.runDir, 0o700); err != nil {
			slog.Error("agent run directory", "dir", a.runDir, "err", err)
			return err
		}
		return nil
	})
	a.env = newSandboxEnv()
	a.sessions = &sessionTable{a: a, m: map[string]*session{}}
	a.procs = newProcessTable(a)

	a.mux.HandleFunc("POST /exec", a.handleExec)
	a.registerEnv()
	a.registerSessions()
	a.registerProcesses()
	a.registerPTY()
}
