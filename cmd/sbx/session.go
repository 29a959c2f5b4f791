package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sbx-dev/sbx/api"
)

func sessionsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sessions ID",
		Short: "List, create and delete the sessions of a sandbox",
		Long: `A session is a persistent bash in a sandbox: cd, export, aliases and shell
functions carry over from one command to the next (sbx exec --session NAME).
Sessions share the sandbox's files but not their working directory or
environment; commands in one session run in order, sessions run in parallel.
The session "default" always exists.`,
		Example: `  sbx sessions demo
  sbx sessions create demo build --cwd /src -e CI=1
  sbx exec demo --session build -- make
  sbx sessions rm demo build`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.Sandbox(args[0]).Sessions(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(list)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SESSION\tPID\tSTATE\tTERMINAL\tCWD\tCREATED")
			for _, s := range list {
				state := "idle"
				switch {
				case s.Busy:
					state = "busy"
				case s.Pid == 0:
					state = "not started"
				}
				term := "-"
				if s.Terminal {
					term = "open"
				}
				pid := "-"
				if s.Pid > 0 {
					pid = fmt.Sprint(s.Pid)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, pid, state, term, s.Cwd, ago(s.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(sessionCreateCmd(g), sessionRmCmd(g))
	return cmd
}

func sessionCreateCmd(g *globals) *cobra.Command {
	var (
		req api.CreateSessionRequest
		env []string
	)
	cmd := &cobra.Command{
		Use:     "create ID [SESSION]",
		Short:   "Create a session (a generated name if SESSION is omitted)",
		Example: `  sbx sessions create demo build --cwd /src -e CI=1`,
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if len(args) == 2 {
				req.ID = args[1]
			}
			if req.Env, err = parseKeyValues("--env", env); err != nil {
				return err
			}
			s, err := c.Sandbox(args[0]).CreateSession(cmd.Context(), &req)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(s.Info)
			}
			fmt.Println(s.ID)
			return nil
		},
	}
	cmd.Flags().StringVarP(&req.Cwd, "cwd", "w", "", "first working directory (default /workspace)")
	cmd.Flags().StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE of the session (repeatable)")
	return cmd
}

func sessionRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID SESSION",
		Short:   "Delete a session and kill every process started in it",
		Example: `  sbx sessions rm demo build`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return c.Sandbox(args[0]).DeleteSession(cmd.Context(), args[1])
		},
	}
}
