// Command sbxd is the sbx daemon: it serves the HTTP API, owns the sandboxes
// of this host and builds their images.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// options are the daemon's settings, from flags and the config file. The
// json names are the config file's keys and match the flag names.
type options struct {
	ConfigPath        string        `json:"-"`
	Listen            string        `json:"listen"`
	DataDir           string        `json:"data-dir"`
	ImagesDir         string        `json:"images-dir"`
	AgentPath         string        `json:"agent"`
	Runtime           string        `json:"runtime"`
	MaxSandboxes      int           `json:"max-sandboxes"`
	DefaultSleepAfter time.Duration `json:"-"`
	SleepAfter        string        `json:"default-sleep-after"`
	InsecureNoAuth    bool          `json:"insecure-no-auth"`
	LogFormat         string        `json:"log-format"`
	LogLevel          string        `json:"log-level"`
	DefaultImage      string        `json:"default-image"`
	SkipImageBuild    bool          `json:"no-image-build"`
	NoDiskQuota       bool          `json:"no-disk-quota"`
	ReapInterval      time.Duration `json:"-"`
	previewOptions
	blobOptions
	networkOptions
	agentOptions
}

// imagesDir is where built images live.
func (o *options) imagesDir() string {
	if o.ImagesDir != "" {
		return o.ImagesDir
	}
	return filepath.Join(o.DataDir, "images")
}

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sbxd:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command { return newRootCmd(&options{}) }

// newRootCmd returns the sbxd command, which parses its flags into opts.
func newRootCmd(opts *options) *cobra.Command {
	root := &cobra.Command{
		Use:   "sbxd",
		Short: "sbx daemon: isolated Linux sandboxes by name, over HTTP",
		Long: `sbxd runs isolated Linux sandboxes on this host and serves the sbx HTTP API.

Each sandbox is addressed by a name you choose; the first request for a name
creates it (overlayfs root, own namespaces, cgroup limits, seccomp), idle
sandboxes are stopped after their sleepAfter, and sandboxes outlive sbxd
restarts.

On first start sbxd builds the default image (a Debian rootfs, about a minute)
and writes an API token to <data-dir>/token. Clients send it as
'Authorization: Bearer <token>'; the sbx CLI and Go SDK read SBX_TOKEN.

Every flag can also be set in a JSON config file (--config) whose keys are the
flag names, e.g. {"listen": "127.0.0.1:7070", "runtime": "crun"}. Flags given
on the command line win over the file.`,
		Example: `  # start with the defaults (127.0.0.1:7070, /var/lib/sbx, crun)
  sbxd

  # then, from another shell
  export SBX_TOKEN=$(cat /var/lib/sbx/token)
  sbx exec demo -- python3 -c 'print(2+2)'`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return loadConfig(cmd, opts)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), opts)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&opts.ConfigPath, "config", "", "JSON config file (default /etc/sbx/sbxd.json if it exists)")
	pf.StringVar(&opts.DataDir, "data-dir", "/var/lib/sbx", "directory for the database, token, images, sandboxes and blobs")
	pf.StringVar(&opts.ImagesDir, "images-dir", "", "directory of built images (default <data-dir>/images)")
	pf.StringVar(&opts.LogFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&opts.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&opts.Runtime, "runtime", "crun", "OCI runtime: crun (faster here) or runc")
	pf.StringVar(&opts.AgentPath, "agent", "", "path of the sbx-agent binary (default: sbx-agent beside sbxd)")
	opts.networkOptions.addFlags(pf)
	f := root.Flags()
	f.StringVar(&opts.Listen, "listen", "127.0.0.1:7070", "address to serve the API on")
	f.IntVar(&opts.MaxSandboxes, "max-sandboxes", 200, "most sandboxes running at once on this host; more get 429 CAPACITY_EXCEEDED")
	f.StringVar(&opts.SleepAfter, "default-sleep-after", "10m", "idle time before a sandbox is stopped, unless it sets its own")
	f.BoolVar(&opts.InsecureNoAuth, "insecure-no-auth", false, "serve without a token (only allowed on a loopback address)")
	f.StringVar(&opts.DefaultImage, "default-image", "default", "image for sandboxes that name none")
	f.BoolVar(&opts.SkipImageBuild, "no-image-build", false, "do not build the default image on start if it is missing")
	f.BoolVar(&opts.NoDiskQuota, "no-disk-quota", false,
		"keep sandboxes' writable layers on the data dir's filesystem, unbounded, instead of a loop-mounted ext4 of the instance type's disk size each")
	f.DurationVar(&opts.ReapInterval, "reap-interval", 5*time.Second, "how often to look for idle sandboxes")
	_ = f.MarkHidden("reap-interval") // for tests
	opts.previewOptions.addFlags(f)
	opts.blobOptions.addFlags(f)
	opts.agentOptions.addFlags(f)
	root.AddCommand(imageCmd(opts), cleanupCmd(opts))
	return root
}

// loadConfig applies the config file to every flag not set on the command
// line.
func loadConfig(cmd *cobra.Command, opts *options) error {
	path := opts.ConfigPath
	if path == "" {
		path = "/etc/sbx/sbxd.json"
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			path = ""
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading config: %w", err)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return fmt.Errorf("config %s is not a JSON object: %w", path, err)
		}
		for key, val := range raw {
			fl := cmd.Flags().Lookup(key)
			if fl == nil {
				// Daemon flags in a file shared with subcommands.
				fl = cmd.Root().Flags().Lookup(key)
			}
			if fl == nil || key == "config" {
				return fmt.Errorf("config %s: unknown key %q; keys are the flag names (sbxd --help)", path, key)
			}
			if fl.Changed {
				continue // the command line wins
			}
			var s string
			if err := json.Unmarshal(val, &s); err != nil {
				s = string(val) // numbers and booleans as written
			}
			if err := fl.Value.Set(s); err != nil {
				return fmt.Errorf("config %s: %s: %w", path, key, err)
			}
		}
	}
	d, err := time.ParseDuration(opts.SleepAfter)
	if err != nil || d <= 0 {
		return fmt.Errorf("--default-sleep-after %q: use a positive duration such as 10m", opts.SleepAfter)
	}
	opts.DefaultSleepAfter = d
	return nil
}
