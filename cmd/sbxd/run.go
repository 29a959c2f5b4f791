package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sbx-dev/sbx/internal/backend/oci"
	"github.com/sbx-dev/sbx/internal/bucketmount"
	"github.com/sbx-dev/sbx/internal/image"
	"github.com/sbx-dev/sbx/internal/sandbox"
	"github.com/sbx-dev/sbx/internal/server"
	"github.com/sbx-dev/sbx/internal/store"
)

func newLogger(opts *options) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", opts.LogLevel)
	}
	ho := &slog.HandlerOptions{Level: level}
	switch opts.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, ho)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", opts.LogFormat)
}

func runDaemon(ctx context.Context, opts *options) error {
	log, err := newLogger(opts)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	loopback, err := isLoopback(opts.Listen)
	if err != nil {
		return err
	}
	previewCfg, err := previewConfig(opts)
	if err != nil {
		return err
	}
	agentOpts, err := opts.agentOptions.backendOptions()
	if err != nil {
		return err
	}
	if opts.InsecureNoAuth && !loopback {
		return fmt.Errorf("--insecure-no-auth is only allowed on a loopback address, not %s: anyone who can reach it could run code on this host", opts.Listen)
	}
	// 0711: sandbox root is an unprivileged host uid (user namespace)
	// that must traverse the data dir to its rootfs; secrets inside are
	// 0600 files.
	if err := os.MkdirAll(opts.DataDir, 0o711); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	token := ""
	if !opts.InsecureNoAuth {
		if token, err = loadOrCreateToken(opts.DataDir, opts.Listen); err != nil {
			return err
		}
	}

	agentPath, err := opts.agentPath()
	if err != nil {
		return err
	}

	images := &image.Store{Dir: opts.imagesDir()}
	if _, err := images.Path(opts.DefaultImage); err != nil {
		if opts.SkipImageBuild {
			return fmt.Errorf("default image: %w", err)
		}
		log.Info("default image missing; building it now (about a minute)", "image", opts.DefaultImage, "dir", images.Dir)
		if _, err := images.Build(ctx, opts.DefaultImage, image.BuildOptions{Progress: os.Stderr}); err != nil {
			return fmt.Errorf("building image %s: %w", opts.DefaultImage, err)
		}
	}

	ociCfg := oci.Config{DataDir: opts.DataDir, AgentPath: agentPath, Runtime: opts.Runtime, Logger: log, DisableDiskQuota: opts.NoDiskQuota}
	if err := opts.networkOptions.apply(&ociCfg); err != nil {
		return err
	}
	be, err := oci.New(ociCfg)
	if err != nil {
		return err
	}
	defer be.Close()
	st, err := store.Open(filepath.Join(opts.DataDir, "sbx.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	previews := server.NewPreviews(st, previewCfg, log)
	defer previews.Close()

	var mgr *sandbox.Manager
	backups, err := newBackups(ctx, &opts.blobOptions, opts.DataDir, st, &mgr, log)
	if err != nil {
		return err
	}
	mgr = sandbox.New(sandbox.Config{
		Backend: be, Store: st, Images: images, Logger: log, FS: backups,
		DefaultImage: opts.DefaultImage, DefaultSleepAfter: opts.DefaultSleepAfter,
		MaxRunning: opts.MaxSandboxes, ReapInterval: opts.ReapInterval, OnStop: previews.SandboxStopped,
		Agent: agentOpts,
	})
	if err := mgr.Recover(ctx); err != nil {
		return fmt.Errorf("recovering sandboxes: %w", err)
	}
	defer mgr.Close()
	gcCtx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	go backups.Run(gcCtx)

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return err
	}
	srvCfg := server.Config{Manager: mgr, Token: token, Logger: log, Version: version,
		Backups: backups, Mounts: bucketmount.New(mgr, log)}
	srvCfg.Previews = previews
	srv := &http.Server{
		Handler:           server.New(srvCfg),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("sbxd serving", "listen", ln.Addr().String(), "dataDir", opts.DataDir,
		"runtime", be.Capabilities().Name, "auth", token != "", "version", version)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down; sandboxes keep running and are re-adopted on the next start")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// agentPath resolves the agent binary: --agent, else beside sbxd.
func (o *options) agentPath() (string, error) {
	p := o.AgentPath
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		p = filepath.Join(filepath.Dir(exe), "sbx-agent")
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("agent binary: %w; build it (make build) or pass --agent PATH", err)
	}
	return p, nil
}

func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--listen %q: use HOST:PORT such as 127.0.0.1:7070", addr)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// loadOrCreateToken returns the API token, generating it (0600) on first
// start and telling the operator how to use it with the API on listen.
func loadOrCreateToken(dataDir, listen string) (string, error) {
	path := filepath.Join(dataDir, "token")
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("token file %s is empty; delete it to generate a new one", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	fmt.Fprint(os.Stderr, tokenHelp(path, listen))
	return tok, nil
}

// clientDefaultURL is client.DefaultURL (not linked into sbxd), where sbx
// and the SDK look without SBX_URL.
const clientDefaultURL = "http://127.0.0.1:7070"

// tokenHelp is the first start's note on using the token at path with the
// API served on listen.
func tokenHelp(path, listen string) string {
	base := apiURL(listen)
	env := ""
	if base != clientDefaultURL {
		env = "  export SBX_URL=" + base + "\n"
	}
	return fmt.Sprintf("\nsbxd: generated an API token in %s (mode 0600). Use it with:\n\n%s  export SBX_TOKEN=$(cat %s)\n"+
		"  curl -H \"Authorization: Bearer $SBX_TOKEN\" %s/v1/sandboxes\n\n", path, env, path, base)
}

// apiURL is the base URL of the API served on listen (HOST:PORT) for a
// client on this host, which reaches an unspecified address (0.0.0.0, ::
// or none) on 127.0.0.1.
func apiURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
