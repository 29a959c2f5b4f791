// Command sbx is the command-line client of sbx: create sandboxes by name,
// run commands in them, and manage their lifecycle.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/client"
)

// globals are the flags every command shares.
type globals struct {
	url, token string
	json       bool
}

// exitError carries a process exit code through cobra (for `sbx exec`).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd().ExecuteContext(ctx)
	stop()
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	if err != nil {
		// The SDK's errors carry its package prefix already.
		fmt.Fprintln(os.Stderr, "sbx:", strings.TrimPrefix(err.Error(), "sbx: "))
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "sbx",
		Short: "Run code in isolated Linux sandboxes, addressed by name",
		Long: `sbx talks to an sbxd daemon. Every sandbox has a name you choose; the
first command that names a sandbox creates it, and it keeps its files and
processes until it idles out (sleepAfter, default 10m), is stopped or removed.

The daemon's address and token come from --url/--token or the environment:
  export SBX_URL=http://127.0.0.1:7070
  export SBX_TOKEN=$(sudo cat /var/lib/sbx/token)`,
		Example: `  sbx exec demo -- python3 -c 'print(2+2)'   # creates "demo" on first use
  sbx ls
  sbx create ci-42 --instance-type basic --sleep-after 30m
  sbx rm demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.url, "url", "", "sbxd address (default $SBX_URL or "+client.DefaultURL+")")
	pf.StringVar(&g.token, "token", "", "API token (default $SBX_TOKEN)")
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON")
	root.AddCommand(createCmd(g), lsCmd(g), statusCmd(g), stopCmd(g), rmCmd(g), execCmd(g))
	root.AddCommand(exposeCmd(g), portsCmd(g), unexposeCmd(g), gitCmd(g))
	root.AddCommand(runCmd(g), contextCmd(g))
	root.AddCommand(sessionsCmd(g), envCmd(g), startCmd(g), psCmd(g), killCmd(g), logsCmd(g), waitCmd(g), shellCmd(g))
	addFileCommands(root, g)
	root.AddCommand(backupCmd(g), mountCmd(g), unmountCmd(g))
	return root
}

// client builds an SDK client from the flags and environment.
func (g *globals) client() (*client.Client, error) {
	var opts []client.Option
	if g.url != "" {
		opts = append(opts, client.WithURL(g.url))
	}
	if g.token != "" {
		opts = append(opts, client.WithToken(g.token))
	}
	return client.New(opts...)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
