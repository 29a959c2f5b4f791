package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

func startCmd(g *globals) *cobra.Command {
	var (
		req api.StartProcessRequest
		env []string
	)
	cmd := &cobra.Command{
		Use:   "start ID -- COMMAND [ARG...]",
		Short: "Start a background process in a sandbox",
		Long: `Start COMMAND (bash -c) in the background in sandbox ID and print its id.
Its output is kept in the sandbox (sbx logs), and it keeps running when this
command, your connection or the daemon goes away. Name it with --name to
refer to it by that name; every command also takes its pid.`,
		Example: `  sbx start demo --name web -- python3 -m http.server 8000
  sbx wait demo web --port 8000
  sbx logs demo web -f
  sbx kill demo web`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			req.Command = commandLine(args[1:])
			if req.Env, err = parseKeyValues("--env", env); err != nil {
				return err
			}
			p, err := c.Sandbox(args[0]).StartProcess(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(p)
			}
			fmt.Printf("%s (pid %d)\n", p.ID, p.Pid)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&req.ID, "name", "n", "", "id of the process (default: generated)")
	f.StringVarP(&req.Cwd, "cwd", "w", "", "working directory (default /workspace, or the session's)")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringVarP(&req.Session, "session", "s", "", "start with this session's cwd and environment; deleting the session kills it")
	return cmd
}

func psCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ps ID",
		Short:   "List the background processes of a sandbox",
		Example: `  sbx ps demo`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.Sandbox(args[0]).Processes(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(list)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPID\tSTATUS\tEXIT\tSTARTED\tCOMMAND")
			for _, p := range list {
				exit := "-"
				if p.ExitCode != nil {
					exit = fmt.Sprint(*p.ExitCode)
				}
				command := p.Command
				if len(command) > 60 {
					command = command[:57] + "..."
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", p.ID, p.Pid, p.Status, exit, ago(p.StartedAt), strings.ReplaceAll(command, "\n", " "))
			}
			return tw.Flush()
		},
	}
}

func killCmd(g *globals) *cobra.Command {
	var (
		opts client.KillOptions
		all  bool
	)
	cmd := &cobra.Command{
		Use:   "kill ID [PROC]",
		Short: "Kill a background process and its whole process tree",
		Long: `Kill background process PROC (its id or pid) of sandbox ID, with everything it
started, however detached: the signal first (TERM by default), then SIGKILL
for whatever is left after the grace period. --all kills every running one.`,
		Example: `  sbx kill demo web
  sbx kill demo web --signal INT --grace 10s
  sbx kill demo --all`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			sb := c.Sandbox(args[0])
			if all == (len(args) == 2) {
				return errors.New("name one process, or pass --all")
			}
			if all {
				n, err := sb.KillAllProcesses(cmd.Context(), opts)
				if err != nil {
					return err
				}
				if g.json {
					return printJSON(api.KillAllResult{Killed: n})
				}
				fmt.Printf("killed %d\n", n)
				return nil
			}
			p, err := sb.KillProcess(cmd.Context(), args[1], opts)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(p)
			}
			fmt.Printf("%s (pid %d) %s\n", p.ID, p.Pid, p.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Signal, "signal", "", "first signal: TERM (default), INT, HUP, QUIT, USR1, USR2, KILL or a number")
	cmd.Flags().DurationVar(&opts.Grace, "grace", 0, "time to exit before SIGKILL (default 5s)")
	cmd.Flags().BoolVar(&all, "all", false, "kill every running background process")
	return cmd
}

func logsCmd(g *globals) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs ID PROC",
		Short: "Print the output of a background process",
		Long: `Print what background process PROC (id or pid) wrote: stdout to stdout, stderr
to stderr. -f follows the log live until the process ends, then exits with
its exit code. Logs are bounded; dropped bytes are reported on stderr.`,
		Example: `  sbx logs demo web
  sbx logs demo web -f`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			sb := c.Sandbox(args[0])
			if !follow {
				l, err := sb.ProcessLogs(cmd.Context(), args[1])
				if err != nil {
					return err
				}
				if g.json {
					return printJSON(l)
				}
				dropped(os.Stderr, "stdout", l.StdoutDroppedBytes)
				dropped(os.Stderr, "stderr", l.StderrDroppedBytes)
				writeMaybeBase64(os.Stdout, l.Stdout, l.StdoutBase64)
				writeMaybeBase64(os.Stderr, l.Stderr, l.StderrBase64)
				return nil
			}
			for ev, err := range sb.FollowProcessLogs(cmd.Context(), args[1]) {
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				switch ev.Type {
				case api.EventStdout:
					os.Stdout.Write(ev.Data)
				case api.EventStderr:
					os.Stderr.Write(ev.Data)
				case api.EventDropped:
					dropped(os.Stderr, ev.Stream, ev.Dropped)
				case api.EventExit:
					if ev.ExitCode != 0 {
						return exitError{code: ev.ExitCode}
					}
					return nil
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the log until the process ends")
	return cmd
}

func dropped(w *os.File, stream string, n int64) {
	if n > 0 {
		fmt.Fprintf(w, "sbx: [%d earlier bytes of %s dropped from the bounded log]\n", n, stream)
	}
}

func writeMaybeBase64(w *os.File, s string, b64 bool) {
	if !b64 {
		w.WriteString(s)
		return
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err == nil {
		w.Write(b)
	}
}

func waitCmd(g *globals) *cobra.Command {
	var (
		req     api.WaitRequest
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "wait ID PROC (--port N [--http PATH] | --log REGEXP | --exit)",
		Short: "Wait until a background process is ready",
		Long: `Block until background process PROC of sandbox ID is ready: a port accepts
connections (--port), an HTTP path answers with a status in a range
(--port with --http), a line of its output matches a regular expression
(--log, from the start of its log), or it exits (--exit). Fails if the process
ends first or the timeout passes; with --exit, exits with its exit code.`,
		Example: `  sbx wait demo web --port 8000
  sbx wait demo web --port 8000 --http /health --timeout 2m
  sbx wait demo web --log 'listening on'
  sbx wait demo build --exit`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			req.TimeoutMs = timeout.Milliseconds()
			res, err := c.Sandbox(args[0]).WaitProcess(cmd.Context(), args[1], req)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(res)
			}
			switch res.Condition {
			case "log":
				fmt.Println(res.Line)
			case "http":
				fmt.Printf("HTTP %d after %dms\n", res.Status, res.DurationMs)
			case "port":
				fmt.Printf("port %d ready after %dms\n", req.Port, res.DurationMs)
			case "exit":
				if res.Process.ExitCode != nil && *res.Process.ExitCode != 0 {
					return exitError{code: *res.Process.ExitCode}
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&req.Port, "port", 0, "wait for this port to accept TCP connections")
	f.StringVar(&req.HTTPPath, "http", "", "with --port: wait for GET of this path to answer 200-399 (see --status)")
	f.StringVar(&req.Log, "log", "", "wait for an output line matching this regular expression")
	f.StringVar(&req.Stream, "stream", "", "with --log: stdout or stderr only")
	f.BoolVar(&req.Exit, "exit", false, "wait for the process to end")
	f.IntVar(&req.StatusMin, "status-min", 0, "with --http: lowest accepted status (default 200)")
	f.IntVar(&req.StatusMax, "status-max", 0, "with --http: highest accepted status (default 399)")
	f.DurationVar(&timeout, "timeout", 60*time.Second, "give up after this long")
	return cmd
}
