// Command sbx-agent runs inside every sandbox as PID 1: it reaps orphaned
// processes and serves the sandbox-side API on a unix socket that sbxd
// reaches through a bind mount.
//
// On SIGTERM or SIGINT it stops accepting connections, lets requests in
// flight finish for a short drain period, then kills the commands still
// running (their requests answer 503) and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sbx-dev/sbx/internal/agent"
)

// drainTimeout is how long requests in flight may run on after a shutdown
// signal before their commands are killed.
const drainTimeout = 2 * time.Second

func main() {
	socket, cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sbx-agent:", err)
		os.Exit(2)
	}
	if err := run(socket, cfg); err != nil {
		slog.Error("sbx-agent failed", "err", err)
		os.Exit(1)
	}
}

// parseFlags returns the socket to serve on and the agent's configuration
// given by args.
func parseFlags(args []string) (string, agent.Config, error) {
	fs := flag.NewFlagSet("sbx-agent", flag.ContinueOnError)
	socket := fs.String("socket", "/run/sbx/agent.sock", "unix socket to serve the API on")
	defaultCwd := fs.String("default-cwd", "/workspace", "working directory of commands that name none")
	outputCap := fs.Int64("output-cap", 16<<20, "most bytes kept per output stream of a non-streaming exec")
	logCap := fs.Int64("process-log-cap", 1<<20, "most bytes kept per output stream of a background process")
	pool := fs.Int("interpreter-pool", 1, "started interpreters per language waiting for new code contexts (0: none)")
	if err := fs.Parse(args); err != nil {
		return "", agent.Config{}, err
	}
	if fs.NArg() > 0 {
		return "", agent.Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *outputCap <= 0 {
		return "", agent.Config{}, fmt.Errorf("--output-cap must be positive, got %d", *outputCap)
	}
	if *logCap <= 0 || *logCap > math.MaxInt {
		return "", agent.Config{}, fmt.Errorf("--process-log-cap must be positive, got %d", *logCap)
	}
	if *pool < 0 {
		return "", agent.Config{}, fmt.Errorf("--interpreter-pool must not be negative, got %d", *pool)
	}
	cfg := agent.Config{
		DefaultCwd: *defaultCwd,
		OutputCap:  *outputCap,
		CodePool:   *pool,
		ExecConfig: agent.ExecConfig{ProcessLogCap: int(*logCap)},
	}
	if *pool == 0 {
		cfg.CodePool = -1 // Config's 0 is the default pool
	}
	return *socket, cfg, nil
}

func run(socket string, cfg agent.Config) error {
	// Create the agent first: it starts reaping orphans.
	a := agent.New(cfg)

	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return err
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	defer os.Remove(socket)

	// Cancelling the requests' base context kills the commands they run.
	reqCtx, killRequests := context.WithCancel(context.Background())
	defer killRequests()
	srv := &http.Server{
		Handler:           a,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ReadHeaderTimeout: 10 * time.Second,
	}
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Go exits on these by default; a stray one sent to PID 1 must not
	// take the sandbox down. They are handled rather than ignored because
	// ignored signals would stay ignored in every command the agent starts.
	stray := make(chan os.Signal, 1)
	signal.Notify(stray, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for sig := range stray {
			slog.Info("sbx-agent ignoring signal", "signal", sig)
		}
	}()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	slog.Info("sbx-agent serving", "socket", socket, "pid", os.Getpid(), "version", agent.Version)
	select {
	case err := <-errc:
		return err
	case <-sigCtx.Done():
	}

	slog.Info("sbx-agent shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	err = srv.Shutdown(ctx)
	cancel()
	if err != nil {
		killRequests()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.Shutdown(ctx) // let the killed commands' handlers answer
		cancel()
	}
	return nil
}
