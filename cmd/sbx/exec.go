package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
)

func execCmd(g *globals) *cobra.Command {
	var (
		req     api.ExecRequest
		env     []string
		timeout time.Duration
		stdin   bool
	)
	cmd := &cobra.Command{
		Use:   "exec ID -- COMMAND [ARG...]",
		Short: "Run a command in a sandbox (created on first use)",
		Long: `Run a command in sandbox ID with bash -c, print its output and exit with its
exit code. The sandbox is created with default options if it does not exist.

Arguments after -- are joined with spaces into one shell command, so quote
what the shell should keep together, as you would with ssh.`,
		Example: `  sbx exec demo -- python3 -c 'print(2+2)'
  sbx exec demo --cwd /tmp -e DEBUG=1 -- 'ls -la | head'
  echo hello | sbx exec demo -i -- cat`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			req.Command = strings.Join(args[1:], " ")
			req.TimeoutMs = timeout.Milliseconds()
			for _, kv := range env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--env %q: use KEY=VALUE", kv)
				}
				if req.Env == nil {
					req.Env = map[string]string{}
				}
				req.Env[k] = v
			}
			if stdin {
				b, err := io.ReadAll(os.Stdin)
				if err != nil {
					return err
				}
				s := string(b)
				req.Stdin = &s
			}
			res, err := c.Sandbox(args[0]).ExecRequest(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				if err := printJSON(res); err != nil {
					return err
				}
			} else {
				os.Stdout.WriteString(res.Stdout)
				os.Stderr.WriteString(res.Stderr)
				if res.TimedOut {
					fmt.Fprintf(os.Stderr, "sbx: command timed out after %s and was killed\n", timeout)
				}
				if res.StdoutTruncated || res.StderrTruncated {
					fmt.Fprintln(os.Stderr, "sbx: output was truncated at the daemon's cap; write large output to a file instead")
				}
			}
			if res.ExitCode != 0 {
				return exitError{code: res.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&req.Cwd, "cwd", "w", "", "working directory (default /workspace)")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE for this command (repeatable)")
	f.DurationVar(&timeout, "timeout", 0, "kill the command after this long, e.g. 30s")
	f.BoolVarP(&stdin, "stdin", "i", false, "send this process's standard input to the command")
	return cmd
}
