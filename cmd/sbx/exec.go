package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
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
		Long: `Run a command in sandbox ID with bash -c, print its output as it comes and
exit with its exit code. The sandbox is created with default options if it
does not exist.

One argument after -- is a shell command line, run as it is (pipes, $VARS
and globs are the sandbox's). Several arguments are a command and its
arguments, passed on exactly as your shell gave them, as with docker exec.

With --session the command runs in that session's persistent shell, so cd,
export, aliases and functions carry over to the next command in the same
session ("default" always exists; see sbx sessions). Interrupting sbx exec
(Ctrl-C) kills the command in the sandbox.`,
		Example: `  sbx exec demo -- python3 -c 'print(2+2)'
  sbx exec demo --cwd /tmp -e DEBUG=1 -- 'ls -la | head'
  echo hello | sbx exec demo -i -- cat
  sbx exec demo --session default -- cd /srv   # then:
  sbx exec demo --session default -- pwd       # /srv`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			req.Command = commandLine(args[1:])
			req.TimeoutMs = timeout.Milliseconds()
			if req.Env, err = parseKeyValues("--env", env); err != nil {
				return err
			}
			if stdin {
				b, err := io.ReadAll(os.Stdin)
				if err != nil {
					return err
				}
				s := string(b)
				req.Stdin = &s
			}
			sb := c.Sandbox(args[0])
			if g.json {
				res, err := sb.ExecRequest(cmd.Context(), req)
				if err != nil {
					return err
				}
				if err := printJSON(res); err != nil {
					return err
				}
				if res.ExitCode != 0 {
					return exitError{code: res.ExitCode}
				}
				return nil
			}
			for ev, err := range sb.ExecStreamRequest(cmd.Context(), req) {
				if err != nil {
					if cmd.Context().Err() != nil {
						return exitError{code: 130}
					}
					return err
				}
				switch ev.Type {
				case api.EventStdout:
					os.Stdout.Write(ev.Data)
				case api.EventStderr:
					os.Stderr.Write(ev.Data)
				case api.EventComplete:
					if ev.TimedOut {
						fmt.Fprintf(os.Stderr, "sbx: command timed out after %s and was killed\n", timeout)
					}
					if ev.OOMKilled {
						fmt.Fprintln(os.Stderr, "sbx: killed by the kernel: the sandbox ran out of memory (a larger --instance-type has more)")
					}
					if ev.ExitCode != 0 {
						return exitError{code: ev.ExitCode}
					}
					return nil
				}
			}
			return errors.New("the stream ended early")
		},
	}
	f := cmd.Flags()
	f.StringVarP(&req.Cwd, "cwd", "w", "", "working directory (default /workspace, or the session's)")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE for this command (repeatable)")
	f.DurationVar(&timeout, "timeout", 0, "kill the command (its whole process tree) after this long, e.g. 30s")
	f.BoolVarP(&stdin, "stdin", "i", false, "send this process's standard input to the command")
	f.StringVarP(&req.Session, "session", "s", "", "run in this session's persistent shell (e.g. default)")
	return cmd
}

// parseKeyValues turns KEY=VALUE flags into a map (nil if none).
func parseKeyValues(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: use KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

func envCmd(g *globals) *cobra.Command {
	var unset []string
	cmd := &cobra.Command{
		Use:   "env ID [KEY=VALUE...] [-u KEY...]",
		Short: "Set or unset environment variables for every later command in a sandbox",
		Long: `Set and unset environment variables of sandbox ID. The change applies to every
later command: one-shot execs, every session (including ones already open),
background processes and terminals. Without arguments, print the environment
new commands get.`,
		Example: `  sbx env demo NODE_ENV=production API_URL=http://localhost:3000
  sbx env demo -u DEBUG
  sbx env demo`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			sb := c.Sandbox(args[0])
			set, err := parseKeyValues("KEY=VALUE", args[1:])
			if err != nil {
				return err
			}
			if len(set) == 0 && len(unset) == 0 {
				res, err := sb.ExecRequest(cmd.Context(), api.ExecRequest{Command: "env -0"})
				if err != nil {
					return err
				}
				env := map[string]string{}
				for _, kv := range strings.Split(strings.TrimSuffix(res.Stdout, "\x00"), "\x00") {
					if k, v, ok := strings.Cut(kv, "="); ok && k != "SBX_TAG" {
						env[k] = v
					}
				}
				return printEnv(g, env)
			}
			patch := api.EnvPatch{}
			for k, v := range set {
				patch[k] = &v
			}
			for _, k := range unset {
				patch[k] = nil
			}
			env, err := sb.SetEnv(cmd.Context(), patch)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(env)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&unset, "unset", "u", nil, "unset this variable (repeatable)")
	return cmd
}

func printEnv(g *globals, env map[string]string) error {
	if g.json {
		return printJSON(env)
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%s=%s\n", k, env[k])
	}
	return nil
}
